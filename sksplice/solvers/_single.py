"""The working-set solver for one sample on the CPU, in numpy (the latency path).

The batched torch core (:func:`~sksplice.solvers._kernels.working_set_solve`)
spends about 600 small torch calls per sample on bookkeeping that a batch
amortises; a single sample (``SpliceTransformer.transform`` of one image)
pays all of it.  This module runs the same algorithm -- the same initial
working set, exact subproblems by block principal pivoting, the same KKT
test, duality gap and rounding bands -- with a handful of numpy calls per
round on unpadded arrays.  Both paths return the exact codes (relative
duality gap below ``tol``); the tests check them against each other and
against scikit-learn.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotrs

from ._kernels import _BAND_EXTRA, _TOL_EPS_FACTOR
from ._subproblems import _BPP_DUAL_EPS, _BPP_PRIMAL_EPS, BPP_FULL

__all__ = ["solve_one"]

_EPS64 = float(np.finfo(np.float64).eps)


def solve_one(C64, Ck, gram, z, half, *, tol, max_rounds, working_set, max_add, out_dtype):
    """Exact codes of one sample: ``min_{w >= 0} ||z - C^T w||^2 + 2 half sum(w)``.

    Parameters
    ----------
    C64 : ndarray of shape (n_concepts, n_features)
        Dictionary (float64, unit rows).
    Ck : Tensor of shape (n_concepts, n_features)
        The same in the correlation dtype (float32 with mixed precision), a
        CPU torch tensor: the two matrix-vector products per round go through
        torch, whose threads the solver scopes (numpy's BLAS would start its
        own thread pool, which collapses on shared cores).
    gram : ndarray of shape (n_concepts, n_concepts) or None
        ``C64 @ C64.T`` when within the memory budget.
    z : ndarray of shape (n_features,)
        The input (float64).
    half : float
        ``l1 / 2``.
    tol : float
        Target relative duality gap.
    max_rounds, working_set, max_add : int
        As for :class:`~sksplice.solvers.ActiveSetSolver`.
    out_dtype : numpy dtype
        dtype of the codes.

    Returns
    -------
    cols : ndarray of int
        Concepts with a nonzero weight, increasing.
    vals : ndarray
        Their weights (``out_dtype``).
    info : tuple
        ``(rounds, objective, relative_gap, converged)``.
    """
    import torch

    k, d = C64.shape
    tol = max(float(tol), _TOL_EPS_FACTOR * float(np.finfo(out_dtype).eps))
    kdt = np.dtype(str(Ck.dtype).split(".")[-1])
    band_factor = 1.01 * (d + 4) * float(np.finfo(kdt).eps) / 2

    def correlations(v):
        return torch.mv(Ck, torch.from_numpy(v.astype(kdt, copy=False))).numpy()

    c0 = correlations(z)
    c64 = None if gram is None else C64 @ z  # with the Gram: C r = C z - G[S]^T x
    m0 = min(k, max(1, int(working_set)))
    S = np.argpartition(-c0, m0 - 1)[:m0] if m0 < k else np.arange(k)
    S = S[np.argsort(-c0[S], kind="stable")]
    znorm = float(np.sqrt(z @ z))
    add_cap = 16 * max(1, int(max_add))
    passive = None
    x = np.zeros(0)
    rnd, obj, rel, done = 0, float(z @ z), 0.0, False
    for rnd in range(1, max(1, int(max_rounds)) + 1):
        CS = C64[S]
        if gram is not None:
            GS = gram[S]
            G = GS[:, S]
            q = c64[S]
        else:
            G = CS @ CS.T
            q = CS @ z
        if passive is None:
            passive = q > half
        x = _nnqp_one(G, q - half, passive)
        if x is None:  # singular block: the batched core has the fallback
            return None
        R = z - x @ CS
        rr = float(R @ R)
        rnorm = np.sqrt(rr)
        kkt_eps = 8 * d**0.5 * _EPS64 * rnorm + 64 * _EPS64 * (znorm + float(x.sum()))
        if gram is not None:
            # float64 throughout: the rounding is that of the KKT test itself
            corr = c64 - x @ GS
            band = kkt_eps
        else:
            corr = correlations(R)
            band = band_factor * rnorm
        corr[S] = -np.inf
        corr_S = q - G @ x
        add = min(add_cap, max(1, int(max_add)) * 2 ** (rnd - 1), k)
        cand = np.flatnonzero(corr > half - band)
        if cand.size > add + _BAND_EXTRA:
            cand = cand[np.argpartition(-corr[cand], add + _BAND_EXTRA - 1)[: add + _BAND_EXTRA]]
        vals = corr[cand].astype(np.float64)
        certain = vals > half + band
        near = ~certain
        if near.any():  # within rounding distance: re-check in float64
            vals[near] = C64[cand[near]] @ R
        vals_ub = np.where(certain, vals + band, vals)
        mx = max(float(vals_ub.max()) if vals.size else -np.inf,
                 float(corr_S.max()) if corr_S.size else -np.inf)
        s = half / mx if mx > half else 1.0
        obj = rr + 2.0 * half * float(x.sum())
        g = (1.0 - s) ** 2 * rr + float(x @ (2.0 * half - 2.0 * s * corr_S))
        rel = max(g, 0.0) / max(obj, np.finfo(np.float64).tiny)
        done = rel <= tol or mx <= half + kkt_eps
        if done:
            break
        viol = certain | (vals > half + kkt_eps)
        order = np.argsort(-vals[viol], kind="stable")[:add]
        new = cand[viol][order]
        if new.size == 0:
            return None  # inexact subproblem: the batched core retries by the fallback
        keep = x > 0
        S = np.concatenate([S[keep], new])
        passive = np.ones(S.size, dtype=bool)
    nz = x > 0
    order = np.argsort(S[nz], kind="stable")
    return (S[nz][order], x[nz][order].astype(out_dtype), (rnd, obj, rel, bool(done)))


def _nnqp_one(G, q, passive):
    """``min 1/2 x'Gx - q'x, x >= 0`` by block principal pivoting (one sample).

    The rules of :func:`~sksplice.solvers._subproblems.nnqp_bpp` (full exchanges
    for ``BPP_FULL`` steps, then Murty's least-index rule) without padding.
    Returns ``None`` when a passive block is numerically singular.
    """
    m = q.size
    F = passive.copy()
    eps_y = _BPP_DUAL_EPS * (np.abs(q).max(initial=0.0) + np.sqrt(np.diag(G).max(initial=0.0)))
    x = np.zeros(m)
    for it in range(10 * m + 20):
        x = np.zeros(m)
        if F.any():
            # LAPACK directly: the scipy wrappers cost more than a small solve
            L, info = dpotrf(G[F][:, F], lower=False, clean=False)
            if info != 0:
                return None
            x[F], info = dpotrs(L, q[F])
        y = G @ x - q
        H = np.where(F, x < -_BPP_PRIMAL_EPS * np.abs(x).max(initial=0.0), y < -eps_y)
        if not H.any():
            return np.maximum(x, 0.0)
        if it >= BPP_FULL:
            j = np.flatnonzero(H)[-1]
            H = np.zeros(m, dtype=bool)
            H[j] = True
        F ^= H
    return None
