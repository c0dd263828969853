"""Exact working-set (active-set) solver, batched in torch (CPU or CUDA).

For each sample the problem ``min_{w >= 0} ||z - C^T w||^2 + l1 sum(w)`` is
solved on a small *working set* ``S`` of concepts, and the full optimality
(KKT) conditions are then checked for the whole batch at once::

    (C r)_j <= l1 / 2  for every concept j,     r = z - C^T w,

with equality on the support.  Concepts that violate them are added to the
working set and the subproblem is solved again, until the relative duality
gap is below ``tol``.  The solution of the subproblem is exact, so the final
codes are those of the full problem as soon as the working set contains the
support (typically after one to three rounds).

The work per round is one batched matmul ``R @ C.T`` (``n_samples x
n_concepts x d``), the same product any method must compute once; the
subproblems are tiny (``|S|`` of a few dozen) and are solved together for
the whole batch:

* the subproblem on ``S`` is the nonnegative quadratic program
  ``min_x 1/2 x^T G x - q^T x, x >= 0`` with ``G = C_S C_S^T`` (``|S| x |S|``)
  and ``q = C_S z - l1/2``, solved exactly by block principal pivoting
  (Kim & Park, 2011; Murty's single-exchange rule after a few block
  exchanges, which guarantees termination), batched over samples with
  padding and a Cholesky factorisation of each sample's passive block per
  pivoting step, warm-started from the previous round's support;
* the Gram blocks ``G`` are built incrementally as the working sets grow, so
  no ``n_concepts x n_concepts`` matrix is ever formed.

Every operation is per sample (padding never mixes samples), so the codes do
not depend on which other samples share the batch.

References
----------
J. Kim and H. Park, "Fast nonnegative matrix factorization: an active-set-like
method and comparisons", SIAM J. Sci. Comput. 33(6), 2011 (block principal
pivoting).  C. L. Lawson and R. J. Hanson, "Solving Least Squares Problems",
1974 (the active-set method for NNLS).
"""

from __future__ import annotations

import warnings

import numpy as np

from .._utils import to_tensor
from ._base import BaseSolver, torch_result

__all__ = ["ActiveSetSolver"]

#: Block exchanges before block principal pivoting switches to single exchanges.
_BPP_FULL = 8
_EPS64 = float(np.finfo(np.float64).eps)


class ActiveSetSolver(BaseSolver):
    """Exact working-set solver: small exact subproblems, one batched KKT check per round.

    Parameters
    ----------
    tol : float, default=1e-6
        Target relative duality gap (float32 inputs use at least
        ``50 * eps(float32)``, the rounding their float32 codes carry).
    max_iter : int, default=100
        Maximum number of working-set rounds (KKT checks) per sample.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    batch_size : int, default=1024
        Samples solved together; the memory is a few
        ``batch_size x n_concepts`` matrices.
    working_set : int, default=16
        Size of the initial working set: the concepts most correlated with
        each sample.
    max_add : int, default=16
        Largest number of KKT violators added to a sample's working set per
        round (the most violating first).
    mixed_precision : bool, default=True
        Compute the batched correlations ``R @ C.T`` in float32 (twice as
        fast) and re-check in float64 every concept within float32 rounding
        distance of the KKT threshold, so every decision is the float64 one.
        With ``False`` they are computed in the input's dtype.

    Attributes
    ----------
    name : str
        ``"active_set"``.

    Notes
    -----
    The subproblems (Gram blocks, Cholesky factors, residuals, the codes
    themselves) are always computed in float64, whatever the input dtype;
    the codes are returned in the input's dtype.  A sample
    whose subproblem is numerically singular (e.g. duplicated concepts, or
    ``l1 = 0`` with more than ``n_features`` concepts in the working set)
    falls back to scikit-learn's coordinate descent on its working set.

    ``n_iter`` in the result counts rounds: the number of subproblems solved
    and batched KKT checks made for the sample.  A warm start ``init``
    (e.g. the codes for a nearby ``l1``) puts its support in the first
    working set: with the right support, one round suffices.

    The correlations of a round are computed for every concept, the batch
    at once, so the memory is about ``batch_size x n_concepts`` numbers
    (float32 ones with ``mixed_precision``) plus the dense codes; no
    ``n_concepts x n_concepts`` matrix is formed.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice.solvers import ActiveSetSolver
    >>> rng = np.random.default_rng(0)
    >>> C = rng.normal(size=(50, 8)); C /= np.linalg.norm(C, axis=1, keepdims=True)
    >>> Z = rng.normal(size=(3, 8)); Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    >>> res = ActiveSetSolver(device="cpu").solve(C, Z, 0.25)
    >>> res.codes.shape, bool(res.converged.all()), bool((res.gap <= 1e-6).all())
    ((3, 50), True, True)
    """

    name = "active_set"
    supports_gpu = True

    def __init__(self, *, tol=1e-6, max_iter=100, device="auto", batch_size=1024,
                 working_set=16, max_add=16, mixed_precision=True):
        super().__init__(tol=tol, max_iter=max_iter, device=device, batch_size=batch_size)
        self.working_set = working_set
        self.max_add = max_add
        self.mixed_precision = mixed_precision

    def _dictionaries(self, C, dtype):
        """The dictionary in float64 and in the correlation dtype (both cached)."""
        import torch

        C64, device, cache = self._prepared(C, np.float64)
        kdt = torch.float32 if self.mixed_precision else getattr(torch, str(np.dtype(dtype)))
        if kdt == torch.float64:
            return C64, C64, device
        Ck = cache.get(("Ck", kdt))
        if Ck is None:
            Ck = cache[("Ck", kdt)] = C64.to(kdt)
        return Ck, C64, device

    def _solve(self, C, Z, l1, init):
        import torch

        Ck, C64, device = self._dictionaries(C, Z.dtype)
        with torch.inference_mode():
            Z64 = to_tensor(Z, device, torch.float64)
            half = torch.full((Z.shape[0],), l1 / 2.0, dtype=torch.float64, device=device)
            support = None if init is None else to_tensor(init, device) > 0
            out = working_set_solve(
                Ck, C64, Z64, half, out_dtype=getattr(torch, str(Z.dtype)), tol=self.tol,
                max_rounds=int(self.max_iter), working_set=int(self.working_set),
                max_add=int(self.max_add), support=support,
            )
        return torch_result(
            self.name, out["codes"], out["rounds"], out["objective"], out["gap"],
            out["converged"],
        )


