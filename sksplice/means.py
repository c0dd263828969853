"""Reference image means: the SpLiCE MSCOCO means for the paper's backbones, and an estimator.

SpLiCE centres image embeddings on the mean of the backbone's (L2-normalised)
image embeddings over a broad reference set, MSCOCO in the paper, before the
decomposition.  :data:`MEANS` registers the reference implementation's means
as plain data (downloaded on first use, checked against pinned digests);
:func:`estimate_mean` computes one for any other backbone.
"""

from __future__ import annotations

import numpy as np

from ._download import DEFAULT_DATA_URL, fetch
from ._io import MAX_ARRAY_BYTES, open_regular

__all__ = ["MEANS", "estimate_mean", "get_reference_mean", "list_means"]

#: Reference image means, keyed by ``"MODEL:TAG"`` (open_clip names).
MEANS = {
    "ViT-B-32:laion2b_s34b_b79k": {
        "path": "means/open_clip_ViT-B-32_image.pt",
        "url": DEFAULT_DATA_URL + "means/open_clip_ViT-B-32_image.pt",
        "size": 2937,
        "sha256": "6b91c6d0e9006e27dfb6f13e6d25a90c5ff24eb14e4ee60cf064a7ddf9f646b7",
        "description": "MSCOCO image mean, open_clip ViT-B-32 laion2b_s34b_b79k",
        "dim": 512,
    },
    "ViT-B-32:openai": {
        "path": "means/clip_ViT-B-32_image.pt",
        "url": DEFAULT_DATA_URL + "means/clip_ViT-B-32_image.pt",
        "size": 2837,
        "sha256": "dbd73aec9162cc26d3850c042b2a035720c1f6d38fc0b64a73518995f884202b",
        "description": "MSCOCO image mean, OpenAI CLIP ViT-B/32",
        "dim": 512,
    },
    "ViT-B-16:openai": {
        "path": "means/clip_ViT-B-16_image.pt",
        "url": DEFAULT_DATA_URL + "means/clip_ViT-B-16_image.pt",
        "size": 2837,
        "sha256": "2907555438ef16b4677cb72ad81b3c3fe8c9246028714e943dba6c3b91d67eee",
        "description": "MSCOCO image mean, OpenAI CLIP ViT-B/16",
        "dim": 512,
    },
    "RN50:openai": {
        "path": "means/clip_RN50_image.pt",
        "url": DEFAULT_DATA_URL + "means/clip_RN50_image.pt",
        "size": 4885,
        "sha256": "e1ee3345ef6faf6f8ebc30f649189bf4e583fe71229b2955e227cf59124d42fa",
        "description": "MSCOCO image mean, OpenAI CLIP RN50",
        "dim": 1024,
    },
}

def list_means():
    """Encoders (``"MODEL:TAG"``) that have a reference image mean.

    Returns
    -------
    names : list of str
        Keys of :data:`MEANS`.

    Examples
    --------
    >>> from sksplice import list_means
    >>> list_means()
    ['ViT-B-32:laion2b_s34b_b79k', 'ViT-B-32:openai', 'ViT-B-16:openai', 'RN50:openai']
    """
    return list(MEANS)


def _mean_key(encoder):
    """The registry key for an encoder spec, or None when it has no tag."""
    from .encoders import ENCODER_ALIASES, HF_ENCODERS, Encoder

    if isinstance(encoder, Encoder):
        if encoder.model_name.startswith("hf:"):
            key = encoder.model_name
        elif encoder.pretrained is None or encoder.checkpoint is not None:
            return None
        else:
            key = f"{encoder.model_name}:{encoder.pretrained}"
    elif isinstance(encoder, str):
        key = encoder
    elif isinstance(encoder, tuple) and len(encoder) == 2:
        key = f"{encoder[0]}:{encoder[1]}"
    else:
        return None
    if key.startswith("hf:"):
        return HF_ENCODERS.get(key[3:], {}).get("same_weights_as")
    return ENCODER_ALIASES.get(key, key)


