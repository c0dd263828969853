"""Exact working-set (active-set) solver: one CPU kernel (numba), one device kernel (torch).

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
* the Gram blocks ``G`` are computed on demand from the working set's
  dictionary rows, or gathered from the full Gram matrix ``C C^T`` when it
  fits the memory budget ``gram_budget_mb``.

On the CPU the compiled kernel (:mod:`~sksplice.solvers._cpu`) runs the
per-sample steps in parallel over numba's threads, with one BLAS product
``R @ C.T`` per round for the batch; on a device (CUDA) the batched torch
kernel (:mod:`~sksplice.solvers._kernels`) runs every step on padded
tensors.  Both give the exact codes and are tested against each other and
against scikit-learn (``compiled=False`` runs the torch kernel on the CPU).

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

from contextlib import contextmanager

import numpy as np

from .._utils import resolve_device, to_numpy, to_tensor
from ._base import BaseSolver, SolverResult, torch_result
from ._kernels import working_set_solve

__all__ = ["GRAM_BUDGET_MB", "ActiveSetSolver"]

#: Default memory budget of the precomputed Gram matrix ``C C^T`` (float64),
#: in MB: within it, the kernels read the subproblem blocks and (on the CPU)
#: the correlations from its columns instead of computing them.  256 MB holds
#: it up to 5,792 concepts (LVIS's 1,203 take 11.6 MB, 2,281 concepts 41.6 MB);
#: the 10,000-concept vocabulary (800 MB) computes its Gram columns on demand.
GRAM_BUDGET_MB = 256

_CONTROLLER = []


def _blas_limit(n):
    """threadpoolctl's BLAS limit of ``n`` threads (the controller is built once)."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=int(n), user_api="blas")