# ---------------------------------------------------------------------------------
# the batched core, shared with ADMM polishing and the target-sparsity mode
# ---------------------------------------------------------------------------------
def working_set_solve(Ck, C64, Z64, half, *, out_dtype=None, tol=1e-6, max_rounds=100,
                      working_set=16, max_add=16, support=None, corr0=None):
    """Exact nonnegative lasso for a batch by working sets (torch tensors in and out).

    Parameters
    ----------
    Ck : Tensor of shape (n_concepts, n_features)
        Dictionary in the dtype of the correlation matmuls (float32 for
        speed; decisions near the KKT threshold are re-checked in float64).
    C64 : Tensor of shape (n_concepts, n_features)
        The same dictionary in float64 (may be ``Ck`` itself).
    Z64 : Tensor of shape (n_samples, n_features)
        Inputs in float64, on the dictionary's device.
    half : Tensor of shape (n_samples,)
        Half the penalty, ``l1 / 2``, per sample (float64).
    out_dtype : torch.dtype, default=None
        dtype of the returned codes (``Ck``'s when None).
    tol : float, default=1e-6
        Target relative duality gap.
    max_rounds : int, default=100
        Largest number of KKT checks per sample.
    working_set : int, default=16
        Initial working set size (most correlated concepts).
    max_add : int, default=16
        Largest number of violators added per round.
    support : Tensor of shape (n_samples, n_concepts), dtype=bool, default=None
        Concepts to put in the initial working sets as well (a warm start,
        e.g. the support of an approximate solution).
    corr0 : Tensor of shape (n_samples, n_concepts), default=None
        ``Z @ C.T`` (any float dtype) when the caller has it already.

    Returns
    -------
    out : dict
        ``codes`` (n_samples, n_concepts), ``rounds``, ``objective``,
        ``gap`` (relative), ``converged`` (tensors).
    """
    import torch

    f64 = torch.float64
    device = C64.device
    kdt = Ck.dtype
    out_dtype = kdt if out_dtype is None else out_dtype
    n, d = Z64.shape
    k = C64.shape[0]
    tol = max(float(tol), 50 * float(torch.finfo(out_dtype).eps))
    max_rounds = max(1, int(max_rounds))
    tiny = torch.finfo(f64).tiny
    # rounding bound of a correlation computed in kdt (unit-norm concepts):
    # |fl(c . r) - c . r| <= (d + 4) u ||r||  (u: unit roundoff of kdt)
    band_factor = 1.01 * (d + 4) * float(torch.finfo(kdt).eps) / 2
    half = half.to(device=device, dtype=f64)

    if device.type == "cpu":
        # calloc'd pages are mapped lazily: cheaper than zero-filling (n, k)
        codes = torch.from_numpy(np.zeros((n, k), dtype=str(out_dtype).split(".")[-1]))
    else:
        codes = torch.zeros((n, k), dtype=out_dtype, device=device)
    rounds = torch.zeros(n, dtype=torch.long, device=device)
    objective = torch.zeros(n, dtype=f64, device=device)
    gap = torch.zeros(n, dtype=f64, device=device)
    converged = torch.zeros(n, dtype=torch.bool, device=device)
    if n == 0:
        return dict(codes=codes, rounds=rounds, objective=objective, gap=gap,
                    converged=converged)

    corr_buf = torch.empty((n, k), dtype=kdt, device=device)
    if corr0 is None:
        corr0 = torch.mm(Z64.to(kdt), Ck.T, out=corr_buf)
    m0 = min(k, max(1, int(working_set)))
    if support is not None:
        m_sup = int(support.sum(dim=1).max().item())
        m0 = min(k, max(m0, m_sup))
        # supported concepts first, then the most correlated ones
        key = corr0.to(f64) + torch.where(support, 4.0 + 2 * corr0.abs().amax().to(f64), 0.0)
        S = torch.topk(key, m0, dim=1).indices
    else:
        S = torch.topk(corr0, m0, dim=1).indices
    del corr0
    valid = torch.ones_like(S, dtype=torch.bool)
    G, q = _gram_blocks(C64, Z64, S, valid)
    passive = q > half[:, None]  # the first exchange of BPP from an empty set
    act = torch.arange(n, device=device)
    Za = Z64
    needs_fallback = torch.zeros(n, dtype=torch.bool, device=device)

    for rnd in range(1, max_rounds + 1):
        na, m = S.shape
        h = half[act]
        # 1. exact subproblems: min 1/2 x'Gx - (q - h)'x, x >= 0
        x, failed = _nnqp_bpp(G, q - h[:, None] * valid, valid, passive)
        redo = failed | needs_fallback
        if bool(redo.any()):
            ri = torch.nonzero(redo).squeeze(1)
            x[ri] = _fallback_subproblem(C64, Za[ri], S[ri], valid[ri], h[ri])
        # 2. residuals and one batched KKT check
        R = Za - _combine(S, x, C64)
        corr = torch.mm(R.to(kdt), Ck.T, out=corr_buf[:na])
        # exclude the working set (pads leave their column alone)
        corr.scatter_reduce_(
            1, S, torch.where(valid, float("-inf"), float("inf")).to(kdt), reduce="amin")
        # exact (float64) correlations on the working set: C_S r = q - G x
        corr_S = q - (G @ x.unsqueeze(2)).squeeze(2)
        rr = (R * R).sum(dim=1)
        rnorm = rr.sqrt()
        band = band_factor * rnorm
        kkt_eps = (8 * d**0.5 * _EPS64) * rnorm + 64 * _EPS64 * (
            Za.norm(dim=1) + x.sum(dim=1))
        # candidates outside the working set, most correlated first
        p = min(int(max_add) + _BAND_EXTRA, k - int(valid.sum(dim=1).min().item()))
        p = max(p, 1)
        vals, cand = torch.topk(corr, min(p, k), dim=1)
        vals = vals.to(f64)
        certain = vals > (h + band)[:, None]
        near = (vals > (h - band)[:, None]) & ~certain
        if bool(near.any()):
            # re-check the candidates within rounding distance in float64
            rows, cols = torch.nonzero(near, as_tuple=True)
            vals[rows, cols] = (C64[cand[rows, cols]] * R[rows]).sum(dim=1)
        # an upper bound of the largest correlation (exact unless certain)
        vals_ub = torch.where(certain, vals + band[:, None], vals)
        out_max = torch.where(certain | near, vals_ub, float("-inf")).amax(dim=1)
        in_max = torch.where(valid, corr_S, float("-inf")).amax(dim=1)
        mx = torch.maximum(out_max, in_max)
        s = torch.where(mx > h, h / mx.clamp_min(tiny), torch.ones_like(mx))
        obj = rr + 2.0 * h * x.sum(dim=1)
        g = (1.0 - s) ** 2 * rr + (x * (2.0 * h[:, None] - 2.0 * s[:, None] * corr_S)).sum(dim=1)
        rel = g.clamp_min(0.0) / obj.clamp_min(tiny)
        # KKT up to rounding: decides where the relative gap is uninformative
        # (l1 = 0 with an exactly representable z)
        done = (rel <= tol) | (mx <= h + kkt_eps)
        # 3. violators of the KKT conditions outside the working set
        new_valid = (certain | (near & (vals > (h + kkt_eps)[:, None])))[:, : int(max_add)]
        new = cand[:, : int(max_add)]
        stuck = ~done & ~new_valid.any(dim=1)
        # a stuck sample had an inexact subproblem: one retry by the fallback
        retry = stuck & ~needs_fallback & (rnd < max_rounds)
        finish = done | (stuck & ~retry) | (rnd == max_rounds)
        if bool(finish.any()):
            fi = torch.nonzero(finish).squeeze(1)
            gi = act[fi]
            rows = gi.unsqueeze(1).expand(-1, m)
            codes.index_put_((rows, S[fi]), (x[fi] * valid[fi]).to(out_dtype), accumulate=True)
            rounds[gi] = rnd
            objective[gi] = obj[fi]
            gap[gi] = rel[fi]
            converged[gi] = done[fi]
        keep = ~finish
        if not bool(keep.any()):
            break
        ki = torch.nonzero(keep).squeeze(1)
        # 4. next working sets: the current support plus the violators
        S, valid, G, q, passive = _next_working_sets(
            C64, Za[ki], S[ki], valid[ki], G[ki], q[ki], x[ki], new[ki], new_valid[ki])
        act, Za, needs_fallback = act[ki], Za[ki], retry[ki]
    return dict(codes=codes, rounds=rounds, objective=objective, gap=gap, converged=converged)


