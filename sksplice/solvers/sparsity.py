"""Target sparsity: per sample, the ``l1`` that gives exactly ``n_nonzero`` concepts.

The solution ``w(l1)`` of the nonnegative lasso is piecewise linear in
``l1``: between two breakpoints its support ``S`` is fixed and, with
``lam = l1 / 2`` and ``A = C^T``::

    w_S(lam) = (A_S^T A_S)^{-1} (A_S^T z - lam 1),

so ``w_S`` grows along ``v = (A_S^T A_S)^{-1} 1`` as ``lam`` decreases.  The
homotopy (LARS with the lasso modification, restricted to nonnegative codes)
follows this path from ``lam_max = max_j (C z)_j``, where the first concept
enters, downwards: a concept ``j`` outside ``S`` enters when its correlation
``c_j - t a_j`` (``a = C A_S v``) reaches ``lam - t``; a concept of ``S``
leaves when its weight ``w_i + t v_i`` reaches zero.  Each step costs one
batched matmul ``U @ C.T`` (the correlations of the path directions), so the
whole batch moves along its paths together.

The first segment of the path on which the support has ``n_nonzero``
concepts gives an interval ``(l1_lo, l1_hi)``; the midpoint is returned and
the codes are then computed exactly at that ``l1`` by a solver of the
registry (exact solvers reproduce the support, hence ``n_nonzero`` nonzeros).
"""

from __future__ import annotations

import time

import numpy as np

from .._utils import resolve_device, to_numpy, to_tensor
from ._base import BaseSolver, SolverResult, batch_slices
from ._kernels import combine, gram_columns
from ._registry import get_solver

__all__ = ["nonzero_path_l1", "solve_n_nonzero"]


