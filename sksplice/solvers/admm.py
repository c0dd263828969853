"""Batched ADMM in torch, with a d x d Woodbury factorisation.

The x-update of ADMM on ``min ||z - A x||^2 + l1 sum(v)``, ``x = v``, ``v >= 0``
solves ``(2 A^T A + rho I) x = 2 A^T z + rho (v - u)``, an
n_concepts x n_concepts system.  The Woodbury identity turns it into a
d x d one::

    (rho I + 2 A^T A)^{-1} = (1/rho) (I - A^T (rho/2 I + A A^T)^{-1} A)

with ``A A^T = C^T C`` (d x d), factored once per ``rho`` and cached across
calls.  Every iteration then costs two (batch x n_concepts x d) matmuls.

Each sample runs its own ADMM: it has its own penalty level ``rho`` (adapted
by residual balancing among a ladder ``rho_0 * 2^k`` whose factorisations are
shared), is checked every ``check_every`` iterations with its relative duality
gap, and leaves the batch once converged.  A sample's codes therefore do not
depend on which other samples share its batch.
"""

from __future__ import annotations

from .._utils import to_tensor
from ._base import BaseSolver, objective_gap_from, torch_result
from ._kernels import working_set_solve

__all__ = ["ADMMSolver"]

#: Working-set rounds of the polishing step (each adds violators of ADMM's
#: support; one or two suffice from a support at ``polish_tol``).
_POLISH_ROUNDS = 100