#: Extra candidates fetched beyond ``max_add`` so that near-threshold ones are seen.
_BAND_EXTRA = 8


def _next_working_sets(C64, Z64, S, valid, G, q, x, new, new_valid):
    """Keep each sample's support (``x > 0``), append its new violators.

    Dropping the zero members keeps the subproblems small; convergence is
    unaffected (the previous solution stays feasible and the violators give a
    strict decrease, so no support repeats).
    """
    import torch

    na, m = S.shape
    keep = (x > 0) & valid
    w1 = int(keep.sum(dim=1).max().item())
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :w1]
    S1 = S.gather(1, order)
    V1 = keep.gather(1, order)
    q1 = q.gather(1, order)
    G1 = G.gather(1, order.unsqueeze(2).expand(-1, -1, m)).gather(
        2, order.unsqueeze(1).expand(-1, w1, -1))
    # new columns: as many as the most demanding sample needs
    w2 = int(new_valid.sum(dim=1).max().item())
    N, NV = new[:, :w2], new_valid[:, :w2]
    S1 = torch.where(V1, S1, 0)
    N = torch.where(NV, N, 0)
    S2 = torch.cat([S1, N], dim=1)
    cols, qN = _gram_columns(C64, Z64, S2, w2)
    w = w1 + w2
    G2 = torch.empty((na, w, w), dtype=G.dtype, device=G.device)
    G2[:, :w1, :w1] = G1
    G2[:, :, w1:] = cols
    G2[:, w1:, :w1] = cols[:, :w1].transpose(1, 2)
    V2 = torch.cat([V1, NV], dim=1)
    q2 = torch.cat([q1, qN], dim=1)
    # pack each sample's entries to the left: width max(kept + new), not w1 + w2
    wp = int(V2.sum(dim=1).max().item())
    if wp < w:
        order = torch.argsort((~V2).to(torch.int8), dim=1, stable=True)[:, :wp]
        S2, V2, q2 = S2.gather(1, order), V2.gather(1, order), q2.gather(1, order)
        G2 = G2.gather(1, order.unsqueeze(2).expand(-1, -1, w)).gather(
            2, order.unsqueeze(1).expand(-1, wp, -1))
    _mask_pads(G2, q2, V2)
    # the kept support and the violators start passive (the violators would
    # enter at the first pivoting step anyway)
    return S2, V2, G2, q2, V2.clone()