def solve_n_nonzero(C, Z, n_nonzero, *, solver="active_set", tol=1e-6, max_iter=None,
                    device="auto", batch_size=1024, max_steps=None, **options):
    """Codes with ``n_nonzero`` concepts per sample, choosing ``l1`` per sample.

    Parameters
    ----------
    C : ndarray of shape (n_concepts, n_features)
        Dictionary with unit-norm rows.
    Z : ndarray of shape (n_samples, n_features)
        Centred, normalised inputs.
    n_nonzero : int
        Number of concepts wanted per sample (>= 1).
    solver : str or BaseSolver, default="active_set"
        Solver that computes the final codes at each sample's ``l1``: a name
        of :data:`~sksplice.solvers.SOLVERS`, ``"auto"``, or a solver
        instance (then ``tol``, ``max_iter``, ``batch_size`` and ``options``
        are its own and ``device`` is ignored).  Exact solvers
        (``"active_set"``, ``"sklearn"``) return exactly ``n_nonzero``
        nonzeros wherever the path has such a segment; ``"admm"`` only up to
        its tolerance.
    tol, max_iter, device, batch_size, **options
        Passed to the solver (see :func:`~sksplice.solvers.get_solver`).
    max_steps : int, default=None
        Largest number of homotopy steps per sample (``None``:
        ``4 * n_nonzero + 20``).

    Returns
    -------
    result : SolverResult
        The codes and diagnostics of the final solve, with
        ``extra["l1"]`` (ndarray of shape (n_samples,)) the penalty chosen
        for each sample and ``extra["path_steps"]`` the homotopy steps taken.
        ``objective`` and ``gap`` refer to each sample's own ``l1``.

    Notes
    -----
    The returned ``l1`` is the midpoint of the first (largest-``l1``)
    interval of the solution path on which exactly ``n_nonzero`` concepts
    are nonzero; any ``l1`` strictly inside that interval gives the same
    support.  The support size changes by one at each breakpoint, so such an
    interval exists unless

    * the path never reaches ``n_nonzero`` concepts (at most the
      nonnegative least-squares support, ``<= n_features``, as ``l1 -> 0``):
      the interval with the largest support is used;
    * several concepts enter or leave at the same ``l1`` (a tie, which has
      probability zero for real embeddings but occurs for duplicated
      concepts): the size can skip ``n_nonzero``, and the interval whose size
      is closest to ``n_nonzero`` is used (the largest ``l1`` among equals);
    * no concept correlates positively with the sample: the codes are zero
      for every ``l1`` and ``l1 = 0`` is reported.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice.solvers import solve_n_nonzero
    >>> rng = np.random.default_rng(0)
    >>> C = rng.normal(size=(200, 16)); C /= np.linalg.norm(C, axis=1, keepdims=True)
    >>> Z = rng.normal(size=(4, 16)); Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    >>> res = solve_n_nonzero(C, Z, 5, device="cpu")
    >>> (res.codes > 0).sum(axis=1)
    array([5, 5, 5, 5])
    >>> res.extra["l1"].shape
    (4,)
    """
    import numbers

    import torch

    if not isinstance(n_nonzero, numbers.Integral) or isinstance(n_nonzero, bool) or n_nonzero < 1:
        raise ValueError(f"n_nonzero must be a positive integer; got {n_nonzero!r}.")
    C = np.asarray(C)
    Z = np.asarray(Z)
    if Z.dtype not in (np.float32, np.float64):
        Z = Z.astype(np.float64)
    if Z.ndim != 2 or C.ndim != 2 or Z.shape[1] != C.shape[1]:
        raise ValueError(
            f"Z of shape {Z.shape} does not match the dictionary of shape {C.shape}: "
            "both need n_features columns."
        )
    if n_nonzero > C.shape[0]:
        raise ValueError(
            f"n_nonzero={n_nonzero} exceeds the number of concepts ({C.shape[0]}); "
            "ask for at most n_concepts."
        )
    t0 = time.perf_counter()
    if isinstance(solver, BaseSolver):
        est = solver
        dev = resolve_device(getattr(est, "device", "cpu"))
        batch_size = est.batch_size
    else:
        dev = resolve_device(device)
        est = get_solver(solver, tol=tol, max_iter=max_iter, device=str(dev),
                         batch_size=batch_size, **options)
    n = Z.shape[0]
    parts = []
    for sl in batch_slices(n, batch_size) or [slice(0, 0)]:
        Zb = Z[sl]
        with torch.inference_mode():
            C64 = to_tensor(C, dev, torch.float64)
            Z64 = to_tensor(Zb, dev, torch.float64)
            l1, support, steps = nonzero_path_l1(C64, Z64, int(n_nonzero), max_steps=max_steps)
        parts.append(_final_solve(est, C, Zb, l1, support, steps))
    res = SolverResult.concatenate(parts)
    res.time = time.perf_counter() - t0
    _warn_counts(res, int(n_nonzero), est)
    return res


def _warn_counts(res, n_nonzero, est):
    """A warning naming the rows whose codes do not have ``n_nonzero`` concepts."""
    import warnings

    import scipy.sparse as sp

    codes = res.codes
    counts = (np.diff(codes.indptr) if sp.issparse(codes)
              else np.count_nonzero(np.asarray(codes) > 0, axis=1))
    rows = np.flatnonzero(counts != n_nonzero)
    if rows.size == 0:
        return
    listed = ", ".join(f"row {i}: {counts[i]}" for i in rows[:10])
    warnings.warn(
        f"n_nonzero={n_nonzero}: {rows.size} of {counts.size} rows have another number of "
        f"concepts ({listed}{' ...' if rows.size > 10 else ''}). Their solution path has no "
        "segment with exactly that many (at most n_features concepts, ties between "
        f"duplicated concepts), or solver {est.name!r} stopped within its tolerance of a "
        "breakpoint; solver='active_set' gives the path's count exactly.",
        UserWarning, stacklevel=3,
    )


