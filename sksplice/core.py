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
    "reconstruction_cosine",
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


def center_embeddings(X, mean):
    """The SpLiCE input transform ``z = normalize(normalize(x) - mean)``.

    Rows are normalised at any scale (a finite row of norm ``1e-300`` or
    ``1e300`` is its direction); a row with no nonzero entry has no direction
    and stays zero (it is not turned into ``-mean``), as does a row whose
    direction equals the mean's.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Raw embeddings.
    mean : ndarray of shape (n_features,) or None
        Modality mean (e.g. the MSCOCO image mean); ``None`` skips centring.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_features)
        Centred, unit-norm rows (zeros for rows without a direction).
    """
    Z = normalize_rows(X, eps=0.0)
    if mean is not None:
        zero = ~Z.any(axis=1)
        Z -= np.asarray(mean, dtype=Z.dtype)
        normalize_rows(Z, copy=False)
        Z[zero] = 0.0
    return Z


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
