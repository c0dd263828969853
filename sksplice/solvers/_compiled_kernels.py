"""numba kernels of the compiled working-set path (imported only when numba is installed).

Module-level functions, so that numba caches their machine code on disk
(``cache=True``) and a new process loads it instead of compiling.  See
:mod:`sksplice.solvers._compiled` for the algorithm and its guarantees.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["batch", "one"]

EPS = float(np.finfo(np.float64).eps)



@numba.njit(cache=True, nogil=True)
def nnqp(G, q, F0, max_full):
    # block principal pivoting on one unpadded block (the rules of
    # _subproblems.nnqp_bpp); returns (x, ok), ok False for a singular block
    m = q.size
    F = F0.copy()
    x = np.zeros(m)
    qmax = 0.0
    dmax = 0.0
    for i in range(m):
        qmax = max(qmax, abs(q[i]))
        dmax = max(dmax, G[i, i])
    eps_y = 1e-11 * (qmax + np.sqrt(dmax))
    for it in range(10 * m + 20):
        idx = np.flatnonzero(F)
        x[:] = 0.0
        if idx.size:
            A = np.empty((idx.size, idx.size))
            b = np.empty(idx.size)
            for a in range(idx.size):
                b[a] = q[idx[a]]
                for c in range(idx.size):
                    A[a, c] = G[idx[a], idx[c]]
            # Cholesky by hand: a failure means a singular block
            L = np.zeros_like(A)
            n = idx.size
            for j in range(n):
                s = A[j, j]
                for p in range(j):
                    s -= L[j, p] * L[j, p]
                if not s > 1e-14 * max(A[j, j], 1e-300):
                    return x, False
                L[j, j] = np.sqrt(s)
                for i in range(j + 1, n):
                    s = A[i, j]
                    for p in range(j):
                        s -= L[i, p] * L[j, p]
                    L[i, j] = s / L[j, j]
            y = np.empty(n)
            for i in range(n):
                s = b[i]
                for p in range(i):
                    s -= L[i, p] * y[p]
                y[i] = s / L[i, i]
            for i in range(n - 1, -1, -1):
                s = y[i]
                for p in range(i + 1, n):
                    s -= L[p, i] * y[p]
                y[i] = s / L[i, i]
            for a in range(n):
                x[idx[a]] = y[a]
        xmax = 0.0
        for i in range(m):
            xmax = max(xmax, abs(x[i]))
        H = np.zeros(m, dtype=np.bool_)
        any_h = False
        last = -1
        for i in range(m):
            if F[i]:
                h = x[i] < -1e-13 * xmax
            else:
                yi = -q[i]
                for j in range(m):
                    yi += G[i, j] * x[j]
                h = yi < -eps_y
            if h:
                H[i] = True
                any_h = True
                last = i
        if not any_h:
            for i in range(m):
                x[i] = max(x[i], 0.0)
            return x, True
        if it >= max_full:
            F[last] = not F[last]
        else:
            for i in range(m):
                if H[i]:
                    F[i] = not F[i]
    return x, False

@numba.njit(cache=True, nogil=True)
def one(G, c, zz, half, tol, max_rounds, working_set, max_add, d, max_full):
    k = c.size
    cmax = -np.inf
    n_above = 0
    for j in range(k):
        cmax = max(cmax, c[j])
        if c[j] > half:
            n_above += 1
    if cmax <= half:
        # w = 0 satisfies the KKT conditions exactly: the code is empty
        return np.zeros(0, dtype=np.int64), np.zeros(0), 1, zz, 0.0, True, True
    # very sparse codes (large l1): no larger first working set than the
    # concepts that violate KKT at w = 0, plus a few (later rounds add more)
    m0 = min(k, max(1, min(working_set, 2 * n_above + 2)))
    if m0 < k:
        # the m0 most correlated concepts: a partition (O(k)), then a sort of m0
        thr = np.partition(c, k - m0)[k - m0]
        S = np.empty(m0, dtype=np.int64)
        p = 0
        for j in range(k):
            if c[j] > thr and p < m0:
                S[p] = j
                p += 1
        for j in range(k):
            if c[j] == thr and p < m0:
                S[p] = j
                p += 1
        S = S[np.argsort(-c[S])]
    else:
        S = np.argsort(-c)
    F = np.empty(m0, dtype=np.bool_)
    for i in range(m0):
        F[i] = c[S[i]] > half
    corr = np.empty(k)
    x = np.zeros(m0)
    obj, rel, done, rnd = zz, 0.0, False, 0
    add_cap = 16 * max(1, max_add)
    for rnd in range(1, max(1, max_rounds) + 1):
        m = S.size
        GS = np.empty((m, m))
        q = np.empty(m)
        for a in range(m):
            q[a] = c[S[a]] - half
            for b in range(m):
                GS[a, b] = G[S[a], S[b]]
        x, ok = nnqp(GS, q, F, max_full)
        if not ok:
            return S, x, rnd, obj, rel, False, False
        # correlations with the residual, from the Gram rows
        corr[:] = c
        sx = 0.0
        for a in range(m):
            if x[a] != 0.0:
                sx += x[a]
                row = G[S[a]]
                for j in range(k):
                    corr[j] -= x[a] * row[j]
        # ||r||^2 = ||z||^2 - 2 x'(C_S z) + x' G_SS x
        xq, xGx = 0.0, 0.0
        for a in range(m):
            xq += x[a] * c[S[a]]
            t = 0.0
            for b in range(m):
                t += GS[a, b] * x[b]
            xGx += x[a] * t
        rr = max(zz - 2.0 * xq + xGx, 0.0)
        rnorm = np.sqrt(rr)
        kkt_eps = 8 * np.sqrt(d) * EPS * rnorm + 64 * EPS * (np.sqrt(zz) + sx) * (1 + sx)
        in_max = -np.inf
        gsum = 0.0
        for a in range(m):
            in_max = max(in_max, corr[S[a]])
        for a in range(m):
            corr[S[a]] = -np.inf
        out_max = -np.inf
        n_viol = 0
        for j in range(k):
            out_max = max(out_max, corr[j])
            if corr[j] > half + kkt_eps:
                n_viol += 1
        # the error bound of corr (Gram route) is within kkt_eps: upper bound
        mx = max(in_max, out_max + kkt_eps if n_viol else out_max)
        s = half / mx if mx > half else 1.0
        obj = rr + 2.0 * half * sx
        for a in range(m):
            corr_s = c[S[a]]
            for b in range(m):
                corr_s -= GS[a, b] * x[b]
            gsum += x[a] * (2.0 * half - 2.0 * s * corr_s)
        g = (1.0 - s) ** 2 * rr + gsum
        rel = max(g, 0.0) / max(obj, 1e-300)
        done = rel <= tol or mx <= half + kkt_eps
        if done or n_viol == 0 or rnd == max_rounds:
            break
        add = max(1, max_add)
        for _ in range(rnd - 1):
            add = min(2 * add, add_cap)
        add = min(add, k)
        viol = np.flatnonzero(corr > half + kkt_eps)
        if viol.size > add:
            order = np.argsort(-corr[viol])[:add]
            viol = viol[order]
        keep = 0
        for a in range(m):
            if x[a] > 0:
                keep += 1
        S2 = np.empty(keep + viol.size, dtype=S.dtype)
        p = 0
        for a in range(m):
            if x[a] > 0:
                S2[p] = S[a]
                p += 1
        for v in viol:
            S2[p] = v
            p += 1
        S = S2
        F = np.ones(S.size, dtype=np.bool_)
    return S, x, rnd, obj, rel, done, True

@numba.njit(parallel=True, cache=True)
def batch(G, Cz, zz, half, tol, max_rounds, working_set, max_add, d, max_full):
    n = Cz.shape[0]
    rounds = np.zeros(n, dtype=np.int64)
    objective = np.zeros(n)
    gap = np.zeros(n)
    converged = np.zeros(n, dtype=np.bool_)
    ok = np.zeros(n, dtype=np.bool_)
    counts = np.zeros(n, dtype=np.int64)
    # an exact support has at most d concepts (general position); a
    # larger one is flagged (-1) and left to the batched core
    width = min(Cz.shape[1], d)
    res_S = np.zeros((n, width), dtype=np.int64)
    res_x = np.zeros((n, width))
    for i in numba.prange(n):
        S, x, rnd, obj, rel, done, good = one(G, Cz[i], zz[i], half[i], tol, max_rounds,
                                              working_set, max_add, d, max_full)
        rounds[i] = rnd
        objective[i] = obj
        gap[i] = rel
        converged[i] = done
        ok[i] = good
        c = 0
        for a in range(S.size):
            if x[a] > 0:
                if c < width:
                    res_S[i, c] = S[a]
                    res_x[i, c] = x[a]
                c += 1
        counts[i] = c if c <= width else -1
    return res_S, res_x, counts, rounds, objective, gap, converged, ok