def _final_solve(est, C, Z, l1, support, steps):
    """Exact codes at per-sample penalties ``l1`` (zero codes where ``l1 == 0``).

    Goes through the solver contract: :meth:`BaseSolver.solve_penalties`
    (the working-set solver takes the penalties directly, warm-started with
    the path's support; other solvers rescale the inputs).
    """
    n, k = Z.shape[0], C.shape[0]
    l1 = to_numpy(l1).astype(np.float64)
    pos = np.flatnonzero(l1 > 0)
    codes = np.zeros((n, k), dtype=Z.dtype)
    n_iter = np.zeros(n, dtype=np.int64)
    objective = np.einsum("ij,ij->i", Z, Z).astype(np.float64)
    gap = np.zeros(n)
    converged = np.ones(n, dtype=bool)
    if pos.size:
        sub = est.solve_penalties(C, Z[pos], l1[pos], support=to_numpy(support)[pos])
        codes[pos] = sub.codes
        n_iter[pos] = sub.n_iter
        objective[pos] = sub.objective
        gap[pos] = sub.gap
        converged[pos] = sub.converged
    return SolverResult(
        codes=codes, n_iter=n_iter, objective=objective, gap=gap, converged=converged,
        solver=est.name, extra={"l1": l1, "path_steps": to_numpy(steps).astype(np.int64)},
    )


