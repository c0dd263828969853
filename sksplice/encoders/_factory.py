"""Encoder specifications -> :class:`~sksplice.encoders.Encoder` objects."""

from __future__ import annotations

import os

from ._encoder import Encoder, has_encode, short
from ._hf import is_hf_model
from ._spec import DEFAULT_ENCODER, HF_PREFIX, parse_spec

__all__ = ["get_encoder", "missing_weights"]


def get_encoder(encoder=DEFAULT_ENCODER, *, device="auto", cache_dir=None, offline=None,
                precision="auto"):
    """Resolve an encoder specification into an :class:`Encoder`.

    Parameters
    ----------
    encoder : str, tuple, Encoder or object, default=sksplice._defaults.ENCODER
        * ``"MODEL:TAG"``: an open_clip model and pretrained tag, e.g.
          ``"ViT-B-16:openai"`` (see :func:`list_encoders`);
        * ``"MODEL"``: the model with its first registered tag (the paper's
          for its backbones, else open_clip's first); ``"ViT-B/32"`` (OpenAI's
          spelling) is ambiguous between OpenAI's and LAION's weights and raises;
        * the SpLiCE reference code's names, ``"clip:ViT-B/32"``,
          ``"clip:ViT-B/16"``, ``"clip:RN50"``, ``"open_clip:ViT-B-32"``;
        * ``"hf:org/repo"`` or ``"hf:/path/to/folder"``: a Hugging Face
          ``transformers`` CLIP or SigLIP model from the local HF cache or a
          ``save_pretrained`` folder (needs the ``hf`` extra);
        * ``(MODEL, TAG)``, ``(MODEL, "/path/to/checkpoint")`` (a local weights
          file, for offline use) or ``(MODEL, None)`` (random weights, for
          tests: never cached on disk);
        * ``"hf-hub:org/repo"`` or ``"local-dir:/path"``: open_clip schemas;
        * an :class:`Encoder` (returned unchanged);
        * a ``transformers`` ``CLIPModel``/``SiglipModel``, or a
          ``(model, processor)`` tuple;
        * an object with ``encode_image``/``encode_text`` and ``preprocess``/
          ``tokenizer`` attributes, or a ``(model, preprocess, tokenizer)``
          tuple (see :meth:`Encoder.from_model`).
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    cache_dir : str or path-like, default=None
        Where model weights are cached; ``None`` uses open_clip's default (the
        Hugging Face cache, ``$HF_HOME``).
    offline : bool or None, default=None
        Never download (``None``: ``SKSPLICE_OFFLINE`` / ``HF_HUB_OFFLINE``).
    precision : {"auto", "fp32", "fp16"}, default="auto"
        ``"auto"``: float16 autocast on CUDA, float32 on CPU.

    Returns
    -------
    encoder : Encoder
        Weights load lazily, on first use.

    Raises
    ------
    ValueError
        Unknown model or tag (close matches are suggested), an ambiguous
        name, or a malformed specification.
    FileNotFoundError
        A checkpoint path that does not exist.

    Examples
    --------
    >>> from sksplice import get_encoder
    >>> enc = get_encoder("ViT-B-16:openai", device="cpu")   # nothing is downloaded yet
    >>> enc.model_name, enc.pretrained, enc.embed_dim
    ('ViT-B-16', 'openai', 512)
    >>> get_encoder("clip:ViT-B/32", device="cpu").identity   # the reference code's name
    'open_clip/ViT-B-32/openai'
    >>> get_encoder("ViT-B-23:openai")
    Traceback (most recent call last):
    ...
    ValueError: unknown open_clip model 'ViT-B-23'. Did you mean 'ViT-B-32', ...
    """
    if isinstance(encoder, Encoder):
        return encoder
    if isinstance(encoder, os.PathLike):
        raise ValueError(  # noqa: TRY004 - a ValueError, as for every bad encoder value
            f"encoder={os.fspath(encoder)!r} is a path without a model name; pass "
            "(MODEL, path), e.g. ('ViT-B-32', 'weights.bin'), naming the architecture of "
            "the checkpoint, or 'hf:/path' for a Hugging Face model folder."
        )
    if isinstance(encoder, str):
        kind, model_name, pretrained = parse_spec(encoder)
        if kind == "hf":
            return Encoder(HF_PREFIX + model_name, device=device, cache_dir=cache_dir,
                           offline=offline, precision=precision)
    elif isinstance(encoder, tuple) and len(encoder) == 2 and isinstance(encoder[0], str):
        model_name, pretrained = encoder
        if isinstance(pretrained, os.PathLike):
            pretrained = os.fspath(pretrained)
        if pretrained is not None and not isinstance(pretrained, str):
            raise ValueError(
                f"the second item of encoder=({model_name!r}, {short(pretrained)}) must be a "
                "pretrained tag, a checkpoint path or None."
            )
    elif isinstance(encoder, tuple) and len(encoder) == 2 and is_hf_model(encoder[0]):
        return Encoder.from_model(encoder[0], encoder[1], device=device, precision=precision)
    elif isinstance(encoder, tuple) and len(encoder) == 3 and has_encode(encoder[0]):
        return Encoder.from_model(encoder[0], encoder[1], encoder[2], device=device,
                                  precision=precision)
    elif is_hf_model(encoder) or has_encode(encoder):
        return Encoder.from_model(
            encoder, getattr(encoder, "preprocess", None), getattr(encoder, "tokenizer", None),
            device=device, precision=precision,
        )
    else:
        raise ValueError(
            f"encoder={short(encoder)} is not an encoder: pass 'MODEL:TAG' (e.g. "
            f"{DEFAULT_ENCODER!r}), (MODEL, TAG or checkpoint path), 'hf:org/repo', an "
            "Encoder, a transformers CLIPModel, or an object with encode_image and "
            "encode_text methods."
        )
    return Encoder(model_name, pretrained, device=device, cache_dir=cache_dir, offline=offline,
                   precision=precision)


