"""Input checks shared by ``SpliceTransformer`` and ``splice_encode`` (cheap on the hot path)."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .._inputs import as_rows, check_dimension, check_embeddings

__all__ = ["check_encode_input", "check_fitted", "named", "on_accelerator", "ready"]


def check_encode_input(X, d=None, source=""):
    """``X`` as finite float32/float64 embeddings of width ``d`` (a torch tensor stays one).

    Float16 and bfloat16 become float32, integers float64.  A torch tensor
    on a GPU is validated there.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_samples, n_features)
        Embeddings.
    d : int, default=None
        The dictionary's embedding dimension (``None``: not checked).
    source : str, default=""
        Where the dictionary came from (for the mismatch message).

    Returns
    -------
    X : ndarray or Tensor of shape (n_samples, n_features)
        Validated embeddings.
    """
    if on_accelerator(X):
        import torch

        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"X must be a non-empty 2-D tensor; got shape {tuple(X.shape)}.")
        X = X.detach()
        if X.dtype not in (torch.float32, torch.float64):
            X = X.to(torch.float32 if X.dtype.is_floating_point else torch.float64)
        if not bool(torch.isfinite(X).all()):
            raise ValueError("Input X contains NaN or infinity; pass finite embeddings.")
        if d is not None:
            check_dimension(X.shape[1], d, source)
        return X
    rows = as_rows(X)
    if getattr(rows, "dtype", None) == np.float16:
        rows = rows.astype(np.float32)
    X = check_embeddings(rows)
    if d is not None:
        check_dimension(X.shape[1], d, source)
    return X


def on_accelerator(X):
    """Whether ``X`` is a torch tensor on a device other than the CPU (kept there)."""
    return type(X).__module__.split(".")[0] == "torch" and getattr(
        getattr(X, "device", None), "type", "cpu") != "cpu"


def named(X, X_emb):
    """``X`` when it is a frame whose columns are the embedding's (for feature names)."""
    if hasattr(X, "columns") and X.shape[1] == X_emb.shape[1]:
        return X
    return X_emb


def check_fitted(est):
    """``check_is_fitted`` on the hot path: one attribute lookup when fitted."""
    if "dictionary_" not in est.__dict__:
        check_is_fitted(est, "dictionary_")


def ready(X, d):
    """Whether ``X`` is already what validation would return (the batch-1 hot path)."""
    return (
        type(X) is np.ndarray and X.ndim == 2 and X.dtype in (np.float32, np.float64)
        and X.shape[1] == d and X.shape[0] > 0 and bool(np.isfinite(X).all())
    )
