"""Encoder specifications as plain data: the registry, the aliases, and spec parsing.

As open_clip keeps its pretrained tags in ``pretrained.py``, the backbones
sksplice knows by name live here as data (:data:`ENCODERS`,
:data:`ENCODER_ALIASES`, :data:`HF_ENCODERS`); :func:`parse_spec` turns a
user's string into ``(kind, model, tag)`` without loading anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._defaults import ENCODER
from .._utils import suggest

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "ENCODER_ALIASES",
    "HF_ENCODERS",
    "HF_PREFIX",
    "MAX_SPEC_LENGTH",
    "SCHEMAS",
    "canonical_name",
    "check_model_name",
    "describe_encoder",
    "list_encoders",
    "looks_like_path",
    "parse_spec",
    "shorten",
]

#: The paper's default backbone (``sksplice._defaults.ENCODER``).
DEFAULT_ENCODER = ENCODER

#: The backbones of the SpLiCE paper (open_clip names and tags); any other
#: open_clip model and tag works too (see ``list_encoders(include_open_clip=True)``).
ENCODERS = {
    "ViT-B-32:laion2b_s34b_b79k": {
        "model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "embed_dim": 512,
        "description": "open_clip ViT-B/32 trained on LAION-2B (the paper's default)",
    },
    "ViT-B-32:openai": {
        "model": "ViT-B-32", "pretrained": "openai", "embed_dim": 512,
        "description": "OpenAI CLIP ViT-B/32",
    },
    "ViT-B-16:openai": {
        "model": "ViT-B-16", "pretrained": "openai", "embed_dim": 512,
        "description": "OpenAI CLIP ViT-B/16",
    },
    "RN50:openai": {
        "model": "RN50", "pretrained": "openai", "embed_dim": 1024,
        "description": "OpenAI CLIP ResNet-50",
    },
}

#: The SpLiCE reference code's ``"library:model"`` names -> sksplice's ``"MODEL:TAG"``.
ENCODER_ALIASES = {
    "clip:ViT-B/32": "ViT-B-32:openai",
    "clip:ViT-B/16": "ViT-B-16:openai",
    "clip:RN50": "RN50:openai",
    "open_clip:ViT-B-32": "ViT-B-32:laion2b_s34b_b79k",
    # open_clip's names for the OpenAI weights with the QuickGELU config spelled out
    "ViT-B-32-quickgelu:openai": "ViT-B-32:openai",
    "ViT-B-16-quickgelu:openai": "ViT-B-16:openai",
    "RN50-quickgelu:openai": "RN50:openai",
}

#: Prefix of Hugging Face ``transformers`` model names (``"hf:org/repo"`` or ``"hf:/folder"``).
HF_PREFIX = "hf:"

#: Hugging Face repositories holding the same weights as a registered backbone (so
#: they share its reference image mean).
HF_ENCODERS = {
    "openai/clip-vit-base-patch32": {"same_weights_as": "ViT-B-32:openai"},
    "openai/clip-vit-base-patch16": {"same_weights_as": "ViT-B-16:openai"},
}

#: open_clip's own schemas, passed through unchanged.
SCHEMAS = ("hf-hub:", "local-dir:")

#: Longest encoder specification parsed (a bound on the work a string can cause).
MAX_SPEC_LENGTH = 4096

_PATH_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz", ".txt")


def shorten(s, limit=80):
    """``repr(s)``, cut to about ``limit`` characters (error messages never echo huge inputs).

    Parameters
    ----------
    s : object
        Usually a string from the user.
    limit : int, default=80
        Characters kept.

    Returns
    -------
    text : str
        The repr, with ``...`` and the full length when cut.
    """
    text = repr(s)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(str(s))} characters)"


def describe_encoder(encoder):
    """A short description of an encoder specification, for error messages.

    Strings and tuples are shown (shortened); a model object is named by its
    class, never by its repr (a model's repr runs to thousands of characters).

    Parameters
    ----------
    encoder : object
        Anything passed as ``encoder=``.

    Returns
    -------
    text : str
        At most about 200 characters.

    Examples
    --------
    >>> from sksplice.encoders import describe_encoder
    >>> describe_encoder("ViT-B-32:openai")
    "'ViT-B-32:openai'"
    >>> describe_encoder(object())
    'a builtins.object object'
    """
    if isinstance(encoder, (str, os.PathLike)) or encoder is None:
        return shorten(encoder if encoder is None else os.fspath(encoder))
    if isinstance(encoder, tuple):
        return "(" + ", ".join(describe_encoder(e) for e in encoder[:3]) + (
            ", ...)" if len(encoder) > 3 else ")")
    cls = type(encoder)
    text = repr(encoder) if cls.__repr__ is not object.__repr__ else ""
    if text and len(text) <= 80 and "\n" not in text:
        return text
    return f"a {cls.__module__}.{cls.__qualname__} object"


def looks_like_path(s):
    """Whether a string names a file rather than a registered name.

    The one meaning sksplice gives this everywhere: a string with a path
    separator, starting with ``~`` or ``.``, or ending in a file suffix
    (``.pt``, ``.bin``, ``.safetensors``, ``.txt``..., or an image extension).

    Parameters
    ----------
    s : str
        The string to classify.

    Returns
    -------
    is_path : bool
        True when ``s`` should be read as a file path (so a missing file is a
        ``FileNotFoundError``, not an unknown name).

    Examples
    --------
    >>> from sksplice.encoders import looks_like_path
    >>> [looks_like_path(s) for s in ("weights/model.pt", "laion", "v.txt")]
    [True, False, True]
    """
    from .._defaults import IMAGE_EXTENSIONS

    if not isinstance(s, str):
        return isinstance(s, os.PathLike)
    if os.sep in s or "/" in s or (os.altsep and os.altsep in s) or s.startswith(("~", ".")):
        return True
    return Path(s).suffix.lower() in _PATH_SUFFIXES + tuple(IMAGE_EXTENSIONS)


def list_encoders(include_open_clip=False):
    """Encoder names accepted by :func:`get_encoder`.

    Parameters
    ----------
    include_open_clip : bool, default=False
        Also list every ``"MODEL:TAG"`` pair open_clip can download.

    Returns
    -------
    names : list of str
        The paper's backbones (:data:`ENCODERS`) first.

    Examples
    --------
    >>> from sksplice import list_encoders
    >>> list_encoders()
    ['ViT-B-32:laion2b_s34b_b79k', 'ViT-B-32:openai', 'ViT-B-16:openai', 'RN50:openai']
    """
    names = list(ENCODERS)
    if include_open_clip:
        import open_clip

        names += [n for n in open_clip.list_pretrained(as_str=True) if n not in ENCODERS]
    return names


def canonical_name(name):
    """The registered ``"MODEL:TAG"`` a reference-code alias stands for (else ``name``).

    Parameters
    ----------
    name : str
        An encoder name, e.g. ``"clip:ViT-B/32"``.

    Returns
    -------
    name : str
        ``"ViT-B-32:openai"`` for ``"clip:ViT-B/32"``; other names unchanged.

    Examples
    --------
    >>> from sksplice.encoders import canonical_name
    >>> canonical_name("open_clip:ViT-B-32"), canonical_name("RN50:openai")
    ('ViT-B-32:laion2b_s34b_b79k', 'RN50:openai')
    """
    return ENCODER_ALIASES.get(name, name)


def parse_spec(name):
    """Split an encoder string into ``(kind, model, tag)`` without loading anything.

    Parameters
    ----------
    name : str
        ``"MODEL:TAG"``, ``"MODEL"``, a reference-code alias such as
        ``"clip:ViT-B/32"``, ``"hf:org/repo"`` / ``"hf:/folder"``, or an
        open_clip schema (``"hf-hub:org/repo"``, ``"local-dir:/path"``).

    Returns
    -------
    kind : {"open_clip", "hf"}
        Which library loads it.
    model : str
        The open_clip model name (``"ViT-B-32"``), the schema string, or the
        Hugging Face repository / folder.
    tag : str or None
        The pretrained tag or checkpoint path (open_clip), else None.

    Raises
    ------
    ValueError
        An empty, overlong or ambiguous name (``"ViT-B/32"`` names both the
        OpenAI and the LAION weights: the error lists the choices).
    """
    if len(name) > MAX_SPEC_LENGTH:  # bounds the parsing and the name suggestions
        raise ValueError(
            f"encoder name of {len(name)} characters is too long (at most {MAX_SPEC_LENGTH}); "
            "pass a 'MODEL:TAG' name or (MODEL, checkpoint path)."
        )
    name = name.strip()
    if name.startswith(HF_PREFIX):
        repo = name[len(HF_PREFIX):]
        if not repo:
            raise ValueError(
                "encoder='hf:' names no model; use 'hf:org/repo' (e.g. "
                "'hf:openai/clip-vit-base-patch32') or 'hf:/path/to/saved/model'."
            )
        return "hf", repo, None
    if name.startswith(SCHEMAS):
        return "open_clip", name, None
    name = ENCODER_ALIASES.get(name, name)
    library, sep, _ = name.partition(":")
    if sep and library in ("clip", "open_clip"):
        choices = [a for a in ENCODER_ALIASES if a.startswith(library + ":")]
        raise ValueError(
            f"encoder={name!r} is not one of the SpLiCE reference code's names {choices}; "
            f"use one of those, or an open_clip 'MODEL:TAG' name (see list_encoders())."
        )
    model_name, sep, pretrained = name.partition(":")
    if not model_name:
        raise ValueError(f"encoder={name!r} has no model name; use 'MODEL:TAG'.")
    openai_spelling = "/" in model_name
    model_name = model_name.replace("/", "-")  # open_clip's spelling: ViT-B/32 -> ViT-B-32
    if sep:
        return "open_clip", model_name, pretrained or None
    registered = [k for k, e in ENCODERS.items() if e["model"] == model_name]
    if openai_spelling and len(registered) > 1:
        raise ValueError(
            f"encoder={name!r} is ambiguous: it names {registered}. Pick one, e.g. "
            f"{registered[1]!r} (OpenAI's weights, the reference code's "
            f"'clip:{name}') or {registered[0]!r} (the reference code's "
            f"'open_clip:{model_name}')."
        )
    return "open_clip", model_name, default_tag(model_name)


def default_tag(model_name):
    """The first registered tag of an open_clip model (the paper's, else open_clip's first).

    Parameters
    ----------
    model_name : str
        An open_clip model name.

    Returns
    -------
    tag : str
        A pretrained tag.

    Raises
    ------
    ValueError
        Unknown model, or a model without pretrained weights.
    """
    for entry in ENCODERS.values():
        if entry["model"] == model_name:
            return entry["pretrained"]
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if tags:
        return tags[0]
    check_model_name(model_name)
    raise ValueError(
        f"open_clip has no pretrained weights for {model_name!r}; pass a checkpoint with "
        f"encoder=({model_name!r}, '/path/to/weights'), or ({model_name!r}, None) for "
        "random weights."
    )


def check_model_name(model_name):
    """Raise a ``ValueError`` suggesting close matches when open_clip lacks ``model_name``.

    Parameters
    ----------
    model_name : str
        An open_clip model name or schema.
    """
    import open_clip

    if model_name.startswith(SCHEMAS):
        return
    if len(model_name) > MAX_SPEC_LENGTH or open_clip.get_model_config(
            model_name.replace("/", "-")) is None:
        hint = suggest(model_name[:200], open_clip.list_models())
        raise ValueError(
            f"unknown open_clip model {shorten(model_name)}.{hint}"
            " See open_clip.list_models(), or sksplice.list_encoders() for the paper's backbones."
        )