def estimator_encoder(owner):
    """``owner``'s encoder, resolved once per ``(owner.encoder, owner.device)``.

    Cached on ``owner`` as ``_encoder_obj``/``_encoder_spec`` and resolved
    again when ``set_params`` has changed the encoder or the device since
    (weights load lazily).

    Parameters
    ----------
    owner : object
        An estimator with ``encoder`` and ``device`` parameters
        (:class:`~sksplice.CLIPEmbedder`, :class:`~sksplice.SpliceTransformer`).

    Returns
    -------
    encoder : Encoder
        The resolved encoder.
    """
    enc = getattr(owner, "_encoder_obj", None)
    spec = getattr(owner, "_encoder_spec", None)
    stale = enc is None or spec is None or spec[1] != owner.device or (
        spec[0] is not owner.encoder and spec[0] != owner.encoder
    )
    if stale:
        # model weights live in open_clip's cache; ``cache_dir`` holds sksplice's data
        enc = get_encoder(owner.encoder, device=owner.device)
        owner._encoder_obj = enc
        owner._encoder_spec = (owner.encoder, owner.device)
    return enc


def missing_weights(encoder):
    """Where an encoder's weights would go, when they are not on this machine yet.

    Looks only at local files (no network access, nothing is loaded), so a
    caller can list everything a run lacks before it starts.

    Parameters
    ----------
    encoder : Encoder, str or tuple
        Anything :func:`sksplice.get_encoder` accepts.

    Returns
    -------
    looked : list of str
        Empty when the weights are cached, given as a local checkpoint that
        exists, or not needed (random weights, a user model, a Hugging Face
        model, whose files ``transformers`` manages); otherwise where they
        were looked for, which is where a download puts them.

    Examples
    --------
    >>> from sksplice.encoders import missing_weights
    >>> looked = missing_weights("ViT-B-32:laion2b_s34b_b79k")  # [] once they are cached
    >>> all("laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in place for place in looked)
    True
    """
    from ._weights import cached_weights

    enc = get_encoder(encoder)
    if getattr(enc, "checkpoint", None) is not None:  # get_encoder checked that it exists
        return []
    if getattr(enc, "pretrained", None) is None or str(enc.model_name).startswith("hf:"):
        return []
    import open_clip

    cfg = open_clip.get_pretrained_cfg(enc.model_name, enc.pretrained)
    if not cfg:
        return []
    found, looked = cached_weights(cfg, None if enc.cache_dir is None else str(enc.cache_dir))
    return [] if found else looked
