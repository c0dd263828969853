"""The batched decomposition loop shared by every caller."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from ..core import center_embeddings
from ._base import SolverResult, batch_slices
from .sparsity import solve_n_nonzero

__all__ = ["solve_batched"]


def solve_batched(X, C, l1, mean, solver, sparse_output, n_nonzero=None):
    """The one decomposition loop: centre each batch, solve it, assemble the codes.

    Every caller (``SpliceTransformer``, ``splice_encode``, the Dask and shard
    paths) decomposes through this function.  Batches are cut by the
    solver's own ``batch_size`` (:func:`~sksplice.solvers._base.batch_slices`,
    the rule ``solver.solve`` uses too), so each batch is solved in one
    piece; a single batch skips every concatenation, and sparse codes are
    built by the solver directly from its working sets (no dense
    ``n_samples x n_concepts`` intermediate).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Embeddings (float32 or float64; the codes follow).
    C : ndarray of shape (n_concepts, n_features)
        Dictionary with unit-norm rows.
    l1 : float
        The penalty.
    mean : ndarray of shape (n_features,) or None
        The mean to subtract before normalising (``None``: none).
    solver : BaseSolver
        The configured solver.
    sparse_output : bool
        Return a ``scipy.sparse.csr_matrix`` rather than a dense array.
    n_nonzero : int, default=None
        Target sparsity (:func:`~sksplice.solvers.solve_n_nonzero`) instead
        of the fixed ``l1``.

    Returns
    -------
    codes : scipy.sparse.csr_matrix or ndarray of shape (n_samples, n_concepts)
        The codes, dtype of ``X``.
    info : SolverResult
        The concatenated per-sample diagnostics (its ``codes`` emptied).
    """
    dtype = X.dtype
    n = X.shape[0]
    blocks, infos = [], []
    for sl in batch_slices(n, solver.batch_size):
        Z = center_embeddings(X[sl], mean).astype(dtype, copy=False)
        if n_nonzero is None:
            res = solver.solve(C, Z, l1, sparse_output=sparse_output)
        else:
            res = solve_n_nonzero(C, Z, n_nonzero, solver=solver)
        W = res.codes
        if sparse_output and not sp.issparse(W):
            W = sp.csr_matrix(W)
        blocks.append(W.astype(dtype, copy=False))
        res.codes = np.zeros((W.shape[0], 0), dtype=dtype)
        infos.append(res)
    if len(blocks) == 1:
        codes = blocks[0]
    elif sparse_output:
        codes = sp.vstack(blocks, format="csr", dtype=dtype) if blocks else sp.csr_matrix(
            (0, C.shape[0]), dtype=dtype)
    else:
        codes = np.concatenate(blocks) if blocks else np.zeros((0, C.shape[0]), dtype)
    if sparse_output and not codes.has_sorted_indices:
        codes.sort_indices()
    info = SolverResult.concatenate(infos) if infos else SolverResult(
        np.zeros((0, 0), dtype), *(np.zeros(0, t) for t in (np.int64, float, float, bool)),
        solver=getattr(solver, "name", "?"))
    if not np.all(info.converged):
        n_bad = int(np.sum(~info.converged))
        warnings.warn(
            f"{n_bad} of {n} samples did not reach tol={solver.tol:g} within "
            f"max_iter={solver.max_iter} (worst relative duality gap "
            f"{float(np.max(info.gap)):.2e}); increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return codes, info
