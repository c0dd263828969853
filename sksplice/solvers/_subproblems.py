"""Exact subproblems of the working-set solvers: batched NNQP by block principal pivoting.

``min_x 1/2 x^T G x - q^T x, x >= 0`` for a batch of small padded blocks
(:func:`nnqp_bpp`), and the coordinate-descent fallback for blocks that are
numerically singular (:func:`fallback_subproblem`).
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["BPP_FULL", "fallback_subproblem", "nnqp_bpp"]

#: Block exchanges before block principal pivoting switches to single exchanges.
#: Kim & Park (2011) report that full exchanges almost always finish within a
#: handful of steps; they can cycle, so after 8 of them Murty's single-exchange
#: rule (finite for positive definite ``G``) takes over.
BPP_FULL = 8
#: Relative threshold under which a BPP dual ``(G x - q)_i`` counts as zero:
#: the Cholesky solves of blocks with condition numbers up to ~1e5 (unit-norm
#: CLIP concepts with cosines up to ~0.99) leave errors near 1e5 * eps ~ 1e-11.
_BPP_DUAL_EPS = 1e-11
#: Relative threshold under which a passive ``x_i < 0`` counts as zero (the
#: rounding of the solve itself, ~1000 eps).
_BPP_PRIMAL_EPS = 1e-13
#: Half penalties below this (relative to ``||z||``) make the fallback solve the
#: nonnegative least-squares subproblem (scipy's exact active-set NNLS): its
#: objective is within ``2 l1/2 sum(w)`` of the penalised one, below the
#: rounding of the float64 KKT test, where coordinate descent at such an
#: ``alpha`` needs its whole iteration budget (minutes at ``l1 = 1e-12``).
_NNLS_BELOW = 1e-10
#: Compact the live samples of a BPP loop once 40% have finished: copying the
#: live rows costs about one pivoting step, so a smaller saving is not worth it.
_BPP_COMPACT = 0.6


def nnqp_bpp(G, q, valid, passive, max_iter=None):
    """Batched ``min_x 1/2 x^T G x - q^T x, x >= 0`` by block principal pivoting.

    Parameters
    ----------
    G : Tensor of shape (n, m, m)
        Symmetric positive semi-definite blocks (identity on pads).
    q : Tensor of shape (n, m)
        Linear terms (zero on pads).
    valid : Tensor of shape (n, m), dtype=bool
        Real (non-pad) entries.
    passive : Tensor of shape (n, m), dtype=bool
        Initial passive (nonzero) set, a warm start.
    max_iter : int, default=None
        Pivoting steps before giving up (``None``: ``10 * m + 20``, well
        above the few steps BPP takes and enough for Murty's rule, which
        changes one variable per step, to visit each variable several times).

    Returns
    -------
    x : Tensor of shape (n, m)
        The solutions (zero on pads).
    failed : Tensor of shape (n,), dtype=bool
        Samples whose passive block was numerically singular or that ran out
        of steps (to be solved by the fallback).

    Notes
    -----
    Each step solves the KKT system for the current passive set ``F``
    (``G_FF x_F = q_F``, by a Cholesky factorisation of the masked block)
    and exchanges the infeasible variables (``x_i < 0`` in ``F``, dual
    ``(G x - q)_i < 0`` outside).  The first ``BPP_FULL`` steps exchange all
    of them at once (block principal pivoting, Kim & Park 2011), later steps
    only the infeasible variable of largest index (Murty's least-index
    principal pivoting rule), which terminates finitely for positive
    definite ``G``.
    """
    import torch

    n, m = q.shape
    dt = G.dtype
    device = G.device
    x_out = torch.zeros((n, m), dtype=dt, device=device)
    failed = torch.zeros(n, dtype=torch.bool, device=device)
    if n == 0 or m == 0:
        return x_out, failed
    if max_iter is None:
        max_iter = 10 * m + 20
    # scale of the dual variables, for a relative feasibility threshold
    eps_y = _BPP_DUAL_EPS * (q.abs().amax(dim=1, keepdim=True)
                             + G.diagonal(dim1=1, dim2=2).amax(dim=1, keepdim=True).sqrt())
    pos = torch.arange(1, m + 1, device=device)
    idx = torch.arange(n, device=device)
    Ga, qa, Va, Fa, ey = G, q, valid, passive & valid, eps_y
    live = torch.ones(n, dtype=torch.bool, device=device)
    for it in range(max_iter):
        Ff = Fa.to(dt)
        M = Ga * (Ff.unsqueeze(2) * Ff.unsqueeze(1))
        M.diagonal(dim1=1, dim2=2).add_(1.0 - Ff)
        L, info = torch.linalg.cholesky_ex(M)
        xa = torch.cholesky_solve((qa * Ff).unsqueeze(2), L).squeeze(2)
        y = torch.baddbmm(qa.unsqueeze(2), Ga, xa.unsqueeze(2), alpha=1, beta=-1).squeeze(2)
        # infeasible: passive and negative, or active with a negative dual
        H = torch.where(Fa, xa < -_BPP_PRIMAL_EPS * xa.abs().amax(dim=1, keepdim=True),
                        Va & (y < -ey))
        fin = live & (~H.any(dim=1) | (info != 0))
        n_fin = int(fin.sum().item())
        if n_fin:
            fi = torch.nonzero(fin).squeeze(1)
            x_out[idx[fi]] = xa[fi].clamp_min(0.0)
            failed[idx[fi]] = info[fi] != 0
            live = live & ~fin
            n_live = int(live.sum().item())
            if n_live == 0:
                return x_out, failed
            if n_live <= _BPP_COMPACT * len(idx):
                li = torch.nonzero(live).squeeze(1)
                idx, Ga, qa, Va, Fa, ey, H = idx[li], Ga[li], qa[li], Va[li], Fa[li], ey[li], H[li]
                live = live[li]
        if it >= BPP_FULL:
            # least-index rule: exchange only the infeasible variable of largest index
            H = torch.nn.functional.one_hot(torch.argmax(H * pos, dim=1), m).to(torch.bool) & H
        Fa = Fa ^ (H & live.unsqueeze(1))
    failed[idx[live]] = True
    return x_out, failed


def fallback_subproblem(C64, Z64, S, valid, half):
    """Solve working-set subproblems by coordinate descent (rare fallback).

    Used when a passive block is numerically singular (duplicated concepts,
    or ``l1 = 0`` with more working-set concepts than features).  Runs
    scikit-learn's ``Lasso(positive=True)`` (``LinearRegression(positive=True)``
    for ``l1 = 0`` or a half penalty below ``1e-10 ||z||``, under the rounding
    of the KKT test) on each sample's working-set columns, to a tight tolerance.

    Parameters
    ----------
    C64 : Tensor of shape (n_concepts, n_features)
        Dictionary (float64).
    Z64 : Tensor of shape (n, n_features)
        Inputs (float64).
    S : Tensor of shape (n, m)
        Working sets (pads point at column 0).
    valid : Tensor of shape (n, m), dtype=bool
        Real entries of ``S``.
    half : Tensor of shape (n,)
        Half penalties.

    Returns
    -------
    x : Tensor of shape (n, m)
        The subproblem solutions (zero on pads).
    """
    import torch
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso, LinearRegression

    out = torch.zeros(S.shape, dtype=torch.float64, device=S.device)
    C = C64.cpu().numpy()
    Z, S, V, h = (t.cpu().numpy() for t in (Z64, S, valid, half))
    d = C.shape[1]
    for i in range(len(S)):
        cols = np.flatnonzero(V[i])
        if cols.size == 0:
            continue
        A = np.asfortranarray(C[S[i, cols]].T)
        if h[i] > _NNLS_BELOW * np.linalg.norm(Z[i]):
            # tol=1e-14: the subproblem must be exact for the outer KKT test
            est = Lasso(alpha=h[i] / d, positive=True, fit_intercept=False,
                        tol=1e-14, max_iter=100000)
        else:
            est = LinearRegression(positive=True, fit_intercept=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(A, Z[i])
        w = np.zeros(S.shape[1])
        w[cols] = np.maximum(est.coef_, 0.0)
        out[i] = torch.from_numpy(w).to(out.device)
    return out
