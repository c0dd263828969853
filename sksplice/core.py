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

__all__ = ["EPS", "normalize_rows", "center_embeddings", "recompose", "reconstruction_cosine"]

#: Norms below this are treated as zero when normalising rows.
EPS = 1e-12


def normalize_rows(X, *, copy=True):
    """L2-normalise the rows of a 2-D array; zero rows stay zero.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Rows to normalise.
    copy : bool, default=True
        Whether to return a new array (otherwise ``X`` is modified in place).

    Returns
    -------
    X_normalized : ndarray of shape (n_samples, n_features)
        Rows with unit Euclidean norm (rows of norm below ``1e-12`` are
        returned as zeros, never NaN).
    """
    X = np.array(X, copy=copy)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    np.divide(X, np.maximum(norms, EPS), out=X)
    X[(norms <= EPS).ravel()] = 0.0
    return X


def center_embeddings(X, mean):
    """The SpLiCE input transform ``z = normalize(normalize(x) - mean)``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Raw embeddings.
    mean : ndarray of shape (n_features,) or None
        Modality mean (e.g. the MSCOCO image mean); ``None`` skips centring.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_features)
        Centred, unit-norm rows.
    """
    Z = normalize_rows(X)
    if mean is not None:
        Z -= np.asarray(mean, dtype=Z.dtype)
        normalize_rows(Z, copy=False)
    return Z


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
    """
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
    """
    Xn = normalize_rows(np.asarray(X, dtype=np.float64))
    return np.sum(Xn * np.asarray(X_hat, dtype=np.float64), axis=1)