def nonzero_path_l1(C64, Z64, n_nonzero, *, max_steps=None):
    """Follow each sample's nonnegative-lasso path to its ``n_nonzero``-concept segment.

    Parameters
    ----------
    C64 : Tensor of shape (n_concepts, n_features)
        Dictionary (float64, unit rows).
    Z64 : Tensor of shape (n_samples, n_features)
        Inputs (float64).
    n_nonzero : int
        Target support size.
    max_steps : int, default=None
        Step budget per sample (``None``: ``4 * n_nonzero + 20``).

    Returns
    -------
    l1 : Tensor of shape (n_samples,)
        Midpoint of the chosen segment (``0`` when no concept correlates
        positively with the sample).
    support : Tensor of shape (n_samples, n_concepts), dtype=bool
        The support on that segment (a warm start for the exact solve).
    steps : Tensor of shape (n_samples,)
        Path steps (breakpoints) taken.
    """
    import torch

    f64 = torch.float64
    device = C64.device
    n = Z64.shape[0]
    k = C64.shape[0]
    if max_steps is None:
        max_steps = 4 * int(n_nonzero) + 20
    best_l1 = torch.zeros(n, dtype=f64, device=device)
    best_diff = torch.full((n,), np.iinfo(np.int64).max, dtype=torch.long, device=device)
    best_support = torch.zeros((n, k), dtype=torch.bool, device=device)
    steps_out = torch.zeros(n, dtype=torch.long, device=device)
    if n == 0:
        return best_l1, best_support, steps_out

    # a segment's support has a positive definite Gram block, hence at most
    # n_features concepts: no segment comes closer to n_nonzero than this
    floor = max(int(n_nonzero) - Z64.shape[1], 0)
    c = Z64 @ C64.T
    lam, j0 = c.max(dim=1)
    lam0 = lam.clone()
    alive = lam > 0
    act = torch.nonzero(alive).squeeze(1)
    c, lam, lam0, Za = c[act], lam[act], lam0[act], Z64[act]
    S = j0[act].unsqueeze(1)
    V = torch.ones_like(S, dtype=torch.bool)
    w = torch.zeros(S.shape, dtype=f64, device=device)
    G = torch.ones((act.numel(), 1, 1), dtype=f64, device=device)
    dropped = torch.full((act.numel(),), -1, dtype=torch.long, device=device)
    for step in range(1, int(max_steps) + 1):
        if act.numel() == 0:
            break
        na, m = S.shape
        # direction of the weights as lam decreases: G_SS v = 1
        Vf = V.to(f64)
        M = G * (Vf.unsqueeze(2) * Vf.unsqueeze(1))
        M.diagonal(dim1=1, dim2=2).add_(1.0 - Vf)
        L, info = torch.linalg.cholesky_ex(M)
        v = torch.cholesky_solve(Vf.unsqueeze(2), L).squeeze(2) * Vf
        a = combine(S, v, C64) @ C64.T
        # entering: c_j - t a_j = lam - t
        denom = 1.0 - a
        t_in = torch.where(denom > 1e-12, (lam[:, None] - c) / denom.clamp_min(1e-12),
                           float("inf")).clamp_min(0.0)
        t_in.scatter_reduce_(1, S, torch.where(V, float("inf"), float("-inf")).to(f64),
                             reduce="amax")
        # a concept that just left does not re-enter at the same breakpoint
        t_in.scatter_(1, dropped.clamp_min(0).unsqueeze(1),
                      torch.where(dropped >= 0, float("inf"),
                                  t_in.gather(1, dropped.clamp_min(0).unsqueeze(1)).squeeze(1)
                                  ).unsqueeze(1))
        t_enter, j_enter = t_in.min(dim=1)
        # leaving: w_i + t v_i = 0
        t_out = torch.where(V & (v < 0), -w / torch.where(v < 0, v, -1.0), float("inf"))
        t_leave, i_leave = t_out.min(dim=1)
        t = torch.minimum(torch.minimum(t_enter, t_leave), lam)
        # the segment [lam - t, lam] has support S
        size = V.sum(dim=1)
        diff = (size - int(n_nonzero)).abs()
        record = (t > 1e-12 * lam0) & (diff < best_diff[act]) & (info == 0)
        if bool(record.any()):
            ri = torch.nonzero(record).squeeze(1)
            gi = act[ri]
            best_diff[gi] = diff[ri]
            best_l1[gi] = 2.0 * (lam[ri] - t[ri] / 2.0)
            best_support[gi] = False
            r_i, c_i = torch.nonzero(V[ri], as_tuple=True)  # real entries only (no pads)
            best_support[gi[r_i], S[ri][r_i, c_i]] = True
        steps_out[act] = step
        # move to the breakpoint
        w = (w + t[:, None] * v) * V
        c = c - t[:, None] * a
        lam = lam - t
        leaving = t_leave <= t_enter
        finished = ((best_diff[act] == floor) | (lam <= 1e-12 * lam0) | (info != 0)
                    | ~torch.isfinite(t))
        # update the supports: drop the leaving concept, append the entering one
        drop = leaving & ~finished
        dropped = torch.where(drop, S.gather(1, i_leave.unsqueeze(1)).squeeze(1), -1)
        if bool(drop.any()):
            di = torch.nonzero(drop).squeeze(1)
            V[di, i_leave[di]] = False
            w[di, i_leave[di]] = 0.0
        enter = ~leaving & ~finished
        N = torch.where(enter, j_enter, S[:, 0]).unsqueeze(1)
        S2 = torch.cat([torch.where(V, S, S[:, :1]), N], dim=1)
        cols, _ = gram_columns(C64, Za, S2, 1)
        G2 = torch.empty((na, m + 1, m + 1), dtype=f64, device=device)
        G2[:, :m, :m] = G
        G2[:, :, m:] = cols
        G2[:, m:, :m] = cols[:, :m].transpose(1, 2)
        S, G = S2, G2
        V = torch.cat([V, enter.unsqueeze(1)], dim=1)
        w = torch.cat([w, torch.zeros_like(t).unsqueeze(1)], dim=1)
        keep = ~finished
        if not bool(keep.any()):
            break
        ki = torch.nonzero(keep).squeeze(1)
        act, c, lam, lam0, Za, dropped = act[ki], c[ki], lam[ki], lam0[ki], Za[ki], dropped[ki]
        S, V, w, G = S[ki], V[ki], w[ki], G[ki]
        # drop columns that are pads for every remaining sample
        live_cols = torch.nonzero(V.any(dim=0)).squeeze(1)
        if live_cols.numel() < S.shape[1]:
            S, V, w = S[:, live_cols], V[:, live_cols], w[:, live_cols]
            G = G[:, live_cols][:, :, live_cols]
    return best_l1, best_support, steps_out
