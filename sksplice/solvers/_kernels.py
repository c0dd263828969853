"""Batched torch kernels shared by the solvers (working sets, Gram blocks, pivoting).

:func:`working_set_solve` is the working-set solver's device kernel:
:class:`~sksplice.solvers.ActiveSetSolver` runs it on CUDA (and on the CPU
with ``compiled=False``, or for the rare singular samples of the CPU kernel,
:mod:`~sksplice.solvers._cpu`), and ADMM uses it for screening and polishing
on its own device; the homotopy of ``sparsity.py`` reuses
:func:`gram_columns` and :func:`combine`.

Padding convention
------------------
Samples of a batch have working sets of different sizes, so every per-sample
index tensor ``S`` (n, m) is padded to a common width ``m`` with a boolean
mask ``valid``.  A pad **points at column 0** (a real concept index, so that
gathers and ``embedding_bag`` stay in bounds) and **always carries the value
0**: its row and column of the Gram block are the identity, its linear term
is 0, so the subproblem gives it ``x = 0``.  Writing codes back therefore
uses ``index_put_(..., accumulate=True)``: a pad adds 0 to column 0, which
leaves a real weight of concept 0 intact (without ``accumulate``, the pad
and the real entry would write the same cell and either could win).
"""

from __future__ import annotations

import numpy as np

from ._subproblems import fallback_subproblem, nnqp_bpp

__all__ = ["combine", "gram_columns", "working_set_solve"]

_EPS64 = float(np.finfo(np.float64).eps)

#: Extra candidates fetched beyond ``max_add`` per round: near-threshold
#: concepts whose float32 correlation is within rounding distance of the KKT
#: threshold are re-checked in float64 and may rank below the first
#: ``max_add``; 8 extra covers them in practice at a negligible ``topk`` cost.
_BAND_EXTRA = 8
#: Bytes of gathered dictionary rows per chunk of samples on the CPU (about a
#: last-level cache: larger chunks fault in fresh pages, smaller ones call
#: ``bmm`` too often); GPUs take 64x that (memory is not the constraint there).
_CHUNK_BYTES = 1 << 24
#: Float codes carry a relative rounding error of eps/2 each; the objective of
#: rounded codes is then only known to ~ a few eps, so a float32 run targets at
#: least 50 eps(float32) ~ 6e-6 (50: margin over the ~10 eps observed).
_TOL_EPS_FACTOR = 50


