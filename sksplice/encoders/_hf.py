"""Hugging Face ``transformers`` models (CLIP, SigLIP) as sksplice encoders.

:class:`HFAdapter` gives a ``transformers`` model with ``get_image_features``
and ``get_text_features`` (``CLIPModel``, ``SiglipModel``...) plus its
processor the ``encode_image`` / ``encode_text`` / ``preprocess`` interface
the :class:`~sksplice.encoders.Encoder` drives.  Embeddings are the model's
own ``get_image_features`` / ``get_text_features`` outputs.

Text padding, where it is exact and where it is not:

* CLIP's text tower is causal and pools at the end-of-text token, so padding
  after it changes nothing: texts are sorted by token length and each batch is
  padded only to its longest text (the same embeddings as padding to the full
  context, which the tests check).
* SigLIP's text tower attends in both directions and pools the last position;
  it was trained on texts padded to ``max_length``, so every text is padded to
  the full context (no truncation: truncating would change the embeddings).
* Any other tower is padded to ``max_length`` too.

``transformers`` is an optional dependency: ``pip install "sksplice[hf]"``.
"""

from __future__ import annotations

import contextlib
import os

from .._download import is_offline

__all__ = ["HFAdapter", "is_hf_model", "load_hf", "require_transformers"]


def require_transformers():
    """Import ``transformers``, or raise an ``ImportError`` naming the extra to install.

    Returns
    -------
    transformers : module
    """
    try:
        import transformers
    except ImportError:
        raise ImportError(
            "Hugging Face models need the 'transformers' package: pip install 'sksplice[hf]'."
        ) from None
    return transformers


def is_hf_model(obj):
    """Whether ``obj`` is a ``transformers`` model with image and text feature methods.

    Parameters
    ----------
    obj : object

    Returns
    -------
    is_hf : bool
    """
    cls = type(obj)
    if not any(c.__module__.startswith("transformers.") for c in cls.__mro__):
        return False
    return callable(getattr(obj, "get_image_features", None)) and callable(
        getattr(obj, "get_text_features", None)
    )


def _features(out):
    """The feature tensor of ``get_*_features``: a tensor, or an output's ``pooler_output``."""
    pooled = getattr(out, "pooler_output", None)
    if pooled is not None:
        return pooled
    if isinstance(out, tuple):  # return_dict=False
        return out[1] if len(out) > 1 else out[0]
    return out


class HFAdapter:
    """A ``transformers`` CLIP or SigLIP model with the ``encode_image``/``encode_text`` API.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        Has ``get_image_features`` and ``get_text_features``.
    processor : transformers.ProcessorMixin, default=None
        Its processor (``CLIPProcessor``, ``SiglipProcessor``...), holding an
        image processor and a tokenizer.  ``None``: loaded from the model's
        ``name_or_path`` in the local Hugging Face cache.

    Attributes
    ----------
    model : transformers.PreTrainedModel
    image_processor : callable
    text_tokenizer : callable
    causal_text : bool
        Whether the text tower is CLIP's (causal, end-of-text pooling): batches
        are then padded only to their longest text, which is exact.
    max_length : int
        The full text context.
    """

    def __init__(self, model, processor=None):
        self.model = model
        if processor is None:
            processor = _processor_for(model)
        self.image_processor = getattr(processor, "image_processor", None)
        self.text_tokenizer = getattr(processor, "tokenizer", None)
        if self.image_processor is None or self.text_tokenizer is None:
            raise ValueError(
                f"processor {type(processor).__name__} has no image_processor and tokenizer; "
                "pass the model's processor, e.g. transformers.AutoProcessor.from_pretrained(...)."
            )
        config = model.config
        text_cfg = getattr(config, "text_config", config)
        self.max_length = int(getattr(text_cfg, "max_position_embeddings", 77))
        self.causal_text = getattr(config, "model_type", "") == "clip"

    # the Encoder interface ------------------------------------------------
    def preprocess(self, image):
        """One PIL image -> a pixel tensor of shape (3, H, W).

        Parameters
        ----------
        image : PIL.Image.Image
            An RGB image.

        Returns
        -------
        pixels : torch.Tensor
            The processor's resized, cropped and normalised pixels.
        """
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def tokenize(self, texts, *, truncate=True):
        """Token ids and attention mask of a batch of texts.

        Parameters
        ----------
        texts : list of str
            The texts.
        truncate : bool, default=True
            Pad only to the batch's longest text when that is exact (CLIP);
            otherwise, and when False, pad to ``max_length``.

        Returns
        -------
        batch : dict of torch.Tensor
            ``input_ids`` and ``attention_mask``.
        """
        padding = "longest" if (truncate and self.causal_text) else "max_length"
        return dict(self.text_tokenizer(
            list(texts), padding=padding, truncation=True, max_length=self.max_length,
            return_tensors="pt",
        ))

    def text_lengths(self, texts):
        """Token count of each text (special tokens included, capped at ``max_length``).

        Parameters
        ----------
        texts : list of str
            The texts.

        Returns
        -------
        lengths : list of int
            One per text.
        """
        ids = self.text_tokenizer(list(texts), truncation=True, max_length=self.max_length)
        return [len(x) for x in ids["input_ids"]]

    def encode_image(self, pixels):
        """``get_image_features`` of a batch of pixel tensors.

        Parameters
        ----------
        pixels : torch.Tensor of shape (n, 3, H, W)
            Preprocessed images.

        Returns
        -------
        features : torch.Tensor of shape (n, embed_dim)
            The model's image features (not normalised).
        """
        return _features(self.model.get_image_features(pixel_values=pixels))

    def encode_text(self, texts):
        """``get_text_features`` of a list of texts (tokenized here).

        Parameters
        ----------
        texts : list of str or dict
            The texts, or an already tokenized batch.

        Returns
        -------
        features : torch.Tensor of shape (n, embed_dim)
            The model's text features (not normalised).
        """
        batch = texts if isinstance(texts, dict) else self.tokenize(texts)
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        keep = {"input_ids", "attention_mask", "position_ids"}
        return _features(self.model.get_text_features(**{k: v for k, v in batch.items()
                                                          if k in keep}))

    def to(self, device):
        """Move the model to ``device``; returns self.

        Parameters
        ----------
        device : torch.device or str
            The target device.

        Returns
        -------
        self : HFAdapter
            This adapter.
        """
        self.model.to(device)
        return self

    def eval(self):
        """Put the model in evaluation mode; returns self.

        Returns
        -------
        self : HFAdapter
            This adapter.
        """
        self.model.eval()
        return self

    def __repr__(self):
        return f"HFAdapter({type(self.model).__name__})"


