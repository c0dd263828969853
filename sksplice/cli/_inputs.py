"""What ``sksplice decompose`` reads: image files, embeddings files and texts."""

from __future__ import annotations

import os
import sys

import numpy as np

from .._io import (
    MAX_ARRAY_BYTES,
    MAX_TEXT_BYTES,
    RefusedFileError,
    open_regular,
    read_bytes,
    read_text,
    split_lines,
)
from ._resolve import CLIError

__all__ = ["EMBEDDING_SUFFIXES", "SKLEARN_SAMPLE_PREFIX", "load_embeddings_file",
           "read_texts", "resolve_image_arg"]

#: File suffixes read as embeddings (one row per input) rather than images.
EMBEDDING_SUFFIXES = (".npy", ".pt", ".pth", ".safetensors")

#: ``sklearn:NAME`` names one of the photos scikit-learn ships (no download needed).
SKLEARN_SAMPLE_PREFIX = "sklearn:"


def resolve_image_arg(arg):
    """``sklearn:china.jpg`` / ``sklearn:flower.jpg`` -> the file scikit-learn installs."""
    if not arg.startswith(SKLEARN_SAMPLE_PREFIX):
        return arg
    import sklearn.datasets

    folder = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    name = arg[len(SKLEARN_SAMPLE_PREFIX):]
    available = sorted(f for f in os.listdir(folder) if f.lower().endswith(".jpg"))
    if name not in available:  # also keeps '../x' from naming a file outside the folder
        raise CLIError(f"{arg[:80]!r} is not a scikit-learn sample image; choose one of "
                       f"{', '.join(SKLEARN_SAMPLE_PREFIX + a for a in available)}.")
    return os.path.join(folder, name)


def is_embeddings_file(arg):
    """Whether a positional input names an embeddings file (by its suffix)."""
    return os.path.splitext(arg)[1].lower() in EMBEDDING_SUFFIXES


def _tensor_to_array(value, path):
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def load_embeddings_file(path, dim):
    """Rows of embeddings from a .npy, .pt/.pth or .safetensors file.

    Parameters
    ----------
    path : str
        The file: an array of shape (n, dim), or (dim,) for one embedding.
    dim : int
        The model's embedding dimension.

    Returns
    -------
    X : ndarray of shape (n, dim)
        float32 or float64 rows.
    """
    suffix = os.path.splitext(path)[1].lower()
    what = "embeddings file"
    try:
        if suffix == ".npy":
            with open_regular(path, what, MAX_ARRAY_BYTES) as f:
                value = np.load(f, allow_pickle=False)
        elif suffix == ".safetensors":
            try:
                from safetensors.numpy import load
            except ImportError:
                raise CLIError("reading .safetensors needs the safetensors package: pip "
                               "install safetensors (or save the embeddings with numpy.save)."
                               ) from None
            tensors = load(read_bytes(path, what, MAX_ARRAY_BYTES))
            if len(tensors) != 1:
                raise CLIError(f"embeddings file {path!r} holds {len(tensors)} tensors "
                               f"({', '.join(sorted(tensors)[:5])}); save exactly one tensor "
                               "of shape (n, dim).")
            value = next(iter(tensors.values()))
        else:
            import torch

            with open_regular(path, what, MAX_ARRAY_BYTES) as f:
                value = torch.load(f, map_location="cpu", weights_only=True)
    except CLIError:
        raise
    except RefusedFileError as exc:  # a directory, a pipe, a device, or over the cap
        raise CLIError(str(exc)) from None
    except FileNotFoundError:
        raise CLIError(f"embeddings file {path!r} does not exist.") from None
    except Exception as exc:  # noqa: BLE001 - numpy, torch, safetensors raise many kinds
        raise CLIError(f"embeddings file {path!r} could not be read ({type(exc).__name__}: "
                       f"{str(exc)[:200]}); pass a .npy, .pt or .safetensors file holding one "
                       "array of shape (n, dim).") from None
    X = _tensor_to_array(value, path)
    if X.dtype.kind not in "fiu" or X.ndim not in (1, 2):
        raise CLIError(f"embeddings file {path!r} holds a {X.ndim}-D {X.dtype} array; it "
                       f"must be numeric, of shape (n, {dim}) or ({dim},).")
    X = X.reshape(1, -1) if X.ndim == 1 else X
    if X.shape[1] != dim:
        raise CLIError(f"embeddings file {path!r} has rows of {X.shape[1]} values but the "
                       f"model embeds into {dim}: the embeddings come from another model; "
                       "pass the model options they were made with.")
    if X.shape[0] == 0:
        raise CLIError(f"embeddings file {path!r} holds no rows.")
    if not np.all(np.isfinite(X)):
        rows = np.flatnonzero(~np.all(np.isfinite(X), axis=1))
        raise CLIError(f"embeddings file {path!r} has NaN or inf in row(s) "
                       f"{rows[:5].tolist()}.")
    return X.astype(np.float32 if X.dtype == np.float32 else np.float64, copy=False)


def read_texts(args):
    """The texts of ``--text`` (in order) then of ``--texts FILE`` (one a line, blanks skipped).

    A line ends at a newline only; a control character inside one is an error
    naming the line (see :func:`sksplice._io.split_lines`).
    """
    texts = [t for t in args.text]
    if args.texts is not None:
        what = "text file"
        try:
            if args.texts == "-":
                text = sys.stdin.read()
            else:
                text = read_text(args.texts, what, MAX_TEXT_BYTES, encoding="utf-8-sig")
            lines = split_lines(text, f"{what} {args.texts!r}")
        except FileNotFoundError:
            raise CLIError(f"text file {args.texts!r} does not exist; pass a UTF-8 file "
                           "with one text a line.") from None
        except UnicodeDecodeError as exc:
            raise CLIError(f"text file {args.texts!r} is not UTF-8 text ({exc}).") from None
        texts += [ln.strip() for ln in lines if ln.strip()]
    return texts