def working_set_solve(Ck, C64, Z64, half, *, out_dtype=None, tol=1e-6, max_rounds=100,
                      working_set=16, max_add=16, support=None, corr0=None, gram=None,
                      sparse=False):
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
        Violators added per round in the first round; the number doubles
        each further round a sample needs (dense codes reach their support in
        a logarithmic number of rounds), up to ``16 * max_add``.
    support : Tensor of shape (n_samples, n_concepts), dtype=bool, default=None
        Concepts to put in the initial working sets as well (a warm start,
        e.g. the support of an approximate solution).
    corr0 : Tensor of shape (n_samples, n_concepts), default=None
        ``Z @ C.T`` (any float dtype) when the caller has it already.
    gram : Tensor of shape (n_concepts, n_concepts), default=None
        ``C64 @ C64.T`` (float64): the subproblem blocks are then gathered
        from it instead of being computed from the dictionary rows.
    sparse : bool, default=False
        Return the codes as CSR parts (``indptr``, ``indices``, ``data``
        numpy arrays) built from the final working sets, instead of a dense
        tensor.

    Returns
    -------
    out : dict
        ``codes`` (n_samples, n_concepts) tensor, or ``(data, indices,
        indptr)`` with ``sparse=True``; ``rounds``, ``objective``, ``gap``
        (relative), ``converged`` (tensors).
    """
    import torch

    f64 = torch.float64
    device = C64.device
    kdt = Ck.dtype
    out_dtype = kdt if out_dtype is None else out_dtype
    n, d = Z64.shape
    k = C64.shape[0]
    tol = max(float(tol), _TOL_EPS_FACTOR * float(torch.finfo(out_dtype).eps))
    max_rounds = max(1, int(max_rounds))
    tiny = torch.finfo(f64).tiny
    # rounding bound of a correlation computed in kdt (unit-norm concepts):
    # |fl(c . r) - c . r| <= (d + 4) u ||r||  (u = eps/2 the unit roundoff of
    # kdt; d for the dot product, 4 for rounding r to kdt), times 1.01 margin
    band_factor = 1.01 * (d + 4) * float(torch.finfo(kdt).eps) / 2
    half = half.to(device=device, dtype=f64)

    parts = [] if sparse else None
    if sparse:
        codes = None
    elif device.type == "cpu":
        # calloc'd pages are mapped lazily: cheaper than zero-filling (n, k)
        codes = torch.from_numpy(np.zeros((n, k), dtype=str(out_dtype).split(".")[-1]))
    else:
        codes = torch.zeros((n, k), dtype=out_dtype, device=device)
    rounds = torch.zeros(n, dtype=torch.long, device=device)
    objective = torch.zeros(n, dtype=f64, device=device)
    gap = torch.zeros(n, dtype=f64, device=device)
    converged = torch.zeros(n, dtype=torch.bool, device=device)
    out = {"rounds": rounds, "objective": objective, "gap": gap, "converged": converged}
    if n == 0:
        out["codes"] = _csr_parts([], n, out_dtype) if sparse else codes
        return out

    corr_buf = torch.empty((n, k), dtype=kdt, device=device)
    c64 = None
    if gram is not None:
        # with the Gram matrix, the subproblems' linear terms C_S z are
        # gathered from the exact correlations of the inputs
        c64 = Z64 @ C64.T
        corr0 = c64 if corr0 is None else corr0
    elif corr0 is None:
        corr0 = torch.mm(Z64.to(kdt), Ck.T, out=corr_buf)
    m0 = min(k, max(1, int(working_set)))
    if support is not None:
        m_sup = int(support.sum(dim=1).max().item())
        m0 = min(k, max(m0, m_sup))
        # supported concepts first, then the most correlated ones: correlations
        # lie in [-a, a] (a = max |corr0|), so adding 4 + 2a to the supported
        # ones ranks every supported concept above every other
        key = corr0.to(f64) + torch.where(support, 4.0 + 2 * corr0.abs().amax().to(f64), 0.0)
        S = torch.topk(key, m0, dim=1).indices
    else:
        S = torch.topk(corr0, m0, dim=1).indices
    del corr0
    valid = torch.ones_like(S, dtype=torch.bool)
    G, q = gram_columns(C64, Z64, S, S.shape[1], gram=gram, c64=c64)
    _mask_pads(G, q, valid)
    passive = q > half[:, None]  # the first exchange of BPP from an empty set
    act = torch.arange(n, device=device)
    Za = Z64
    needs_fallback = torch.zeros(n, dtype=torch.bool, device=device)
    znorm = Z64.norm(dim=1)
    add_cap = 16 * max(1, int(max_add))

    for rnd in range(1, max_rounds + 1):
        na, m = S.shape
        h = half[act]
        add = min(add_cap, max(1, int(max_add)) * 2 ** (rnd - 1), k)
        # 1. exact subproblems: min 1/2 x'Gx - (q - h)'x, x >= 0
        x, failed = nnqp_bpp(G, q - h[:, None] * valid, valid, passive)
        redo = failed | needs_fallback
        if bool(redo.any()):
            ri = torch.nonzero(redo).squeeze(1)
            x[ri] = fallback_subproblem(C64, Za[ri], S[ri], valid[ri], h[ri])
        # 2. residuals and one batched KKT check
        R = Za - combine(S, x, C64)
        corr = torch.mm(R.to(kdt), Ck.T, out=corr_buf[:na])
        # exclude the working set (pads leave their column alone)
        corr.scatter_reduce_(
            1, S, torch.where(valid, float("-inf"), float("inf")).to(kdt), reduce="amin")
        # exact (float64) correlations on the working set: C_S r = q - G x
        corr_S = q - (G @ x.unsqueeze(2)).squeeze(2)
        rr = (R * R).sum(dim=1)
        rnorm = rr.sqrt()
        band = band_factor * rnorm
        # rounding of the float64 KKT test itself: the dot product c . r
        # (8 sqrt(d) eps ||r||, a probabilistic bound with margin 8) and the
        # residual r = z - sum x_j c_j (64 eps (||z|| + sum x), unit-norm c_j)
        kkt_eps = (8 * d**0.5 * _EPS64) * rnorm + 64 * _EPS64 * (znorm[act] + x.sum(dim=1))
        # candidates outside the working set, most correlated first
        p = max(1, min(add + _BAND_EXTRA, k - int(valid.sum(dim=1).min().item())))
        vals, cand = _top_candidates(corr, (h - band).to(kdt), p)
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
        new_valid = (certain | (near & (vals > (h + kkt_eps)[:, None])))[:, :add]
        new = cand[:, :add]
        stuck = ~done & ~new_valid.any(dim=1)
        # a stuck sample had an inexact subproblem: one retry by the fallback
        retry = stuck & ~needs_fallback & (rnd < max_rounds)
        finish = done | (stuck & ~retry) | (rnd == max_rounds)
        if bool(finish.any()):
            fi = torch.nonzero(finish).squeeze(1)
            gi = act[fi]
            xf = (x[fi] * valid[fi]).to(out_dtype)
            if sparse:
                parts.append((gi, S[fi], xf))
            else:
                # pads point at column 0 with value 0: accumulate adds nothing there
                rows = gi.unsqueeze(1).expand(-1, m)
                codes.index_put_((rows, S[fi]), xf, accumulate=True)
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
            C64, Za[ki], S[ki], valid[ki], G[ki], q[ki], x[ki], new[ki], new_valid[ki], gram,
            None if c64 is None else c64[act[ki]])
        act, Za, needs_fallback = act[ki], Za[ki], retry[ki]
    out["codes"] = _csr_parts(parts, n, out_dtype) if sparse else codes
    return out


def _csr_parts(parts, n, dtype):
    """CSR ``(data, indices, indptr)`` from per-sample working sets and values.

    Every sample finishes exactly once and its working set holds distinct
    concepts (violators are taken outside it), so only pads and zero weights
    are dropped; entries are then sorted by (row, column).
    """
    import torch

    np_dtype = np.dtype(str(dtype).split(".")[-1])
    if not parts:
        return (np.zeros(0, np_dtype), np.zeros(0, np.int32), np.zeros(n + 1, np.int64))
    rows = torch.cat([g.unsqueeze(1).expand(-1, s.shape[1]).reshape(-1) for g, s, _ in parts])
    cols = torch.cat([s.reshape(-1) for _, s, _ in parts])
    vals = torch.cat([v.reshape(-1) for _, _, v in parts])
    nz = vals > 0
    rows, cols, vals = (t[nz].cpu().numpy() for t in (rows, cols, vals))
    order = np.lexsort((cols, rows))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return vals[order], cols[order].astype(np.int32), indptr


def _top_candidates(corr, thresh, p):
    """The ``p`` largest entries of each row of ``corr`` above ``thresh`` (per row).

    Equivalent to ``torch.topk(corr, p)`` restricted to the entries above
    the threshold (the only ones a KKT check needs), but it sorts only
    those: after the first round most samples have none or a few, where
    ``topk`` would scan and sort every row.

    Returns
    -------
    vals : Tensor of shape (n, p)
        The values in float64, descending, ``-inf`` where a row has fewer.
    idx : Tensor of shape (n, p)
        Their columns (0 where ``vals`` is ``-inf``).
    """
    import torch

    n = corr.shape[0]
    rows, cols = torch.nonzero(corr > thresh[:, None], as_tuple=True)
    vals = torch.full((n, p), float("-inf"), dtype=torch.float64, device=corr.device)
    idx = torch.zeros((n, p), dtype=torch.long, device=corr.device)
    if rows.numel() == 0:
        return vals, idx
    v = corr[rows, cols]
    # order by row, then by decreasing value (two stable sorts)
    order = torch.argsort(v, descending=True, stable=True)
    order = order[torch.argsort(rows[order], stable=True)]
    rows, cols, v = rows[order], cols[order], v[order]
    counts = torch.bincount(rows, minlength=n)
    start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(rows.numel(), device=corr.device) - start[rows]
    sel = rank < p
    vals[rows[sel], rank[sel]] = v[sel].to(torch.float64)
    idx[rows[sel], rank[sel]] = cols[sel]
    return vals, idx


def _next_working_sets(C64, Z64, S, valid, G, q, x, new, new_valid, gram, c64):
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
    S1 = torch.where(V1, S1, 0)  # pads point at column 0
    N = torch.where(NV, N, 0)
    S2 = torch.cat([S1, N], dim=1)
    cols, qN = gram_columns(C64, Z64, S2, w2, gram=gram, c64=c64)
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


def gram_columns(C64, Z64, U, w_new, gram=None, c64=None):
    """Gram columns ``C[U] C[N]^T`` and ``C[N] z`` per sample, ``N = U[:, -w_new:]``.

    Without ``gram``, the dictionary rows are gathered in chunks of samples
    into one reused buffer (fresh multi-megabyte allocations cost more in
    page faults than the copy itself on the CPU) and multiplied; with it,
    the columns are gathered from the precomputed Gram matrix.

    Parameters
    ----------
    C64 : Tensor of shape (n_concepts, n_features)
        Dictionary (float64).
    Z64 : Tensor of shape (n, n_features)
        Inputs (float64).
    U : Tensor of shape (n, w)
        Concept indices per sample; the last ``w_new`` are the new ones.
    w_new : int
        Number of new columns.
    gram : Tensor of shape (n_concepts, n_concepts), default=None
        ``C64 @ C64.T``, when precomputed.
    c64 : Tensor of shape (n, n_concepts), default=None
        ``Z64 @ C64.T``, required with ``gram``.

    Returns
    -------
    cols : Tensor of shape (n, w, w_new)
        The Gram columns.
    qN : Tensor of shape (n, w_new)
        The correlations of the new concepts with each sample.
    """
    import torch

    n, w = U.shape
    d = C64.shape[1]
    device = C64.device
    if gram is not None:
        # flat indices into the Gram matrix: one index_select (torch's
        # advanced indexing and per-sample row gathers are several times slower)
        k = gram.shape[0]
        N = U[:, w - w_new :]
        flat = (U.unsqueeze(2) * k + N.unsqueeze(1)).reshape(-1)
        cols = torch.index_select(gram.reshape(-1), 0, flat).view(n, w, w_new)
        return cols, c64.gather(1, N)
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


def _mask_pads(G, q, valid):
    """Pads get an identity row/column in ``G`` and zero in ``q`` (in place)."""
    vf = valid.to(G.dtype)
    G.mul_(vf.unsqueeze(2) * vf.unsqueeze(1))
    G.diagonal(dim1=1, dim2=2).add_(1.0 - vf)
    q.mul_(vf)


def combine(S, x, C64):
    """``sum_j x_j C[S_j]`` per sample, without materialising the gathered rows.

    Parameters
    ----------
    S : Tensor of shape (n, m)
        Concept indices (pads point at column 0 and carry ``x = 0``).
    x : Tensor of shape (n, m)
        Weights.
    C64 : Tensor of shape (n_concepts, n_features)
        Dictionary.

    Returns
    -------
    Y : Tensor of shape (n, n_features)
        The weighted sums.
    """
    import torch

    return torch.nn.functional.embedding_bag(S, C64, per_sample_weights=x, mode="sum")
