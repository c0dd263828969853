"""The working-set solver compiled per sample with numba (CPU, Gram within budget).

When the Gram matrix ``G = C C^T`` fits the memory budget and numba is
installed (it comes with the ``bench`` extra, through skglm), each sample
runs the working-set algorithm of :mod:`~sksplice.solvers._kernels` as
compiled code: exact subproblems by block principal pivoting on ``G_SS``,
and the KKT check from the Gram rows (``C r = C z - G[S]^T x``, float64,
no pass over the dictionary).  Samples run in parallel over numba's threads
(the solver's thread policy sets how many).  Without numba the batched torch
core is used; both return the exact codes (relative duality gap <= ``tol``),
which the tests check against each other and against scikit-learn.
"""

from __future__ import annotations

import numpy as np

__all__ = ["available", "solve_gram_batch"]

#: Batches below this many samples run the serial kernel: a sample takes
#: 0.1-1 ms, comparable with waking numba's thread team.
_PARALLEL_MIN_SAMPLES = 8
#: Samples per dynamically scheduled chunk of the parallel kernel (a chunk
#: is 1-10 ms of work: small enough to balance, large enough to amortise).
_CHUNK = 8


def available():
    """Whether numba can be imported (the compiled path is then used).

    Returns
    -------
    ok : bool
        True when numba is installed.
    """
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def solve_gram_batch(gram, Cz, zz, half, *, tol, max_rounds, working_set, max_add, d):
    """Exact codes of a batch through the compiled per-sample kernel.

    Parameters
    ----------
    gram : ndarray of shape (n_concepts, n_concepts)
        ``C C^T`` (float64).
    Cz : ndarray of shape (n, n_concepts)
        ``Z C^T`` (float64).
    zz : ndarray of shape (n,)
        ``||z||^2`` per sample.
    half : ndarray of shape (n,)
        ``l1 / 2`` per sample.
    tol : float
        Target relative duality gap.
    max_rounds, working_set, max_add : int
        As for :class:`~sksplice.solvers.ActiveSetSolver`.
    d : int
        Number of features (for the rounding bound).

    Returns
    -------
    out : dict
        ``S`` (n, width) and ``x`` (n, width) supports and weights,
        ``counts`` (n,), ``rounds``, ``objective``, ``gap``, ``converged``,
        and ``ok`` (False: the sample needs the batched core's fallback).
    """
    import numba

    from . import _compiled_kernels as K
    from ._subproblems import BPP_FULL

    Cz = np.ascontiguousarray(Cz)
    args = (float(tol), int(max_rounds), int(working_set), int(max_add), int(d), int(BPP_FULL))
    if Cz.shape[0] >= _PARALLEL_MIN_SAMPLES:
        # dynamic scheduling in small chunks: on shared cores a thread slowed by
        # another process takes fewer chunks instead of holding the team back
        with numba.parallel_chunksize(_CHUNK):
            S, x, counts, rounds, objective, gap, converged, ok = K.batch(
                gram, Cz, zz, half, *args)
    else:
        S, x, counts, rounds, objective, gap, converged, ok = _serial(K, gram, Cz, zz, half, args)
    ok &= counts >= 0
    return {"S": S, "x": x, "counts": counts, "rounds": rounds, "objective": objective,
            "gap": gap, "converged": converged, "ok": ok}


def _serial(K, gram, Cz, zz, half, args):
    """A few samples, one compiled call each (waking numba's team costs more)."""
    n, k = Cz.shape
    width = min(k, args[4])
    S = np.zeros((n, width), dtype=np.int64)
    x = np.zeros((n, width))
    counts = np.zeros(n, dtype=np.int64)
    rounds = np.zeros(n, dtype=np.int64)
    objective, gap = np.zeros(n), np.zeros(n)
    converged, ok = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    for i in range(n):
        Si, xi, rounds[i], objective[i], gap[i], converged[i], ok[i] = K.one(
            gram, Cz[i], float(zz[i]), float(half[i]), *args)
        keep = xi > 0
        c = int(keep.sum())
        counts[i] = c if c <= width else -1
        if c <= width:
            S[i, :c], x[i, :c] = Si[keep], xi[keep]
    return S, x, counts, rounds, objective, gap, converged, ok