def _gram_columns(C64, Z64, U, w_new):
    """Gram columns ``C[U] C[N]^T`` and ``C[N] z`` per sample, ``N = U[:, -w_new:]``.

    The dictionary rows are gathered in chunks of samples into one reused
    buffer (fresh multi-megabyte allocations cost more in page faults than
    the copy itself on the CPU).

    Parameters
    ----------
    C64 : Tensor of shape (n_concepts, n_features)
    Z64 : Tensor of shape (n, n_features)
    U : Tensor of shape (n, w)
        Concept indices per sample; the last ``w_new`` are the new ones.
    w_new : int

    Returns
    -------
    cols : Tensor of shape (n, w, w_new)
    qN : Tensor of shape (n, w_new)
    """
    import torch

    n, w = U.shape
    d = C64.shape[1]
    device = C64.device
    cols = torch.empty((n, w, w_new), dtype=torch.float64, device=device)
    qN = torch.empty((n, w_new), dtype=torch.float64, device=device)
    if n == 0 or w_new == 0:
        return cols, qN
    budget = _CHUNK_BYTES if device.type == "cpu" else 64 * _CHUNK_BYTES
    step = max(1, budget // ((w + 1) * d * 8))
    # each sample's rows C[U] followed by its z: one product gives both the
    # Gram columns and the correlations z . C[N]
    rows = torch.empty((min(n, step) * w, d), dtype=torch.float64, device=device)
    buf = torch.empty((min(n, step), w + 1, d), dtype=torch.float64, device=device)
    out = torch.empty((min(n, step), w + 1, w_new), dtype=torch.float64, device=device)
    for a in range(0, n, step):
        b = min(n, a + step)
        blk = buf[: b - a]
        idx = U[a:b].reshape(-1)
        torch.index_select(C64, 0, idx, out=rows[: idx.numel()])
        blk[:, :w] = rows[: idx.numel()].view(b - a, w, d)
        blk[:, w] = Z64[a:b]
        res = torch.bmm(blk, blk[:, w - w_new : w].transpose(1, 2), out=out[: b - a])
        cols[a:b] = res[:, :w]
        qN[a:b] = res[:, w]
    return cols, qN


#: Bytes of gathered dictionary rows per chunk of samples (CPU; 64x on GPUs).
_CHUNK_BYTES = 1 << 24


def _gram_blocks(C64, Z64, S, valid):
    """``G = C_S C_S^T`` (n, m, m) and ``q = C_S z`` (n, m)."""
    G, q = _gram_columns(C64, Z64, S, S.shape[1])
    _mask_pads(G, q, valid)
    return G, q


def _mask_pads(G, q, valid):
    """Pads get an identity row/column in ``G`` and zero in ``q`` (in place)."""
    vf = valid.to(G.dtype)
    G.mul_(vf.unsqueeze(2) * vf.unsqueeze(1))
    G.diagonal(dim1=1, dim2=2).add_(1.0 - vf)
    q.mul_(vf)


def _combine(S, x, C64):
    """``sum_j x_j C[S_j]`` per sample, without materialising the gathered rows."""
    import torch

    return torch.nn.functional.embedding_bag(S, C64, per_sample_weights=x, mode="sum")


def _nnqp_bpp(G, q, valid, passive, max_iter=None):
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
        Pivoting steps before giving up (``None``: ``10 * m + 20``).

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
    ``(G x - q)_i < 0`` outside).  The first ``_BPP_FULL`` steps exchange all
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
    eps_y = 1e-11 * (q.abs().amax(dim=1, keepdim=True)
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
        H = torch.where(Fa, xa < -1e-13 * xa.abs().amax(dim=1, keepdim=True), Va & (y < -ey))
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
            if n_live <= 0.6 * len(idx):
                li = torch.nonzero(live).squeeze(1)
                idx, Ga, qa, Va, Fa, ey, H = idx[li], Ga[li], qa[li], Va[li], Fa[li], ey[li], H[li]
                live = live[li]
        if it >= _BPP_FULL:
            # least-index rule: exchange only the infeasible variable of largest index
            H = torch.nn.functional.one_hot(torch.argmax(H * pos, dim=1), m).to(torch.bool) & H
        Fa = Fa ^ (H & live.unsqueeze(1))
    failed[idx[live]] = True
    return x_out, failed


def _fallback_subproblem(C64, Z64, S, valid, half):
    """Solve working-set subproblems by coordinate descent (rare fallback).

    Used when a passive block is numerically singular (duplicated concepts,
    or ``l1 = 0`` with more working-set concepts than features).  Runs
    scikit-learn's ``Lasso(positive=True)`` (``LinearRegression(positive=True)``
    for ``l1 = 0``) on each sample's working-set columns, to a tight tolerance.
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
        if h[i] > 0:
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
