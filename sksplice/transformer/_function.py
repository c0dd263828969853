"""``splice_encode``: the function form of :class:`SpliceTransformer`."""

from __future__ import annotations

from .. import _defaults
from ._estimator import SpliceTransformer

__all__ = ["splice_encode"]


def splice_encode(X, dictionary, *, l1=_defaults.L1, image_mean=None, solver="auto",
                  device="auto", batch_size=_defaults.BATCH_SIZE, max_iter=None,
                  tol=_defaults.TOL, sparse_output=True, n_jobs=None,
                  return_diagnostics=False, n_nonzero=None):
    """Decompose embeddings into sparse concept codes (function form).

    Shares its code path with :class:`SpliceTransformer` (it fits one on
    ``X`` and decomposes ``X``); the codes are the exact SpLiCE weights.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Embeddings.
    dictionary : ConceptDictionary or (names, embeddings)
        The concept dictionary.
    l1 : float, default=0.25
        Sparsity penalty (reference-implementation scale).
    image_mean : ndarray of shape (n_features,), "fit" or None, default=None
        Modality mean subtracted before decomposition.
    solver : str, default="auto"
        As in :class:`SpliceTransformer`.
    device : str, default="auto"
        As in :class:`SpliceTransformer`.
    batch_size : int, default=1024
        As in :class:`SpliceTransformer`.
    max_iter : int, default=None
        As in :class:`SpliceTransformer`.
    tol : float, default=1e-6
        As in :class:`SpliceTransformer`.
    sparse_output : bool, default=True
        As in :class:`SpliceTransformer`.
    n_jobs : int, default=None
        As in :class:`SpliceTransformer`.
    return_diagnostics : bool, default=False
        Also return the solver's :class:`~sksplice.solvers.SolverResult`.
    n_nonzero : int, default=None
        As in :class:`SpliceTransformer`.

    Returns
    -------
    codes : scipy.sparse.csr_matrix or ndarray of shape (n_samples, n_concepts)
        The exact weights.
    info : SolverResult
        Only when ``return_diagnostics=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice import splice_encode
    >>> E = np.eye(4)
    >>> W = splice_encode(np.array([[2.0, 1.0, 0.0, 0.0]]), (["a", "b", "c", "d"], E),
    ...                   l1=0.1, device="cpu", sparse_output=False)
    >>> np.round(W, 3)
    array([[0.7  , 0.312, 0.   , 0.   ]])
    """
    est = SpliceTransformer(
        l1=l1, dictionary=dictionary, image_mean=image_mean, input="embedding",
        solver=solver, device=device, batch_size=batch_size, max_iter=max_iter, tol=tol,
        sparse_output=sparse_output, n_jobs=n_jobs, n_nonzero=n_nonzero,
    ).fit(X)
    codes, info = est.decompose(X)
    return (codes, info) if return_diagnostics else codes
