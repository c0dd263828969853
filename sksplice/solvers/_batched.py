"""``solve_batched``: deprecated; :func:`sksplice.splice_encode` is the one coder."""

from __future__ import annotations

import warnings

import scipy.sparse as sp

from ..core import center_embeddings
from .sparsity import solve_n_nonzero

__all__ = ["solve_batched"]


def solve_batched(X, C, l1, mean, solver, sparse_output, n_nonzero=None):
    """Centre ``X`` and solve it (deprecated: use :func:`sksplice.splice_encode`).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Embeddings.
    C : ndarray of shape (n_concepts, n_features)
        Dictionary with unit-norm rows.
    l1 : float
        The penalty.
    mean : ndarray of shape (n_features,) or None
        The mean to subtract before normalising.
    solver : BaseSolver
        The configured solver.
    sparse_output : bool
        Return a ``scipy.sparse.csr_matrix``.
    n_nonzero : int, default=None
        Target sparsity instead of ``l1``.

    Returns
    -------
    codes : scipy.sparse.csr_matrix or ndarray of shape (n_samples, n_concepts)
        The codes, dtype of ``X``.
    info : SolverResult
        The per-sample diagnostics.
    """
    warnings.warn(
        "solve_batched is deprecated and will be removed; use "
        "sksplice.splice_encode(X, dictionary, image_mean=mean, solver=solver, "
        "return_diagnostics=True), which centres, batches and solves once.",
        FutureWarning, stacklevel=2,
    )
    Z = center_embeddings(X, mean).astype(X.dtype, copy=False)
    if n_nonzero is None:
        info = solver.solve(C, Z, l1, sparse_output=sparse_output)
    else:
        info = solve_n_nonzero(C, Z, n_nonzero, solver=solver)
    codes = info.codes
    if sparse_output and not sp.issparse(codes):
        codes = sp.csr_matrix(codes)
    return codes.astype(X.dtype, copy=False), info
