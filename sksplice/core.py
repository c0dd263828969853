"""The SpLiCE maths shared by every layer.

An embedding ``x`` is normalised, the modality mean ``mu`` is subtracted and
the result normalised again::

    z = normalize(normalize(x) - mu)

Its codes ``w >= 0`` over the dictionary ``C`` (unit-norm, centred concept
rows) solve ``min ||z - C^T w||^2 + l1 * ||w||_1`` (see :mod:`sksplice.solvers`),
and the reconstruction adds the mean back::

    x_hat = normalize(normalize(C^T w) + mu)

:func:`reconstruction_cosine` is the cosine between ``normalize(x)`` and
``x_hat``, the fidelity the paper reports.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = [
    "EPS", "center_embeddings", "degenerate_rows", "normalize_rows", "recompose",
    "reconstruction_cosine", "rounding_floor",
]

#: Norms below this are treated as zero when normalising rows.
EPS = 1e-12


def normalize_rows(X, *, copy=True, eps=EPS):
    """L2-normalise the rows of a 2-D array at any scale; zero rows stay zero.

    Each row is first divided by its largest absolute entry, so rows of norm
    ``1e300`` or ``1e-300`` are normalised exactly, without overflow or
    underflow.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Rows to normalise.
    copy : bool, default=True
        Whether to return a new array (otherwise ``X`` is modified in place).
    eps : float, default=1e-12
        Rows whose Euclidean norm is at most ``eps`` are returned as zeros
        (``eps=0`` keeps every row with a nonzero entry).

    Returns
    -------
    X_normalized : ndarray of shape (n_samples, n_features)
        Rows with unit Euclidean norm, or zeros (never NaN).
    """
    X = np.array(X, copy=copy)
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    scale = np.max(np.abs(X), axis=1, keepdims=True) if X.shape[1] else np.zeros((len(X), 1))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        small = (scale <= eps).ravel() if eps > 0 else None
        np.divide(X, np.where(scale > 0, scale, 1), out=X)
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        np.divide(X, np.where(norms > 0, norms, 1), out=X)
        if eps > 0:
            # the row's true norm is scale * norms; compare without forming it
            small |= (norms.ravel() * scale.ravel() <= eps)
    X[small if eps > 0 else (scale <= 0).ravel()] = 0.0
    return X


def center_embeddings(X, mean, *, return_degenerate=False):
    """The SpLiCE input transform ``z = normalize(normalize(x) - mean)``.

    Works on numpy arrays and on torch tensors (on any device: a tensor is
    centred where it lives and returned as a tensor there).  Rows are
    normalised at any scale (a finite row of norm ``1e-300`` or ``1e300`` is
    its direction).  A row has no direction, and stays zero, when every
    entry is zero or when ``normalize(x) - mean`` is at rounding level: its
    norm at most :func:`rounding_floor` (``8 * eps * (1 + ||mean||)``, eps
    of the floating type of ``X`` and at least float32's): an input equal to
    the mean, say, leaves only the rounding residual of its normalisation,
    which is noise and is not decomposed.

    Parameters
    ----------
    X : ndarray or Tensor of shape (n_samples, n_features)
        Raw embeddings.
    mean : ndarray or Tensor of shape (n_features,) or None
        Modality mean (e.g. the MSCOCO image mean); ``None`` skips centring.
    return_degenerate : bool, default=False
        Also return which rows have no direction.

    Returns
    -------
    Z : ndarray or Tensor of shape (n_samples, n_features)
        Centred, unit-norm rows (zeros for rows without a direction), of
        the kind of ``X`` (float32 stays float32).
    degenerate : ndarray or Tensor of shape (n_samples,), dtype bool
        Only when ``return_degenerate=True``: the rows without a direction.
    """
    if type(X).__module__.split(".")[0] == "torch":
        Z, degenerate = _center_torch(X, mean)
    else:
        Z, degenerate = _unit_rows(X)
        if mean is not None:
            mean = np.asarray(mean, dtype=Z.dtype)
            Z -= mean
            sq = np.einsum("ij,ij->i", Z, Z)
            floor = rounding_floor(Z.dtype, float(np.sqrt(mean @ mean)))
            if degenerate is None:
                degenerate = sq <= floor * floor
            else:
                degenerate |= sq <= floor * floor
            tiny = 1e-30 if Z.dtype == np.float32 else 1e-280
            norms = np.sqrt(sq) if np.all(degenerate | (sq > tiny)) else _safe_norms(Z)
            if degenerate.any():
                norms[degenerate] = 1.0
                Z[degenerate] = 0.0
            Z /= norms[:, None]
        elif degenerate is None:
            degenerate = np.zeros(len(Z), dtype=bool)
    return (Z, degenerate) if return_degenerate else Z


def rounding_floor(dtype, mean_norm):
    """The norm at or below which ``normalize(x) - mean`` is rounding noise.

    Parameters
    ----------
    dtype : numpy or torch floating dtype
        The working precision.
    mean_norm : float
        ``||mean||``.

    Returns
    -------
    floor : float
        ``8 * eps * (1 + mean_norm)``, ``eps`` the larger of ``dtype``'s
        machine epsilon and float32's: embeddings are computed in float32 at
        best, so a float64 row that equals the mean up to float32 rounding
        (a float32 embedding held in a float64 array or a list) has no
        direction either.
    """
    eps = _EPS.get(dtype)
    if eps is None:
        eps = _EPS.get(str(dtype).replace("torch.", ""), 2.0**-52)
    return 8.0 * max(eps, _EPS["float32"]) * (1.0 + mean_norm)


#: machine epsilon by dtype (numpy dtypes, and names for torch's)
_EPS = {np.dtype(np.float16): 2.0**-10, np.dtype(np.float32): 2.0**-23,
        np.dtype(np.float64): 2.0**-52, "float16": 2.0**-10, "bfloat16": 2.0**-7,
        "float32": 2.0**-23, "float64": 2.0**-52}


def _unit_rows(X):
    """``(normalize_rows(X, eps=0), zero rows)``, directly when no norm can over- or underflow.

    The mask is None on the direct path (no row is zero there).
    """
    X = np.asarray(X)
    if X.dtype.kind == "f" and X.dtype.itemsize >= 4 and X.ndim == 2 and X.shape[1]:
        sq = np.einsum("ij,ij->i", X, X)
        lo, hi = (1e-30, 1e30) if X.dtype == np.float32 else (1e-280, 1e280)
        if np.all((sq > lo) & (sq < hi)):  # every row safely away from 0 and overflow
            return X / np.sqrt(sq)[:, None], None
    Z = normalize_rows(X, eps=0.0)
    return Z, ~Z.any(axis=1)


def _safe_norms(Z):
    """Row norms without overflow or underflow (rows scaled by their peak first)."""
    peak = np.max(np.abs(Z), axis=1) if Z.shape[1] else np.zeros(len(Z), Z.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = Z / np.where(peak > 0, peak, 1)[:, None]
    return np.linalg.norm(scaled, axis=1) * peak


def _center_torch(X, mean):
    """:func:`center_embeddings` on a torch tensor, where it lives."""
    import torch

    if not X.dtype.is_floating_point:
        X = X.to(torch.float64)
    peak = X.abs().amax(dim=1, keepdim=True) if X.shape[1] else X.new_zeros((len(X), 1))
    degenerate = (peak <= 0).ravel()
    Z = X / torch.where(peak > 0, peak, torch.ones_like(peak))
    norms = torch.linalg.vector_norm(Z, dim=1, keepdim=True)
    Z = Z / torch.where(norms > 0, norms, torch.ones_like(norms))
    if mean is not None:
        mean = torch.as_tensor(mean, dtype=Z.dtype, device=Z.device)
        Z = Z - mean
        peak = Z.abs().amax(dim=1, keepdim=True) if Z.shape[1] else Z.new_zeros((len(Z), 1))
        scaled = Z / torch.where(peak > 0, peak, torch.ones_like(peak))
        norms = torch.linalg.vector_norm(scaled, dim=1, keepdim=True) * peak
        floor = rounding_floor(Z.dtype, float(torch.linalg.vector_norm(mean)))
        degenerate = degenerate | (norms.ravel() <= floor)
        Z = Z / torch.where(norms > 0, norms, torch.ones_like(norms))
    Z = torch.where(degenerate[:, None], torch.zeros_like(Z), Z)
    return Z, degenerate


def degenerate_rows(X):
    """Indices of the rows with no direction to decompose (every entry zero).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Raw embeddings.

    Returns
    -------
    rows : ndarray of int
        Their indices, in order.
    """
    return np.flatnonzero(~np.asarray(X).any(axis=1))


def recompose(codes, dictionary, mean):
    """Dense reconstruction ``normalize(normalize(codes @ C) + mean)``.

    A row whose codes are all zero reconstructs to ``normalize(mean)`` (or to
    zeros when ``mean`` is None); the output is never NaN.

    Parameters
    ----------
    codes : ndarray or sparse matrix of shape (n_samples, n_concepts)
        Nonnegative concept weights.
    dictionary : ndarray of shape (n_concepts, n_features)
        Unit-norm concept rows.
    mean : ndarray of shape (n_features,) or None
        Modality mean added back after recomposition.

    Returns
    -------
    X_hat : ndarray of shape (n_samples, n_features)
        Unit-norm reconstructed embeddings.
    """
    # the result ignores a positive factor on each row of codes: divide each row
    # by its largest weight first, so huge or tiny codes neither overflow nor underflow
    if sp.issparse(codes):
        peak = abs(codes).max(axis=1).toarray().ravel()
        inv = np.where(peak > 0, 1.0 / np.where(peak > 0, peak, 1.0), 1.0)
        codes = sp.diags(inv.astype(codes.dtype, copy=False)) @ codes
    else:
        codes = np.asarray(codes)
        peak = np.abs(codes).max(axis=1, keepdims=True) if codes.shape[1] else np.ones(
            (len(codes), 1))
        codes = codes / np.where(peak > 0, peak, 1.0)
    R = np.asarray(codes @ dictionary)
    R = normalize_rows(R, copy=False)
    if mean is not None:
        R += np.asarray(mean, dtype=R.dtype)
        normalize_rows(R, copy=False)
    return R


def reconstruction_cosine(X, X_hat):
    """Row-wise cosine between embeddings and their reconstructions.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Raw embeddings (normalised here).
    X_hat : ndarray of shape (n_samples, n_features)
        Unit-norm reconstructions, as returned by :func:`recompose`.

    Returns
    -------
    cosine : ndarray of shape (n_samples,)
        One cosine per row (0 for an all-zero input row).
    """
    Xn = normalize_rows(np.asarray(X, dtype=np.float64), eps=0.0)
    return np.sum(Xn * np.asarray(X_hat, dtype=np.float64), axis=1)