def get_reference_mean(encoder, *, cache_dir=None, offline=None):
    """The reference (MSCOCO) image mean for an encoder, or ``None`` if none is registered.

    Parameters
    ----------
    encoder : Encoder, str or (model, tag) tuple
        The backbone, e.g. ``"ViT-B-32:laion2b_s34b_b79k"``, a reference-code
        name (``"clip:ViT-B/32"``), a Hugging Face name holding the same
        weights (``"hf:openai/clip-vit-base-patch32"``) or an
        :class:`~sksplice.encoders.Encoder`.  Encoders loaded from a local
        checkpoint or a user object have no registered mean (pass
        ``get_reference_mean("MODEL:TAG")`` explicitly when the checkpoint holds
        those weights).
    cache_dir : str or path-like, default=None
        Where the mean files are cached (see
        :func:`sksplice.concepts.get_cache_dir`).
    offline : bool or None, default=None
        Never download (``None``: ``SKSPLICE_OFFLINE`` / ``HF_HUB_OFFLINE``).

    Returns
    -------
    mean : ndarray of shape (embed_dim,) or None
        The mean of normalised image embeddings (float64, not re-normalised),
        or ``None`` when the encoder has no reference mean.

    Raises
    ------
    FileNotFoundError
        The mean is registered but not cached, and downloads are off.

    Examples
    --------
    >>> from sksplice import get_reference_mean
    >>> get_reference_mean("ViT-L-14:datacomp_xl_s13b_b90k") is None
    True
    """
    key = _mean_key(encoder)
    if key is None or key not in MEANS:
        return None
    import torch

    entry = MEANS[key]
    path = fetch(entry["path"], entry["sha256"], cache_dir=cache_dir, offline=offline,
                 what=f"reference image mean for {key!r}", url=entry["url"], size=entry["size"])
    with open_regular(path, "reference mean file", MAX_ARRAY_BYTES) as f:
        mean = torch.load(f, map_location="cpu", weights_only=True)
    mean = np.asarray(mean.detach().cpu().numpy(), dtype=np.float64).ravel()
    if mean.shape != (entry["dim"],):  # pragma: no cover - guarded by the digest
        raise ValueError(f"the reference mean {path} has shape {mean.shape}, expected "
                         f"({entry['dim']},); delete it to download it again.")
    dim = getattr(encoder, "embed_dim", None) if not isinstance(encoder, (str, tuple)) else None
    if dim is not None and dim != mean.shape[0]:
        raise ValueError(
            f"the reference mean for {key!r} has {mean.shape[0]} features but the encoder "
            f"embeds into {dim}; the encoder is not {key}."
        )
    return mean


def estimate_mean(encoder, images, *, batch_size=64, progress=False):
    """Mean of the normalised image embeddings of ``images``: a reference mean for any backbone.

    Use a broad, diverse image set (MSCOCO-like), not the images you will
    decompose: centring on one class's own mean removes that class's concept.

    Parameters
    ----------
    encoder : Encoder, str or tuple
        The backbone (anything :func:`sksplice.get_encoder` accepts).
    images : sequence of images
        Paths, PIL images or uint8 arrays of shape (H, W, 3).
    batch_size : int, default=64
        Images encoded at once.
    progress : bool, default=False
        Show a progress bar.

    Returns
    -------
    mean : ndarray of shape (embed_dim,)
        Float64, not re-normalised (as the reference means).

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice import Encoder, estimate_mean
    >>> class Constant:  # any object with encode_image / encode_text
    ...     def encode_image(self, images):
    ...         return np.ones((len(images), 4))
    ...     def encode_text(self, texts):
    ...         return np.ones((len(texts), 4))
    >>> enc = Encoder.from_model(Constant(), device="cpu")
    >>> estimate_mean(enc, [np.zeros((8, 8, 3), dtype=np.uint8)] * 3)
    array([0.5, 0.5, 0.5, 0.5])
    """
    from .encoders import get_encoder

    enc = get_encoder(encoder)
    emb = enc.encode_images(images, batch_size=batch_size, progress=progress)
    return emb.astype(np.float64).mean(axis=0)

