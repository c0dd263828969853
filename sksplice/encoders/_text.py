"""Exact truncated text encoding for causal text towers.

CLIP's text tower is causal and pools at the end-of-text token, so the
embedding of a short concept does not depend on the padding after it.
Concepts are sorted by token length and each batch runs on a context
truncated to its longest sequence (the positional embeddings and the causal
mask are sliced to match).  :func:`causal_text_tower` says when this is
exact for an open_clip model; any other tower runs at full length.  (The
Hugging Face adapter in :mod:`sksplice.encoders._hf` states its own rule.)
"""

from __future__ import annotations

__all__ = [
    "TextTower",
    "causal_text_tower",
    "needed_length",
    "token_budget_spans",
    "truncated_encode_text",
]


def token_budget_spans(lengths, budget):
    """Consecutive ``(start, stop)`` batches of ascending ``lengths``.

    Parameters
    ----------
    lengths : list of int
        Token lengths, ascending.
    budget : int
        Tokens a batch may hold once padded to its longest (last) member.

    Returns
    -------
    spans : list of (int, int)
        Batches covering every item; each holds at least one item.
    """
    spans, start, n = [], 0, len(lengths)
    while start < n:
        stop = start + 1
        while stop < n and (stop + 1 - start) * lengths[stop] <= budget:
            stop += 1
        spans.append((start, stop))
        start = stop
    return spans


class TextTower:
    """The pieces of an open_clip causal text transformer.

    Parameters
    ----------
    token_embedding, positional_embedding, transformer, ln_final, text_projection : object
        The model's modules and parameters.
    attn_mask : torch.Tensor
        The causal mask at full context.
    pool_type : str
        ``"argmax"`` or ``"eos"``.
    eos_id : int or None
        The end-of-text token id (for ``"eos"`` pooling).
    """

    def __init__(self, token_embedding, positional_embedding, transformer, ln_final,
                 text_projection, attn_mask, pool_type, eos_id):
        self.token_embedding = token_embedding
        self.positional_embedding = positional_embedding
        self.transformer = transformer
        self.ln_final = ln_final
        self.text_projection = text_projection
        self.attn_mask = attn_mask
        self.pool_type = pool_type
        self.eos_id = eos_id


def causal_text_tower(model):
    """A :class:`TextTower` when truncating the context is exact for ``model``, else None.

    Exact when the text tower is open_clip's own transformer (unmodified
    ``encode_text``/``forward``), its attention mask is causal (position i sees
    only positions <= i), it pools at the end-of-text token ("argmax" or
    "eos") and it has no appended class token or padding mask.

    Parameters
    ----------
    model : object
        Any model.

    Returns
    -------
    tower : TextTower or None
    """
    import torch

    try:
        from open_clip.model import CLIP, CustomTextCLIP
        from open_clip.transformer import TextTransformer
    except ImportError:  # pragma: no cover
        return None
    if isinstance(model, CLIP) and type(model).encode_text is CLIP.encode_text:
        tower = TextTower(
            model.token_embedding, model.positional_embedding, model.transformer,
            model.ln_final, model.text_projection, model.attn_mask, model.text_pool_type,
            getattr(model, "text_eos_id", None),
        )
    elif (isinstance(model, CustomTextCLIP)
          and type(model).encode_text is CustomTextCLIP.encode_text
          and type(getattr(model, "text", None)) is TextTransformer):
        text = model.text
        if text.cls_emb is not None or text.use_pad_mask or text.output_tokens:
            return None
        tower = TextTower(
            text.token_embedding, text.positional_embedding, text.transformer, text.ln_final,
            text.text_projection, text.attn_mask, text.pool_type, getattr(text, "eos_id", None),
        )
    else:
        return None
    if tower.pool_type not in ("argmax", "eos"):
        return None
    if tower.pool_type == "eos" and tower.eos_id is None:
        return None
    mask = tower.attn_mask
    if mask is None or mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        return None
    n = mask.shape[0]
    if n != tower.positional_embedding.shape[0]:
        return None
    causal = torch.ones(n, n, dtype=torch.bool, device=mask.device).triu(1)
    if not (torch.equal(torch.isneginf(mask), causal) and torch.all(mask[~causal] == 0)):
        return None
    return tower


def needed_length(tokens, tower):
    """Per text, the context length that contains its pooled (end-of-text) position.

    Parameters
    ----------
    tokens : torch.Tensor of shape (n_texts, context_length)
    tower : TextTower

    Returns
    -------
    lengths : torch.Tensor of shape (n_texts,)
    """
    import torch

    n = tokens.shape[1]
    if tower.pool_type == "argmax":
        return tokens.argmax(dim=-1) + 1
    is_eos = tokens == tower.eos_id
    pos = is_eos.int().argmax(dim=-1) + 1
    return torch.where(is_eos.any(dim=-1), pos, torch.full_like(pos, n))


def truncated_encode_text(tower, text):
    """open_clip's ``encode_text`` on a context of ``text.shape[1]`` tokens (exact).

    Parameters
    ----------
    tower : TextTower
    text : torch.Tensor of shape (n_texts, length)
        Token ids, cut to the batch's longest text.

    Returns
    -------
    embeddings : torch.Tensor of shape (n_texts, embed_dim)
    """
    from open_clip.transformer import text_global_pool
    from torch import nn

    length = text.shape[1]
    cast_dtype = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(text).to(cast_dtype)
    x = x + tower.positional_embedding[:length].to(cast_dtype)
    x = tower.transformer(x, attn_mask=tower.attn_mask[:length, :length])
    x = tower.ln_final(x)
    x = text_global_pool(x, text, tower.pool_type, eos_token_id=tower.eos_id)
    if tower.text_projection is not None:
        if isinstance(tower.text_projection, nn.Linear):
            x = tower.text_projection(x)
        else:
            x = x @ tower.text_projection
    return x