@contextmanager
def _cpu_threads(n_threads):
    """numba's (thread-local) count and BLAS set to ``n_threads``, restored on exit.

    ``None`` leaves the caller's settings alone.
    """
    if n_threads is None:
        yield
        return
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        with _blas_limit(max(1, int(n_threads))):
            yield
    finally:
        numba.set_num_threads(before)


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
        Threads of the CPU kernel: numba's threads for the per-sample steps
        and BLAS's for the batched products, set for the call and restored
        after it.  ``None`` leaves the caller's settings alone (numba's
        ``set_num_threads``, threadpoolctl's limits); sksplice only limits
        BLAS to one thread inside its own parallel steps, as scikit-learn's
        k-means does.  The device kernel ignores it.
    compiled : bool, default=True
        On the CPU, solve with the compiled kernel (numba); ``False`` runs
        the device kernel (batched torch) on the CPU instead.  Both give the
        exact codes.

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
    On the CPU, the working sets hold at most ``n_features + 16 max_add``
    concepts beyond the initial ones; a sample whose working set is full
    stops with its best iterate (reported as not converged).

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
        gram = None
        if self._gram_fits(C64.shape[0]):
            gram = cache.get("gram")
            if gram is None:
                gram = cache["gram"] = C64 @ C64.T
        return Ck, C64, gram, device

    def _gram_fits(self, k):
        return 8.0 * k * k <= float(self.gram_budget_mb or 0) * 2**20

    def _cpu_views(self, C, dtype):
        """numpy views for the CPU kernel: float64 and correlation-dtype copies, the Gram."""

        C64, _, cache = self._prepared(C, np.float64)
        kdt = np.float32 if self.mixed_precision else np.dtype(dtype).type
        key = ("np", np.dtype(kdt).str)
        if key not in cache:
            C64n = np.ascontiguousarray(C64.numpy())
            Ck = C64n if kdt == np.float64 else np.ascontiguousarray(C64n.astype(kdt))
            gram = None
            if self._gram_fits(C64n.shape[0]):
                gram = cache.get("gram")
                if gram is None:
                    gram = cache["gram"] = C64 @ C64.T  # shared with the device kernel
                gram = gram.numpy()
            cache[key] = (C64n, Ck, gram)
        return cache[key]

    def _run(self, C, Z, half, *, support=None, sparse=False):
        """The device kernel (``working_set_solve``) on numpy inputs or tensors."""
        import torch

        Ck, C64, gram, device = self._views(C, Z.dtype)
        if isinstance(Z, torch.Tensor):
            out_dtype = Z.dtype
            Z64 = Z.to(device=device, dtype=torch.float64)
        else:
            out_dtype = getattr(torch, str(Z.dtype))
            Z64 = to_tensor(Z, device, torch.float64)
        if isinstance(half, torch.Tensor):
            half = half.to(device=device, dtype=torch.float64).expand(Z.shape[0])
        else:
            half = to_tensor(np.broadcast_to(half, (Z.shape[0],)).copy(), device, torch.float64)
        with torch.inference_mode():
            return working_set_solve(
                Ck, C64, Z64, half, out_dtype=out_dtype, tol=self.tol,
                max_rounds=int(self.max_iter), working_set=int(self.working_set),
                max_add=int(self.max_add), support=support, gram=gram, sparse=sparse,
            )

    def _uses_cpu_kernel(self, Z):
        import torch

        if not self.compiled or isinstance(Z, torch.Tensor):
            return False
        return resolve_device(self.device).type == "cpu"

    def _solve_cpu(self, C, Z, half, support, sparse):
        """The batch through the CPU kernel; singular samples through the fallback."""
        import scipy.sparse as sp

        from ._cpu import solve_batch

        C64, Ck, gram = self._cpu_views(C, Z.dtype)
        n, k = Z.shape[0], C.shape[0]
        tol = max(float(self.tol), 50 * float(np.finfo(Z.dtype).eps))
        with _cpu_threads(self.n_threads):
            out = solve_batch(
                C64, Ck, gram, np.ascontiguousarray(Z, dtype=np.float64),
                np.broadcast_to(np.asarray(half, dtype=np.float64), (n,)),
                tol=tol, max_rounds=int(self.max_iter), working_set=int(self.working_set),
                max_add=int(self.max_add), support=support, blas_scope=_blas_limit)
        width = out["S"].shape[1]
        mask = (np.arange(width) < out["m"][:, None]) & (out["x"] > 0) & out["ok"][:, None]
        rows = np.nonzero(mask)[0]
        cols, vals = out["S"][mask], out["x"][mask]
        diag = {key: out[key] for key in ("rounds", "objective", "gap", "converged")}
        bad = np.flatnonzero(~out["ok"])
        if bad.size:  # singular blocks: the device kernel and its fallback
            sub = self._run(C, Z[bad], np.broadcast_to(half, (n,))[bad],
                            support=None if support is None else to_tensor(support[bad], "cpu"),
                            sparse=True)
            data, indices, indptr = sub["codes"]
            rows = np.concatenate([rows, bad[np.repeat(np.arange(bad.size), np.diff(indptr))]])
            cols = np.concatenate([cols, indices])
            vals = np.concatenate([vals, data])
            for key in ("rounds", "objective", "gap", "converged"):
                diag[key][bad] = to_numpy(sub[key])
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

    def _solve_any(self, C, Z, half, support, sparse):
        """Either kernel, by device; ``support`` a boolean array (or None)."""
        import scipy.sparse as sp

        if self._uses_cpu_kernel(Z):
            return self._solve_cpu(C, Z, half, support, sparse)
        if support is not None:
            support = to_tensor(support, self._prepared(C, np.float64)[1])
        out = self._run(C, Z, half, support=support, sparse=sparse)
        codes = out["codes"]
        if sparse:
            codes = sp.csr_matrix(codes, shape=(Z.shape[0], C.shape[0]))
        return torch_result(self.name, codes, out["rounds"], out["objective"], out["gap"],
                            out["converged"])

    def _solve(self, C, Z, l1, init, sparse=False):
        support = None
        if init is not None:
            support = np.asarray(to_numpy(init)) > 0
        return self._solve_any(C, Z, np.float64(l1) / 2.0, support, sparse)

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
            support = np.asarray(support, dtype=bool)
        res = self._solve_any(C, Z, l1 / 2.0, support, False)
        self._warn_unconverged(res)
        return res