def _processor_for(model):
    transformers = require_transformers()
    name = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    if name:
        with contextlib.suppress(Exception):  # any failure means: not available locally
            return transformers.AutoProcessor.from_pretrained(name, local_files_only=True)
    raise ValueError(
        f"no processor for this {type(model).__name__} "
        f"({'name_or_path ' + repr(name) if name else 'it has no name_or_path'}); pass it: "
        "Encoder.from_model(model, processor) or get_encoder((model, processor))."
    )


def load_hf(repo, *, cache_dir=None, offline=None, device="cpu"):
    """Load a ``transformers`` model and its processor from a folder or the local HF cache.

    Parameters
    ----------
    repo : str
        A Hugging Face repository id (``"openai/clip-vit-base-patch32"``) or a
        folder written by ``save_pretrained``.
    cache_dir : str or path-like, default=None
        The Hugging Face cache (``$HF_HOME`` when None).
    offline : bool or None, default=None
        Never download (``None``: ``SKSPLICE_OFFLINE`` / ``HF_HUB_OFFLINE``).
    device : torch.device or str, default="cpu"

    Returns
    -------
    adapter : HFAdapter
        Its model in evaluation mode on ``device``.
    """
    transformers = require_transformers()
    local = is_offline(offline)
    kwargs = {"local_files_only": local}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    repo = os.path.expanduser(repo)
    is_folder = os.path.isdir(repo)
    if not is_folder and (repo.startswith(("/", ".")) or repo.count("/") != 1):
        raise FileNotFoundError(
            f"Hugging Face model folder {repo!r} does not exist; pass a folder written by "
            "model.save_pretrained(...) and processor.save_pretrained(...), or 'hf:org/repo'."
        )
    try:
        model = transformers.AutoModel.from_pretrained(repo, **kwargs)
        processor = transformers.AutoProcessor.from_pretrained(repo, **kwargs)
    except OSError as e:
        hf_home = cache_dir or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        where = repo if is_folder else f"the Hugging Face cache {hf_home}"
        how = ("run once with network access" if local else "check the name and the network")
        raise FileNotFoundError(
            f"Hugging Face model {repo!r} could not be loaded from {where}"
            f"{' (downloads are off)' if local else ''}: {str(e).splitlines()[0][:200]}. "
            f"Provide it: {how}, or save it with model.save_pretrained(folder) and "
            "processor.save_pretrained(folder) and pass encoder='hf:/path/to/folder'."
        ) from None
    if not is_hf_model(model):
        raise ValueError(
            f"Hugging Face model {repo!r} loads as {type(model).__name__}, which has no "
            "get_image_features/get_text_features; use a CLIP or SigLIP model."
        )
    return HFAdapter(model.to(device).eval(), processor)