class ADMMSolver(BaseSolver):
    """Batched, per-sample adaptive ADMM (torch; CPU or CUDA).

    Parameters
    ----------
    tol : float, default=1e-6
        Target relative duality gap, checked every ``check_every`` iterations.
    max_iter : int, default=10000
        Iteration budget per sample.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    batch_size : int, default=1024
        Samples iterated together; bounds the memory to a few
        (batch_size x n_concepts) matrices.
    rho : float, default=None
        Initial penalty; ``None`` uses ``2 * n_concepts / n_features`` (twice
        the mean eigenvalue of ``C^T C``).
    adaptive_rho : bool, default=True
        Residual balancing per sample (factor 2 steps, factorisations cached).
    check_every : int, default=10
        Iterations between duality-gap checks.
    warm_start : {"zeros", "screen"}, default="screen"
        Initialisation when no ``init`` is given: zeros, or ``"screen"``:
        the exact solution restricted to each sample's ``working_set`` most
        correlated concepts (one small subproblem of the working-set solver),
        which is usually close to the final codes.
    polish : bool, default=True
        Exact codes (the default): run ADMM only to the loose relative gap
        ``polish_tol`` and then
        finish exactly: the working-set solver
        (:class:`~sksplice.solvers.ActiveSetSolver`) takes ADMM's support as
        its initial working set and solves to ``tol``, so the codes are
        exact (in the n_concepts x n_features memory of ADMM: it never forms
        an n_concepts x n_concepts matrix either).  With ``False``, the codes
        are ADMM's own, exact only to ``tol`` in the duality gap: tiny
        spurious weights remain where the exact code has none.
    polish_tol : float, default=0.1
        Relative gap at which ADMM hands over to the polishing step.  The
        codes are exact whatever its value; a loose one leaves more of the
        work to the working-set solver, which was fastest in
        ``benchmarks/bench_solvers.py`` (0.1: about 7 ms/sample against 60
        ms/sample for 1e-3 on the 10,000-concept CPU problem).
    working_set : int, default=32
        Working-set size of ``warm_start="screen"`` and of the polishing.

    Notes
    -----
    Initialisation is deterministic (zeros, ``init`` or the screening
    solution).  The returned codes are the thresholded ADMM variable, hence
    exactly sparse and nonnegative.  With ``polish=True``, ``n_iter`` counts
    the ADMM iterations plus the polishing rounds, and
    ``extra["polish_rounds"]`` the latter.
    """

    name = "admm"

    def __init__(self, *, tol=1e-6, max_iter=10000, device="auto", batch_size=1024,
                 rho=None, adaptive_rho=True, check_every=10, warm_start="screen",
                 polish=True, polish_tol=0.1, working_set=32):
        super().__init__(tol=tol, max_iter=max_iter, device=device, batch_size=batch_size)
        self.rho = rho
        self.adaptive_rho = adaptive_rho
        self.check_every = check_every
        self.warm_start = warm_start
        self.polish = polish
        self.polish_tol = polish_tol
        self.working_set = working_set

    def _exact_views(self, C, device, cache):
        """The dictionary in float64 and float32 for the working-set solver (cached)."""
        import torch

        if "C64" not in cache:
            cache["C64"] = to_tensor(C, device, torch.float64)
            cache["C32"] = cache["C64"].to(torch.float32)
        return cache["C32"], cache["C64"]

    def _working_set(self, C, Ct, cache, Z, l1, **kw):
        """Run the exact working-set solver on a batch (see ``warm_start``, ``polish``)."""
        import torch

        C32, C64 = self._exact_views(C, Ct.device, cache)
        Z64 = to_tensor(Z, Ct.device, torch.float64)
        half = torch.full((Z.shape[0],), l1 / 2.0, dtype=torch.float64, device=Ct.device)
        return working_set_solve(C32, C64, Z64, half, out_dtype=Ct.dtype,
                                 working_set=int(self.working_set), **kw)

    def _projector(self, Ct, rho, cache):
        """``C (rho/2 I + C^T C)^{-1}`` (n_concepts x d) for one rho, cached."""
        import torch

        key = ("P", float(rho))
        if key not in cache:
            if "G" not in cache:
                cache["G"] = Ct.T @ Ct
            G = cache["G"]
            M = G + (rho / 2.0) * torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
            L = torch.linalg.cholesky(M)
            cache[key] = Ct @ torch.cholesky_inverse(L)
        return cache[key]

    def _solve(self, C, Z, l1, init, sparse=False):
        import torch

        if self.warm_start not in ("zeros", "screen"):
            raise ValueError(
                f"warm_start={self.warm_start!r} is not supported; use 'zeros' or 'screen'."
            )
        if isinstance(Z, torch.Tensor):  # a device batch stays on the device
            dtype = Z.dtype
        else:
            dtype = getattr(torch, str(Z.dtype))
        Ct, device, cache = self._prepared(C, str(dtype).replace("torch.", ""))
        if init is None and self.warm_start == "screen":
            with torch.inference_mode():
                init = self._working_set(C, Ct, cache, Z, l1, max_rounds=1)["codes"]
        W, n_iter, objective, gap, converged, extra = self._admm(
            Ct, device, cache, Z, l1, init, dtype)
        if self.polish:
            # ADMM's support, on the device, is the polishing's first working set
            with torch.inference_mode():
                out = self._working_set(C, Ct, cache, Z, l1, tol=self.tol, support=W > 0,
                                        max_rounds=_POLISH_ROUNDS)
            W, objective, gap, converged = (out[key] for key in
                                            ("codes", "objective", "gap", "converged"))
            n_iter = n_iter + out["rounds"]
            extra["polish_rounds"] = out["rounds"]
        # numpy at the edge, once
        return torch_result(self.name, W, n_iter, objective, gap, converged, extra=extra)

    def _admm(self, Ct, device, cache, Z, l1, init, dtype):
        import torch

        k, d = Ct.shape
        n = Z.shape[0]
        rho0 = float(self.rho) if self.rho is not None else 2.0 * k / d
        tol = max(float(self.tol), 50 * float(torch.finfo(dtype).eps))
        if self.polish:
            tol = max(tol, float(self.polish_tol))
        check_every = max(1, int(self.check_every))

        with torch.inference_mode():
            Zt = to_tensor(Z, device, dtype)
            b0 = 2.0 * (Zt @ Ct.T)
            if init is None:
                v = torch.zeros((n, k), dtype=dtype, device=device)
            else:
                v = to_tensor(init, device, dtype).clamp_min(0).clone()
            x = v.clone()
            if init is None:
                u = torch.zeros_like(v)
            else:
                # the scaled dual consistent with v: at a fixed point x = v and
                # u = 2 A^T (z - A v) / rho, so an optimal init is a fixed point
                u = (b0 - 2.0 * (v @ Ct) @ Ct.T) / rho0
            level = torch.zeros(n, dtype=torch.long, device=device)
            idx = torch.arange(n, device=device)

            W = torch.zeros((n, k), dtype=dtype, device=device)
            n_iter = torch.zeros(n, dtype=torch.long, device=device)
            obj_out = torch.zeros(n, dtype=dtype, device=device)
            gap_out = torch.zeros(n, dtype=dtype, device=device)
            conv_out = torch.zeros(n, dtype=torch.bool, device=device)
            rprim = torch.zeros(n, dtype=dtype, device=device)
            rdual = torch.zeros(n, dtype=dtype, device=device)

            it = 0
            while idx.numel() > 0:
                # contiguous groups of samples sharing one rho level
                levels, counts = torch.unique_consecutive(level, return_counts=True)
                groups = []
                start = 0
                for lev, cnt in zip(levels.tolist(), counts.tolist(), strict=False):
                    groups.append((start, start + cnt, rho0 * 2.0**lev))
                    start += cnt
                rho_vec = rho0 * torch.pow(2.0, level.to(dtype))
                thr = (l1 / rho_vec)[:, None]
                steps = min(check_every, self.max_iter - it)
                v_old = v
                for _ in range(steps):
                    v_old = v
                    bb = b0 + rho_vec[:, None] * (v - u)
                    for a, b, rho in groups:
                        P = self._projector(Ct, rho, cache)
                        blk = bb[a:b]
                        x[a:b] = (blk - (blk @ Ct) @ P.T) / rho
                    v = (x + u - thr).clamp_min(0)
                    u = u + x - v
                it += steps

                R = Zt - v @ Ct
                corr = R @ Ct.T
                obj, gap = objective_gap_from(R, corr, v, l1)
                rel = gap / obj.clamp_min(torch.finfo(dtype).tiny)
                r_p = torch.linalg.vector_norm(x - v, dim=1)
                r_d = rho_vec * torch.linalg.vector_norm(v - v_old, dim=1)
                done = rel <= tol
                if it >= self.max_iter:
                    finish = torch.ones_like(done)
                else:
                    finish = done
                if finish.any():
                    sel = idx[finish]
                    W[sel] = v[finish]
                    n_iter[sel] = it
                    obj_out[sel] = obj[finish]
                    gap_out[sel] = rel[finish]
                    conv_out[sel] = done[finish]
                    rprim[sel] = r_p[finish]
                    rdual[sel] = r_d[finish]
                keep = ~finish
                if not keep.any():
                    break
                if self.adaptive_rho:
                    up = (r_p > 10.0 * r_d) & keep
                    down = (r_d > 10.0 * r_p) & keep
                    up &= level < 20
                    down &= level > -20
                    level = level + up.long() - down.long()
                    scale = torch.ones_like(rho_vec)
                    scale[up] = 0.5
                    scale[down] = 2.0
                    u = u * scale[:, None]
                order = torch.argsort(level[keep], stable=True)
                sel = torch.nonzero(keep).squeeze(1)[order]
                x, v, u, b0, Zt = x[sel], v[sel], u[sel], b0[sel], Zt[sel]
                level, idx = level[sel], idx[sel]

        return (W, n_iter, obj_out, gap_out, conv_out,
                {"primal_residual": rprim, "dual_residual": rdual})

