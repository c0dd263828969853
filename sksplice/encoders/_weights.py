"""open_clip weights: find them in the local caches, download them, load them once per process.

Loaded models are shared by the :class:`~sksplice.encoders.Encoder` objects of
one process in a small LRU cache (:data:`LOADED`), keyed by model, tag,
checkpoint file state, device and cache folder.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict

from .._download import file_sha256, is_offline
from .._io import MAX_CHECKPOINT_BYTES, check_regular_file
from ..exceptions import DownloadError

__all__ = [
    "LOADED",
    "MAX_LOADED",
    "cached_weights",
    "checkpoint_digest",
    "default_preprocess",
    "default_tokenizer",
    "load_open_clip",
    "shared_model",
    "state_digest",
    "weights_file",
]

#: loaded open_clip models, shared by the Encoders of one process (bounded)
LOADED: OrderedDict = OrderedDict()
MAX_LOADED = 2
#: checkpoint digests by (path, size, mtime)
_DIGESTS: dict = {}


def shared_model(key, load):
    """``load()`` once per ``key`` in this process (an LRU of :data:`MAX_LOADED` models).

    Parameters
    ----------
    key : hashable
        What identifies the loaded parts.
    load : callable
        Returns the parts when they are not cached.

    Returns
    -------
    parts : object
        What ``load`` returned for ``key``.
    """
    if key in LOADED:
        LOADED.move_to_end(key)
    else:
        LOADED[key] = load()
        while len(LOADED) > MAX_LOADED:
            LOADED.popitem(last=False)
    return LOADED[key]


def checkpoint_digest(path):
    """SHA-256 of a checkpoint file, memoised by (real path, size, mtime).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    digest : str
    """
    st = check_regular_file(path, "checkpoint", MAX_CHECKPOINT_BYTES)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_sha256(path)
    return _DIGESTS[key]


def state_digest(module):
    """SHA-256 over a torch module's parameters and buffers (names, shapes, values).

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    digest : str
    """
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{tuple(tensor.shape)}:{t.dtype}".encode())
        if t.numel():
            h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def default_preprocess(model):
    """open_clip's evaluation transform for an open_clip model, else None.

    Parameters
    ----------
    model : object

    Returns
    -------
    preprocess : callable or None
    """
    import open_clip

    if isinstance(model, (open_clip.CLIP, open_clip.CustomTextCLIP)):
        from open_clip.transform import PreprocessCfg, image_transform_v2

        cfg = getattr(getattr(model, "visual", model), "preprocess_cfg", None) or {}
        cfg = {k: v for k, v in cfg.items() if k in PreprocessCfg.__dataclass_fields__}
        if "size" not in cfg and hasattr(model.visual, "image_size"):
            cfg["size"] = model.visual.image_size
        return image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    return None


def default_tokenizer(model):
    """CLIP's tokenizer for an open_clip model with CLIP's vocabulary, else None.

    Parameters
    ----------
    model : object

    Returns
    -------
    tokenizer : callable or None
    """
    import open_clip

    if isinstance(model, (open_clip.CLIP, open_clip.CustomTextCLIP)):
        cfg = open_clip.get_model_tokenize_cfg(model)
        if cfg.get("vocab_size", 49408) == 49408:
            return open_clip.SimpleTokenizer(context_length=cfg.get("context_length", 77))
        raise ValueError(
            "cannot infer the tokenizer of this open_clip model (its vocabulary is not CLIP's); "
            "pass tokenizer=open_clip.get_tokenizer(MODEL_NAME)."
        )
    return None


def weights_file(enc):
    """Local file of a tagged open_clip checkpoint: cached, else downloaded (unless offline).

    Parameters
    ----------
    enc : Encoder
        An open_clip encoder with a pretrained tag.

    Returns
    -------
    path : str
    cfg : dict
        open_clip's pretrained config of the tag.
    """
    import open_clip

    cfg = open_clip.get_pretrained_cfg(enc.model_name, enc.pretrained)
    cache_dir = None if enc.cache_dir is None else str(enc.cache_dir)
    found, looked = cached_weights(cfg, cache_dir)
    if found:
        return found, cfg
    if is_offline(enc.offline):
        raise FileNotFoundError(
            f"the weights of {enc.model_name}:{enc.pretrained} are needed but not cached (looked "
            f"in {'; '.join(looked)}) and downloads are off (SKSPLICE_OFFLINE or "
            "HF_HUB_OFFLINE is set). Provide them: run once with network access to cache "
            f"them, or copy the checkpoint file to this machine and pass "
            f"encoder=({enc.model_name!r}, '/path/to/checkpoint')."
        )
    try:
        return open_clip.download_pretrained(cfg, cache_dir=cache_dir), cfg
    except Exception as e:  # network, hub or disk failure
        raise DownloadError(
            f"could not download the weights of {enc.model_name}:{enc.pretrained} ({e}). Check "
            f"the network, or download the checkpoint elsewhere and pass "
            f"encoder=({enc.model_name!r}, '/path/to/checkpoint')."
        ) from e


def cached_weights(cfg, cache_dir):
    """(path or None, places looked) for a pretrained config, without network access.

    Parameters
    ----------
    cfg : dict
        open_clip's pretrained config (``hf_hub`` and/or ``url``).
    cache_dir : str or None
        The Hugging Face / open_clip cache folder (None: their defaults).

    Returns
    -------
    path : str or None
    looked : list of str
        Where it was looked for, for error messages.
    """
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    looked = []
    hub = cfg.get("hf_hub", "")
    if hub:
        import huggingface_hub
        from huggingface_hub import constants as hf_constants

        repo_id, filename = os.path.split(hub)
        filename = filename or HF_WEIGHTS_NAME
        names = [filename]
        if filename == HF_WEIGHTS_NAME:
            names.insert(0, HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            path = huggingface_hub.try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(path, str) and os.path.isfile(path):
                return path, looked
        looked.append(
            f"the Hugging Face cache {cache_dir or hf_constants.HF_HUB_CACHE} for "
            f"{repo_id}/{filename}"
        )
    url = cfg.get("url", "")
    if url:
        path = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"),
                            os.path.basename(url))
        if os.path.isfile(path):
            return path, looked
        looked.append(path)
    return None, looked


def load_open_clip(enc):
    """(model, preprocess, tokenizer) for an open_clip Encoder.

    Parameters
    ----------
    enc : Encoder
        An open_clip encoder (tag, checkpoint or random weights).

    Returns
    -------
    parts : tuple
        The model in eval mode, its image transform and its tokenizer.
    """
    import open_clip

    kwargs = {}
    weights = None
    if enc.checkpoint is not None:
        weights = str(enc.checkpoint)
    elif enc.pretrained is not None:
        weights, cfg = weights_file(enc)
        # what open_clip applies for a tag, applied to the resolved file: the
        # tag's activation (OpenAI weights use QuickGELU) and its preprocessing
        if cfg.get("quick_gelu", False):
            kwargs["force_quick_gelu"] = True
        for src, dst in (("mean", "image_mean"), ("std", "image_std"),
                         ("interpolation", "image_interpolation"),
                         ("resize_mode", "image_resize_mode")):
            if cfg.get(src) is not None:
                kwargs[dst] = cfg[src]
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            enc.model_name, pretrained=weights, device=enc.device,
            cache_dir=None if enc.cache_dir is None else str(enc.cache_dir), **kwargs,
        )
    except RuntimeError as e:
        msg = str(e)
        if weights is not None and ("state_dict" in msg or "size mismatch" in msg):
            lines = [ln.strip() for ln in msg.splitlines() if ln.strip()][1:4]
            raise ValueError(
                f"the checkpoint {weights!r} does not fit the architecture {enc.model_name!r} "
                f"({'; '.join(lines)[:400]}). Pass the model name the checkpoint was trained "
                "with, e.g. encoder=('ViT-B-16', path) for a ViT-B/16 checkpoint (OpenAI "
                "weights use the '-quickgelu' variants)."
            ) from None
        raise
    except Exception as e:
        if enc.checkpoint is not None:  # unreadable, not a state dict, wrong format...
            raise ValueError(
                f"the checkpoint {weights!r} could not be loaded into {enc.model_name!r} "
                f"({type(e).__name__}: {str(e)[:300]}); pass a weights file written by "
                "torch.save(model.state_dict(), path) (or a .safetensors file) for this "
                "architecture."
            ) from e
        raise
    model.eval()
    tokenizer = open_clip.get_tokenizer(enc.model_name)
    return model, preprocess, tokenizer
