"""The working-set solver's CPU kernel (numba), at every dictionary and batch size.

The algorithm is that of the device kernel (:mod:`~sksplice.solvers._kernels`):
per sample, exact subproblems on a small working set ``S`` (block principal
pivoting on ``G_SS = C_S C_S^T``), then the KKT conditions checked over every
concept, violators added, until the relative duality gap is below ``tol``.
Here the per-sample steps are compiled and run over the batch in parallel
(numba's ``prange``), without padding, and the rounds are synchronous:

1. ``check`` (compiled, per sample): the KKT test on the correlations
   ``C r`` of the residual, the duality gap, the next working set;
2. ``subsolve`` (compiled, per sample): the working set's Gram block, computed
   on demand from its dictionary rows (``O(|S|^2 d)``, no ``n_concepts^2``
   matrix), the exact subproblem, the new residual;
3. one batched product ``R @ C.T`` (BLAS, float32 with ``mixed_precision``;
   concepts within rounding distance of the threshold are re-checked in
   float64 inside ``check``).

When the full Gram matrix ``C C^T`` is precomputed (small dictionaries), the
same kernel reads its columns instead: the blocks are gathered and the
correlations follow from ``C r = C z - G[S]^T x`` in float64, without step 3.

A sample whose subproblem is numerically singular (duplicated concepts, or
``l1 = 0`` with more working-set concepts than features) is flagged; the
solver finishes it with the device kernel's fallback.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["solve_batch"]

_EPS = float(np.finfo(np.float64).eps)
#: Block exchanges before block principal pivoting switches to Murty's
#: single-exchange rule (as ``_subproblems.BPP_FULL``).
_BPP_FULL = 8
#: Batches below this many samples run the serial drivers: waking numba's
#: thread team costs more than a sample's work.
_PARALLEL_MIN_SAMPLES = 8


@numba.njit(cache=True, nogil=True)
def _nnqp(G, q, max_full):
    """``min 1/2 x'Gx - q'x, x >= 0`` by block principal pivoting from all-passive.

    Returns ``(x, ok)``; ``ok`` is False for a numerically singular block
    or when the pivoting budget ``10 m + 20`` runs out.
    """
    m = q.size
    F = np.ones(m, dtype=np.bool_)
    x = np.zeros(m)
    qmax = 0.0
    dmax = 0.0
    for i in range(m):
        qmax = max(qmax, abs(q[i]))
        dmax = max(dmax, G[i, i])
    eps_y = 1e-11 * (qmax + np.sqrt(dmax))
    L = np.zeros((m, m))
    yv = np.empty(m)
    idx = np.empty(m, dtype=np.int64)
    for it in range(10 * m + 20):
        n = 0
        for i in range(m):
            if F[i]:
                idx[n] = i
                n += 1
        x[:] = 0.0
        # Cholesky of G_FF by LAPACK (a failure or a pivot under 1e-14 of
        # the diagonal means a numerically singular block), then two solves
        if n:
            A = np.empty((n, n))
            for a in range(n):
                for b in range(n):
                    A[a, b] = G[idx[a], idx[b]]
            try:
                Lf = np.linalg.cholesky(A)
            except Exception:  # noqa: BLE001 - numba raises LinAlgError for non-PD blocks
                return x, False
            for j in range(n):
                if not Lf[j, j] * Lf[j, j] > 1e-14 * max(A[j, j], 1e-300):
                    return x, False
                for p in range(j + 1):
                    L[j, p] = Lf[j, p]
        for i in range(n):
            s = q[idx[i]]
            for p in range(i):
                s -= L[i, p] * yv[p]
            yv[i] = s / L[i, i]
        for i in range(n - 1, -1, -1):
            s = yv[i]
            for p in range(i + 1, n):
                s -= L[p, i] * yv[p]
            yv[i] = s / L[i, i]
        for a in range(n):
            x[idx[a]] = yv[a]
        xmax = 0.0
        for i in range(m):
            xmax = max(xmax, abs(x[i]))
        last = -1
        n_inf = 0
        for i in range(m):
            if F[i]:
                h = x[i] < -1e-13 * xmax
            else:
                yi = -q[i]
                for j in range(m):
                    yi += G[i, j] * x[j]
                h = yi < -eps_y
            if h:
                n_inf += 1
                last = i
                if it < max_full:
                    F[i] = not F[i]
        if n_inf == 0:
            for i in range(m):
                x[i] = max(x[i], 0.0)
            return x, True
        if it >= max_full:
            F[last] = not F[last]
    return x, False


@numba.njit(cache=True, nogil=True)
def _subsolve_one(p, act, C64, Z64, G, has_gram, c64, half, S, m, X, R, stats, ok, corr):
    """Exact subproblems of the samples ``act`` and their residuals (per sample)."""
    d = C64.shape[1]
    i = act[p]
    ms = m[i]
    Si = S[i, :ms]
    z = Z64[i]
    CS = np.empty((ms, d))
    for a in range(ms):
        CS[a] = C64[Si[a]]
    q = np.dot(CS, z)
    if has_gram:
        GS = np.empty((ms, ms))
        for a in range(ms):
            for b in range(ms):
                GS[a, b] = G[Si[a], Si[b]]
    else:
        GS = np.dot(CS, CS.T)
    x, good = _nnqp(GS, q - half[i], _BPP_FULL)
    if not good:
        ok[i] = False
        return
    r = z - np.dot(x, CS)
    R[i] = r
    cs = q - np.dot(GS, x)  # exact correlations on the working set
    sx, xcs, in_max = 0.0, 0.0, -np.inf
    for a in range(ms):
        X[i, a] = x[a]
        sx += x[a]
        xcs += x[a] * cs[a]
        in_max = max(in_max, cs[a])
    stats[i, 0] = np.dot(r, r)
    stats[i, 1] = sx
    stats[i, 2] = xcs
    stats[i, 3] = in_max


@numba.njit(cache=True, nogil=True)
def _check_one(p, act, corr, exact, G, c64, cmap, C64, R, half, S, m, X, stats, znorm, ok,
               done_out, info, rnd, tol, add, band_factor, cap, first_size):
    """KKT test, duality gap and the next working set of the samples ``act``.

    ``rnd = 0`` is the check of the zero code (the first working set is the
    ``first_size`` most violating concepts, after any warm-start ones);
    ``rnd >= 1`` follows the ``rnd``-th subproblem.  Sets ``done_out[p]``
    when sample ``act[p]`` is finished (its ``info`` row then holds rounds,
    objective, relative gap, converged).
    """
    k, d = C64.shape
    i = act[p]
    if not ok[i]:
        done_out[p] = True
        return
    h = half[i]
    ms = m[i]
    if exact:  # C r = C z - G[S]^T x, float64
        row = c64[cmap[i]].copy()
        for a in range(ms):
            if X[i, a] != 0.0:
                g = G[S[i, a]]
                for j in range(row.size):
                    row[j] -= X[i, a] * g[j]
    else:  # (a float64 copy: one type for both routes)
        row = corr[p].astype(np.float64)
    rr, sx, xcs, in_max = stats[i, 0], stats[i, 1], stats[i, 2], stats[i, 3]
    rnorm = np.sqrt(max(rr, 0.0))
    # rounding of the float64 KKT test: the dot products (8 sqrt(d) eps ||r||)
    # and the residual (64 eps (||z|| + sum x)), times (1 + sum x) on the
    # Gram route, whose correlations subtract sum x_j G_j from C z
    kkt_eps = 8 * np.sqrt(d) * _EPS * rnorm + 64 * _EPS * (znorm[i] + sx)
    if exact:
        kkt_eps *= 1.0 + sx
        band = kkt_eps
    else:
        band = band_factor * rnorm
    for a in range(ms):
        row[S[i, a]] = -np.inf
    vi = np.empty(k, dtype=np.int64)
    vv = np.empty(k)
    nv = 0
    out_max = -np.inf
    for j in range(k):
        v = row[j]
        if v > h - band:
            if v > h + band:  # a violator whatever the rounding
                out_max = max(out_max, v + band)
                vi[nv] = j
                vv[nv] = v
                nv += 1
            else:  # within rounding distance: the float64 value decides
                e = v if exact else np.dot(C64[j], R[i])
                out_max = max(out_max, e)
                if e > h + kkt_eps:
                    vi[nv] = j
                    vv[nv] = e
                    nv += 1
    mx = max(in_max, out_max)
    s = h / mx if mx > h else 1.0
    obj = rr + 2.0 * h * sx
    g = (1.0 - s) ** 2 * rr + 2.0 * h * sx - 2.0 * s * xcs
    rel = max(g, 0.0) / max(obj, 1e-300)
    done = rel <= tol or mx <= h + kkt_eps
    info[i, 0] = max(rnd, 1)
    info[i, 1] = obj
    info[i, 2] = rel
    info[i, 3] = 1.0 if done else 0.0
    warm = rnd == 0 and ms > 0  # a warm start: solve on its support first
    if not warm and (done or (rnd > 0 and rnd >= info[i, 4])):
        if rnd == 0:
            m[i] = 0  # the zero code is optimal
        done_out[p] = True
        return
    if nv == 0 and not warm:  # not done, no violator: an inexact subproblem
        ok[i] = False
        done_out[p] = True
        return
    # keep the support, append the most violating concepts
    keep = ms
    if rnd > 0:
        keep = 0
        for a in range(ms):
            if X[i, a] > 0.0:
                keep += 1
    n_add = min(nv, (first_size if rnd == 0 else add), cap - keep)
    if n_add <= 0 and not warm:  # the working set is full: finish with its best iterate
        done_out[p] = True
        return
    n_add = max(n_add, 0)
    if rnd > 0:
        c = 0
        for a in range(ms):
            if X[i, a] > 0.0:
                S[i, c] = S[i, a]
                c += 1
    if n_add < nv:
        order = np.argsort(-vv[:nv])[:max(n_add, 1)]
    else:
        order = np.arange(nv)
    for a in range(n_add):
        S[i, keep + a] = vi[order[a]]
    m[i] = keep + n_add
    for a in range(m[i]):
        X[i, a] = 0.0


# the drivers: the samples in parallel (numba's threads) or, for a few, serially
@numba.njit(parallel=True, cache=True, nogil=True)
def _subsolve_par(act, C64, Z64, G, has_gram, c64, half, S, m, X, R, stats, ok, corr):
    for p in numba.prange(act.size):
        _subsolve_one(p, act, C64, Z64, G, has_gram, c64, half, S, m, X, R, stats, ok, corr)


@numba.njit(cache=True, nogil=True)
def _subsolve_ser(act, C64, Z64, G, has_gram, c64, half, S, m, X, R, stats, ok, corr):
    for p in range(act.size):
        _subsolve_one(p, act, C64, Z64, G, has_gram, c64, half, S, m, X, R, stats, ok, corr)


@numba.njit(parallel=True, cache=True, nogil=True)
def _check_par(act, corr, exact, G, c64, cmap, C64, R, half, S, m, X, stats, znorm, ok,
               done_out, info, rnd, tol, add, band_factor, cap, first_size):
    for p in numba.prange(act.size):
        _check_one(p, act, corr, exact, G, c64, cmap, C64, R, half, S, m, X, stats, znorm, ok,
                   done_out, info, rnd, tol, add, band_factor, cap, first_size)


@numba.njit(cache=True, nogil=True)
def _check_ser(act, corr, exact, G, c64, cmap, C64, R, half, S, m, X, stats, znorm, ok,
               done_out, info, rnd, tol, add, band_factor, cap, first_size):
    for p in range(act.size):
        _check_one(p, act, corr, exact, G, c64, cmap, C64, R, half, S, m, X, stats, znorm, ok,
                   done_out, info, rnd, tol, add, band_factor, cap, first_size)


def solve_batch(C64, Ck, gram, Z64, half, *, tol, max_rounds, working_set, max_add,
                support=None, blas_scope=None):
    """Exact codes of a batch by working sets, with the compiled per-sample steps.

    Parameters
    ----------
    C64 : ndarray of shape (n_concepts, n_features)
        Dictionary (float64, C-contiguous, unit rows).
    Ck : ndarray of shape (n_concepts, n_features)
        The same in the dtype of the batched correlations (float32 with
        mixed precision; may be ``C64``).
    gram : ndarray of shape (n_concepts, n_concepts) or None
        ``C64 @ C64.T`` when precomputed: the kernel then reads its columns.
    Z64 : ndarray of shape (n, n_features)
        Inputs (float64, C-contiguous).
    half : ndarray of shape (n,)
        ``l1 / 2`` per sample.
    tol : float
        Target relative duality gap.
    max_rounds, working_set, max_add : int
        As for :class:`~sksplice.solvers.ActiveSetSolver`.
    support : ndarray of shape (n, n_concepts), dtype=bool, default=None
        Concepts to put in each first working set (a warm start).
    blas_scope : callable, default=None
        ``blas_scope(n)`` returns a context manager limiting BLAS to ``n``
        threads; used around the parallel compiled steps (whose per-sample
        products must not start BLAS thread teams of their own).

    Returns
    -------
    out : dict
        ``S`` (n, width) concept indices and ``x`` (n, width) weights,
        ``m`` (n,) the used width of each row, ``rounds``, ``objective``,
        ``gap``, ``converged`` and ``ok`` (False: finish with the fallback).
    """
    n, d = Z64.shape
    k = C64.shape[0]
    max_rounds = max(1, int(max_rounds))
    add_cap = 16 * max(1, int(max_add))
    n_sup = 0 if support is None else int(support.sum(axis=1).max(initial=0))
    cap = min(k, max(int(working_set), n_sup) + d + add_cap)
    S = np.zeros((n, cap), dtype=np.int64)
    m = np.zeros(n, dtype=np.int64)
    if support is not None:
        for i in range(n):
            cols = np.flatnonzero(support[i])
            S[i, : cols.size] = cols
            m[i] = cols.size
    X = np.zeros((n, cap))
    R = Z64.copy()
    stats = np.zeros((n, 4))
    stats[:, 0] = np.einsum("ij,ij->i", Z64, Z64)
    stats[:, 3] = -np.inf
    znorm = np.sqrt(stats[:, 0])
    ok = np.ones(n, dtype=bool)
    info = np.zeros((n, 5))
    info[:, 4] = max_rounds
    half = np.ascontiguousarray(half, dtype=np.float64)
    exact = gram is not None
    band_factor = 1.01 * (d + 4) * float(np.finfo(Ck.dtype).eps) / 2
    c64 = np.zeros((1, 1))
    cmap = np.zeros(n, dtype=np.int64)  # sample -> its row of c64
    gram_arg = gram if exact else np.zeros((1, 1))
    parallel = n >= _PARALLEL_MIN_SAMPLES and numba.get_num_threads() > 1
    subsolve, check = (_subsolve_par, _check_par) if parallel else (_subsolve_ser, _check_ser)
    scope = blas_scope if (parallel and blas_scope is not None) else None
    act = np.arange(n, dtype=np.int64)
    # the first check (the zero code) on the batched correlations in Ck's dtype,
    # re-checked in float64 near the threshold, on both routes: samples whose
    # code is empty (large l1) never need the float64 C z of the Gram route
    corr = Z64.astype(Ck.dtype) @ Ck.T
    tol = float(tol)
    for rnd in range(max_rounds + 1):
        done = np.zeros(act.size, dtype=bool)
        add = min(add_cap, max(1, int(max_add)) * 2 ** max(rnd - 1, 0), k)
        args = (act, corr, exact and rnd > 0, gram_arg, c64, cmap, C64, R, half, S, m, X, stats,
                znorm, ok, done, info, rnd, tol, add, band_factor, cap, max(1, int(working_set)))
        if scope is None:
            check(*args)
        else:
            with scope(1):
                check(*args)
        act = act[~done]
        if act.size == 0:
            break
        if exact and rnd == 0:  # C z in float64 for the Gram route, rows of act only
            corr = args = None  # frees the first correlations before c64
            corr = np.zeros((1, 1), dtype=Ck.dtype)
            c64 = np.empty((act.size, k))
            np.matmul(Z64[act], C64.T, out=c64)
            cmap[act] = np.arange(act.size)
        corr = np.empty((1, 1) if exact else (act.size, k), dtype=Ck.dtype)
        args = (act, C64, Z64, gram_arg, exact, c64, half, S, m, X, R, stats, ok, corr)
        if scope is None:
            subsolve(*args)
        else:
            with scope(1):
                subsolve(*args)
        if not exact:
            np.matmul(R[act].astype(Ck.dtype, copy=False), Ck.T, out=corr)
    return {"S": S, "x": X, "m": m, "rounds": info[:, 0].astype(np.int64),
            "objective": info[:, 1].copy(), "gap": info[:, 2].copy(),
            "converged": info[:, 3] > 0, "ok": ok}
