"""The batched decomposition loop shared by every caller."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from ..core import center_embeddings
from ._base import SolverResult
from .sparsity import solve_n_nonzero

__all__ = ["solve_batched"]


def solve_batched(X, C, l1, mean, solver, sparse_output, n_nonzero=None):
    """The one decomposition loop: centre each batch, solve it, assemble the codes.

    Every caller (``SpliceTransformer``, ``splice_encode``, the Dask and shard
    paths) decomposes through this function.

    Returns the codes (CSR or dense, dtype of ``X``) and the concatenated
    diagnostics (with ``codes`` emptied).
    """
    dtype = X.dtype
    n = X.shape[0]
    bs = int(solver.batch_size)
    blocks, infos = [], []
    for start in range(0, n, bs):
        Z = center_embeddings(X[start : start + bs], mean).astype(dtype, copy=False)
        if n_nonzero is None:
            res = solver.solve(C, Z, l1)
        else:
            res = solve_n_nonzero(C, Z, n_nonzero, solver=solver)
        W = res.codes.astype(dtype, copy=False)
        blocks.append(sp.csr_matrix(W) if sparse_output else W)
        res.codes = np.zeros((W.shape[0], 0), dtype=dtype)
        infos.append(res)
    if sparse_output:
        codes = sp.vstack(blocks, format="csr", dtype=dtype) if blocks else sp.csr_matrix(
            (0, C.shape[0]), dtype=dtype
        )
        codes.sort_indices()
    else:
        codes = np.concatenate(blocks) if blocks else np.zeros((0, C.shape[0]), dtype)
    info = SolverResult.concatenate(infos)
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
