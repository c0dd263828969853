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
* the Gram blocks ``G`` are built incrementally as the working sets grow,
  from the dictionary rows, or gathered from the full Gram matrix
  ``C C^T`` when it fits the memory budget ``gram_budget_mb``.

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

import numpy as np

from .._utils import to_numpy, to_tensor
from . import _compiled
from ._base import BaseSolver, SolverResult, torch_result
from ._kernels import working_set_solve
from ._single import solve_one
from ._threads import solve_threads, thread_scope

__all__ = ["GRAM_BUDGET_MB", "ActiveSetSolver"]

#: Default memory budget of the precomputed Gram matrix ``C C^T`` (float64),
#: in MB.  Measured with ``benchmarks/bench_solvers.py`` (docs/benchmarks.md):
#: gathering the subproblem blocks from the Gram matrix beats computing them
#: from the dictionary rows at every size that fits; 256 MB holds it up to
#: 5,792 concepts (LVIS's 1,203 take 11.6 MB, 2,281 concepts 41.6 MB) and
#: keeps the 10,000-concept vocabulary (800 MB) on the Gram-free path.
GRAM_BUDGET_MB = 256


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
        Number of KKT violators added to a sample's working set in its
        first round (the most violating first); it doubles every further
        round the sample needs, so dense codes take few rounds.
    mixed_precision : bool, default=True
        Compute the batched correlations ``R @ C.T`` in float32 (twice as
        fast) and re-check in float64 every concept within float32 rounding
        distance of the KKT threshold, so every decision is the float64 one.
        With ``False`` they are computed in the input's dtype.
    gram_budget_mb : float, default=256
        Memory (MB) the solver may spend on the float64 Gram matrix
        ``C C^T`` (``8 n_concepts^2`` bytes), cached with the dictionary;
        within it, the subproblem blocks are gathered from the Gram matrix.
        ``0`` never forms it.  See :data:`GRAM_BUDGET_MB`.
    n_threads : int, default=None
        Threads inside a solve.  ``None``: the many small steps on one
        thread (fast on shared cores), and the batched correlation matmuls
        (or the compiled kernel's samples) of batches above ``2**27``
        multiply-adds with torch's current setting; an int: that many
        threads throughout.
    compiled : bool, default=True
        On the CPU, with the Gram matrix within budget and numba installed,
        solve each sample with the compiled kernel (same algorithm and
        exactness, no per-round overhead); ``False`` keeps the torch core.

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
    (float32 ones with ``mixed_precision``) plus the dense codes (none with
    ``sparse_output=True``), and the Gram matrix within ``gram_budget_mb``.

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

    def __init__(self, *, tol=1e-6, max_iter=100, device="auto", batch_size=1024,
                 working_set=16, max_add=16, mixed_precision=True,
                 gram_budget_mb=GRAM_BUDGET_MB, n_threads=None, compiled=True):
        super().__init__(tol=tol, max_iter=max_iter, device=device, batch_size=batch_size)
        self.working_set = working_set
        self.max_add = max_add
        self.mixed_precision = mixed_precision
        self.gram_budget_mb = gram_budget_mb
        self.n_threads = n_threads
        self.compiled = compiled

    def _views(self, C, dtype):
        """The dictionary in float64 and in the correlation dtype, and the Gram (cached)."""
        import torch

        C64, device, cache = self._prepared(C, np.float64)
        kdt = torch.float32 if self.mixed_precision else getattr(torch, str(np.dtype(dtype)))
        Ck = C64 if kdt == torch.float64 else cache.get(("Ck", kdt))
        if Ck is None:
            Ck = cache[("Ck", kdt)] = C64.to(kdt)
        k = C64.shape[0]
        gram = None
        if 8.0 * k * k <= float(self.gram_budget_mb or 0) * 2**20:
            gram = cache.get("gram")
            if gram is None:
                gram = cache["gram"] = C64 @ C64.T
        return Ck, C64, gram, device

    def _run(self, C, Z, half, *, support=None, sparse=False):
        """``working_set_solve`` on numpy inputs, under the thread policy."""
        import torch

        Ck, C64, gram, device = self._views(C, Z.dtype)
        n_threads = solve_threads(Z.shape[0], C.shape[0], C.shape[1], self.n_threads)
        # the many small steps on one thread, only the batched correlation
        # matmuls with n_threads: small ops in a thread team collapse on shared cores
        small = 1 if self.n_threads is None else n_threads
        if device.type != "cpu":
            n_threads = small = torch.get_num_threads()
        with thread_scope(small), torch.inference_mode():
            Z64 = to_tensor(Z, device, torch.float64)
            half = to_tensor(np.broadcast_to(half, (Z.shape[0],)).copy(), device, torch.float64)
            return working_set_solve(
                Ck, C64, Z64, half, out_dtype=getattr(torch, str(Z.dtype)), tol=self.tol,
                max_rounds=int(self.max_iter), working_set=int(self.working_set),
                max_add=int(self.max_add), support=support, gram=gram, sparse=sparse,
                matmul_threads=n_threads,
            )

    def _solve_single(self, C, Z, l1, sparse):
        """One CPU sample through the numpy latency path (``None``: use the batched core)."""
        import scipy.sparse as sp

        Ck, C64, gram, device = self._views(C, Z.dtype)
        if device.type != "cpu":
            return None
        with thread_scope(solve_threads(1, *C.shape, self.n_threads)):
            one = solve_one(
                C64.numpy(), Ck, None if gram is None else gram.numpy(),
                np.asarray(Z[0], dtype=np.float64), float(l1) / 2.0, tol=self.tol,
                max_rounds=int(self.max_iter), working_set=int(self.working_set),
                max_add=int(self.max_add), out_dtype=Z.dtype,
            )
        if one is None:
            return None
        cols, vals, (rounds, obj, rel, done) = one
        k = C.shape[0]
        if sparse:
            codes = sp.csr_matrix((vals, cols.astype(np.int32), np.array([0, cols.size])),
                                  shape=(1, k))
        else:
            codes = np.zeros((1, k), dtype=Z.dtype)
            codes[0, cols] = vals
        return SolverResult(codes=codes, n_iter=np.array([rounds]), objective=np.array([obj]),
                            gap=np.array([rel]), converged=np.array([done]), solver=self.name)

    def _solve_compiled(self, C, Z, half, sparse):
        """The batch through the compiled kernel (``None`` when it does not apply)."""
        import scipy.sparse as sp

        if not (self.compiled and _compiled.available()):
            return None
        _, C64, gram, device = self._views(C, Z.dtype)
        if device.type != "cpu" or gram is None:
            return None
        import numba

        n, k = Z.shape[0], C.shape[0]
        threads = solve_threads(n, k, C.shape[1], self.n_threads)
        with thread_scope(threads):
            numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
            Z64 = np.ascontiguousarray(Z, dtype=np.float64)
            out = _compiled.solve_gram_batch(
                gram.numpy(), Z64 @ C64.numpy().T, np.einsum("ij,ij->i", Z64, Z64),
                np.broadcast_to(np.asarray(half, dtype=np.float64), (n,)).copy(),
                tol=max(float(self.tol), 50 * float(np.finfo(Z.dtype).eps)),
                max_rounds=int(self.max_iter), working_set=int(self.working_set),
                max_add=int(self.max_add), d=C.shape[1])
        counts = np.maximum(out["counts"], 0)
        mask = np.arange(out["S"].shape[1]) < counts[:, None]
        mask &= out["ok"][:, None]
        rows = np.nonzero(mask)[0]
        cols, vals = out["S"][mask], out["x"][mask]
        diag = {key: out[key] for key in ("rounds", "objective", "gap", "converged")}
        bad = np.flatnonzero(~out["ok"])
        if bad.size:  # singular blocks: the torch core and its fallback
            sub = self._run(C, Z[bad], np.broadcast_to(half, (n,))[bad], sparse=True)
            data, indices, indptr = sub["codes"]
            rows = np.concatenate([rows, bad[np.repeat(np.arange(bad.size), np.diff(indptr))]])
            cols = np.concatenate([cols, indices])
            vals = np.concatenate([vals, data])
            for key, name in (("rounds", "rounds"), ("objective", "objective"), ("gap", "gap"),
                              ("converged", "converged")):
                diag[key][bad] = to_numpy(sub[name])
        order = np.lexsort((cols, rows))
        rows, cols, vals = rows[order], cols[order], vals[order].astype(Z.dtype)
        if sparse:
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
            codes = sp.csr_matrix((vals, cols.astype(np.int32), indptr), shape=(n, k))
        else:
            codes = np.zeros((n, k), dtype=Z.dtype)
            codes[rows, cols] = vals
        return SolverResult(codes=codes, n_iter=diag["rounds"].astype(np.int64),
                            objective=diag["objective"], gap=diag["gap"],
                            converged=diag["converged"].astype(bool), solver=self.name)

    def _solve(self, C, Z, l1, init, sparse=False):
        import scipy.sparse as sp

        if init is None:
            res = self._solve_compiled(C, Z, np.float64(l1) / 2.0, sparse)
            if res is not None:
                return res
        if Z.shape[0] == 1 and init is None:
            res = self._solve_single(C, Z, l1, sparse)
            if res is not None:
                return res
        support = None
        if init is not None:
            support = to_tensor(np.asarray(init) > 0, self._prepared(C, np.float64)[1])
        out = self._run(C, Z, np.float64(l1) / 2.0, support=support, sparse=sparse)
        codes = out["codes"]
        if sparse:
            codes = sp.csr_matrix(codes, shape=(Z.shape[0], C.shape[0]))
        return torch_result(self.name, codes, out["rounds"], out["objective"], out["gap"],
                            out["converged"])

    def solve_penalties(self, C, Z, l1, *, support=None):
        """Exact codes with a penalty per sample, warm-started from a support.

        Parameters
        ----------
        C : ndarray of shape (n_concepts, n_features)
            Dictionary with unit-norm rows.
        Z : ndarray of shape (n_samples, n_features)
            Centred inputs (float32 or float64).
        l1 : ndarray of shape (n_samples,)
            Positive penalty of each sample.
        support : ndarray of shape (n_samples, n_concepts), dtype=bool, default=None
            Concepts to put in each sample's first working set.

        Returns
        -------
        result : SolverResult
            Codes and diagnostics, each sample at its own penalty.
        """
        l1 = np.asarray(l1, dtype=np.float64)
        if support is not None:
            support = to_tensor(np.asarray(support, dtype=bool),
                                self._prepared(C, np.float64)[1])
        out = self._run(C, Z, l1 / 2.0, support=support)
        return torch_result(self.name, out["codes"], out["rounds"], out["objective"], out["gap"],
                            out["converged"])
