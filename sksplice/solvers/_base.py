"""The solver contract shared by every decomposition backend.

Every solver minimises, independently for each row ``z`` of a batch ``Z``::

    P(w) = ||z - C^T w||^2 + l1 * sum(w)    subject to  w >= 0

for a dictionary ``C`` of shape (n_concepts, n_features) with unit-norm rows,
and returns the codes together with per-sample diagnostics (iterations,
objective, relative duality gap), so that convergence is always inspectable.

Duality gap
-----------
Halving ``P`` gives ``f(w) = 1/2 ||z - A w||^2 + c^T w`` with ``A = C^T`` and
``c = (l1 / 2) 1``.  Its Lagrangian dual over ``w >= 0`` is::

    D(theta) = 1/2 ||z||^2 - 1/2 ||z - theta||^2   s.t.  A^T theta <= c.

For any primal point with residual ``r = z - A w``, ``theta = s r`` with
``s = min(1, (l1/2) / max_j (A^T r)_j)`` (``s = 1`` when that max is <= 0) is
dual feasible, so ``f(w) - D(theta) >= 0``, with equality at the optimum
(where ``theta = r`` is the optimal dual point).  Expanding the squares with
``z = r + A w`` gives the cancellation-free form used here::

    gap = 2 (f(w) - D(theta)) = (1 - s)^2 ||r||^2 + sum_j w_j (l1 - 2 s (A^T r)_j)

in which both terms are nonnegative for feasible ``s``.  The *relative* gap is
``gap / P(w)``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .._utils import resolve_device, to_numpy, to_tensor

__all__ = [
    "BaseSolver",
    "SolverResult",
    "batch_slices",
    "objective_and_gap",
    "objective_gap_from",
    "torch_result",
]


def batch_slices(n, batch_size):
    """The one batching rule: consecutive slices of at most ``batch_size`` rows.

    Every loop over samples (:meth:`BaseSolver.solve`,
    :func:`~sksplice.solvers.solve_batched`,
    :func:`~sksplice.solvers.solve_n_nonzero`) cuts its input with it, so a
    batch that ``solve_batched`` hands to a solver is solved in one piece.

    Parameters
    ----------
    n : int
        Number of rows.
    batch_size : int
        Largest slice (values below 1 count as 1).

    Returns
    -------
    slices : list of slice
        The slices, in order (none when ``n == 0``).
    """
    bs = max(1, int(batch_size))
    return [slice(a, min(n, a + bs)) for a in range(0, n, bs)]


@dataclass
class SolverResult:
    """Codes and per-sample diagnostics returned by every solver.

    Parameters
    ----------
    codes : ndarray or scipy.sparse.csr_matrix of shape (n_samples, n_concepts)
        Nonnegative, exactly sparse codes (CSR when the solve was asked for
        ``sparse_output=True``).
    n_iter : ndarray of shape (n_samples,)
        Iterations (or working-set rounds) each sample used.
    objective : ndarray of shape (n_samples,)
        Final primal objective ``||z - C^T w||^2 + l1 * sum(w)``.
    gap : ndarray of shape (n_samples,)
        Final relative duality gap ``gap / objective`` (>= 0).
    converged : ndarray of shape (n_samples,), dtype=bool
        Whether each sample reached the tolerance.
    solver : str
        Name of the solver that produced the codes.
    time : float
        Wall-clock seconds spent in the solver.
    extra : dict
        Solver-specific diagnostics (e.g. ADMM residuals).
    """

    codes: np.ndarray
    n_iter: np.ndarray
    objective: np.ndarray
    gap: np.ndarray
    converged: np.ndarray
    solver: str
    time: float = 0.0
    extra: dict = field(default_factory=dict)

    @staticmethod
    def concatenate(results):
        """Stack the results of consecutive batches into one.

        Parameters
        ----------
        results : iterable of SolverResult
            Results of consecutive batches (all dense or all CSR codes).

        Returns
        -------
        result : SolverResult
            One result for all their samples.
        """
        import scipy.sparse as sp

        results = list(results)
        if len(results) == 1:
            return results[0]
        extra = {}
        for key in results[0].extra:
            vals = [r.extra.get(key) for r in results]
            if all(isinstance(v, np.ndarray) for v in vals):
                extra[key] = np.concatenate(vals)
        return SolverResult(
            codes=(sp.vstack([r.codes for r in results], format="csr")
                   if sp.issparse(results[0].codes)
                   else np.concatenate([r.codes for r in results])),
            n_iter=np.concatenate([r.n_iter for r in results]),
            objective=np.concatenate([r.objective for r in results]),
            gap=np.concatenate([r.gap for r in results]),
            converged=np.concatenate([r.converged for r in results]),
            solver=results[0].solver,
            time=float(sum(r.time for r in results)),
            extra=extra,
        )


def objective_and_gap(C, Z, W, l1):
    """Primal objective and relative duality gap for each row.

    Works on numpy arrays or torch tensors (returned in the same kind).

    Parameters
    ----------
    C : ndarray or Tensor of shape (n_concepts, n_features)
        Dictionary with unit-norm rows.
    Z : ndarray or Tensor of shape (n_samples, n_features)
        Centred inputs.
    W : ndarray or Tensor of shape (n_samples, n_concepts)
        Nonnegative codes.
    l1 : float
        The penalty.

    Returns
    -------
    objective : ndarray or Tensor of shape (n_samples,)
        Primal objectives ``||z - C^T w||^2 + l1 * sum(w)``.
    relative_gap : ndarray or Tensor of shape (n_samples,)
        Duality gaps divided by the objectives (>= 0).
    """
    import torch

    is_numpy = not isinstance(Z, torch.Tensor)
    if is_numpy:
        C, Z, W = (torch.from_numpy(np.ascontiguousarray(a)) for a in (C, Z, W))
    R = Z - W @ C
    corr = R @ C.T
    objective, gap = objective_gap_from(R, corr, W, l1)
    rel = gap / objective.clamp_min(torch.finfo(objective.dtype).tiny)
    if is_numpy:
        return objective.numpy(), rel.numpy()
    return objective, rel


def objective_gap_from(R, corr, W, l1):
    """Objective and absolute gap from residuals ``R`` and ``corr = R @ C.T``.

    Parameters
    ----------
    R : Tensor of shape (n_samples, n_features)
        Residuals ``Z - W @ C``.
    corr : Tensor of shape (n_samples, n_concepts)
        ``R @ C.T``.
    W : Tensor of shape (n_samples, n_concepts)
        The codes.
    l1 : float
        The penalty.

    Returns
    -------
    objective : Tensor of shape (n_samples,)
        Primal objectives.
    gap : Tensor of shape (n_samples,)
        Absolute duality gaps (>= 0).
    """
    import torch

    half = l1 / 2.0
    m = corr.max(dim=1).values
    s = torch.where(m > half, half / m.clamp_min(torch.finfo(m.dtype).tiny), torch.ones_like(m))
    rr = (R * R).sum(dim=1)
    objective = rr + l1 * W.sum(dim=1)
    gap = (1.0 - s) ** 2 * rr + (W * (l1 - 2.0 * s[:, None] * corr)).sum(dim=1)
    return objective, gap.clamp_min(0.0)


class BaseSolver:
    """Base class: a public :meth:`solve` validates and batches, ``_solve`` computes.

    Parameters
    ----------
    tol : float, default=1e-6
        Target relative duality gap.
    max_iter : int, default=1000
        Iteration budget per sample.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; every solver
        shares this default, and :func:`~sksplice.solvers.get_solver` checks
        the choice against the devices its registry entry lists.
    batch_size : int, default=1024
        Samples solved at once; bounds the working memory.
    """

    name = "base"

    def __init__(self, *, tol=1e-6, max_iter=1000, device="auto", batch_size=1024):
        self.tol = tol
        self.max_iter = max_iter
        self.device = device
        self.batch_size = batch_size

    def __repr__(self):
        return (f"{type(self).__name__}(tol={self.tol}, max_iter={self.max_iter}, "
                f"device={self.device!r})")

    def __getstate__(self):
        state = self.__dict__.copy()
        # caches of prepared (device) tensors are rebuilt after unpickling
        state.pop("_cache", None)
        return state

    def solve(self, C, Z, l1, *, init=None, sparse_output=False, check_input=True):
        """Solve the nonnegative lasso for every row of ``Z``.

        Parameters
        ----------
        C : ndarray of shape (n_concepts, n_features)
            Dictionary with unit-norm rows.
        Z : ndarray of shape (n_samples, n_features)
            Centred, normalised inputs (float32 or float64; the codes follow).
        l1 : float
            Nonnegative penalty.
        init : ndarray of shape (n_samples, n_concepts), default=None
            Warm start; zeros when None.
        sparse_output : bool, default=False
            Return the codes as a ``scipy.sparse.csr_matrix`` (built from the
            working sets directly by the working-set solver, without a dense
            intermediate).
        check_input : bool, default=True
            Validate and batch the inputs; ``False`` (for callers that have
            validated them and cut batches of at most ``batch_size`` rows)
            hands them to the solver as they are.

        Returns
        -------
        result : SolverResult
            The codes and the per-sample diagnostics.
        """
        if not check_input:
            t0 = time.perf_counter()
            res = self._solve(C, Z, float(l1), init, sparse=bool(sparse_output))
            res.time = time.perf_counter() - t0
            self._warn_unconverged(res)
            return res
        Z = np.asarray(Z)
        if Z.dtype not in (np.float32, np.float64):
            Z = Z.astype(np.float64)
        C = np.asarray(C)
        if Z.ndim != 2 or C.ndim != 2 or Z.shape[1] != C.shape[1]:
            raise ValueError(
                f"Z of shape {Z.shape} does not match the dictionary of shape {C.shape}: "
                "both need n_features columns."
            )
        if not (np.isscalar(l1) and l1 >= 0):
            raise ValueError(f"l1 must be a nonnegative number; got {l1!r}.")
        if init is not None:
            init = np.asarray(init)
            if init.shape != (Z.shape[0], C.shape[0]):
                raise ValueError(
                    f"init has shape {init.shape}; expected (n_samples, n_concepts) = "
                    f"{(Z.shape[0], C.shape[0])}."
                )
        if Z.shape[0] == 0:
            import scipy.sparse as sp

            k = C.shape[0]
            empty = np.zeros(0)
            codes = np.zeros((0, k), dtype=Z.dtype)
            return SolverResult(
                sp.csr_matrix(codes) if sparse_output else codes, empty.astype(int), empty,
                empty, empty.astype(bool), self.name,
            )
        t0 = time.perf_counter()
        results = []
        for sl in batch_slices(Z.shape[0], self.batch_size):
            res = self._solve(C, Z[sl], float(l1), None if init is None else init[sl],
                              sparse=bool(sparse_output))
            if sparse_output and not _is_sparse(res.codes):
                import scipy.sparse as sp

                res.codes = sp.csr_matrix(res.codes)
            results.append(res)
        res = SolverResult.concatenate(results)
        res.time = time.perf_counter() - t0
        self._warn_unconverged(res)
        return res

    def _warn_unconverged(self, res):
        """A ``ConvergenceWarning`` naming the worst gap when a sample stopped early."""
        bad = ~np.asarray(res.converged, dtype=bool)
        if not bad.any():
            return
        worst = float(np.max(np.asarray(res.gap)[bad]))
        warnings.warn(
            f"{self.name}: {int(bad.sum())} of {bad.size} samples stopped at the iteration "
            f"budget max_iter={self.max_iter} (or a full working set) before tol={self.tol:g}, "
            f"with their best iterate (worst relative duality gap {worst:.3g}); increase "
            "max_iter or tol.",
            ConvergenceWarning, stacklevel=3,
        )

    def _solve(self, C, Z, l1, init, sparse=False):  # pragma: no cover - abstract
        raise NotImplementedError

    def solve_penalties(self, C, Z, l1, *, support=None):
        """Exact codes with a penalty per sample.

        The problem is homogeneous: ``w(z, l1_i) = (l1_i / l1_0) w(z l1_0 / l1_i,
        l1_0)``, so one :meth:`solve` at the median penalty ``l1_0`` of the
        rescaled inputs gives every sample's codes.  Solvers that take
        per-sample penalties directly override this method.

        Parameters
        ----------
        C : ndarray of shape (n_concepts, n_features)
            Dictionary with unit-norm rows.
        Z : ndarray of shape (n_samples, n_features)
            Centred inputs (float32 or float64).
        l1 : ndarray of shape (n_samples,)
            Positive penalty of each sample.
        support : ndarray of shape (n_samples, n_concepts), dtype=bool, default=None
            A guess of each support (a warm start; unused here).

        Returns
        -------
        result : SolverResult
            Codes and diagnostics, each sample at its own penalty.
        """
        l1 = np.asarray(l1, dtype=np.float64)
        l1_0 = float(np.median(l1))
        scale = (l1_0 / l1).astype(Z.dtype)
        r = self.solve(C, Z * scale[:, None], l1_0)
        r.codes = r.codes / scale[:, None]
        r.objective = r.objective / scale.astype(np.float64) ** 2
        return r

    # --- helpers for torch solvers -------------------------------------------------
    def _prepared(self, C, dtype):
        """Dictionary as a device tensor, cached across calls (keyed on identity)."""
        import torch

        device = resolve_device(self.device)
        key = (id(C), C.shape, str(device), str(dtype))
        cache = self.__dict__.setdefault("_cache", {})
        entry = cache.get("C")
        if entry is None or entry[0] != key or entry[1] is not C:
            Ct = to_tensor(C, device, dtype=getattr(torch, str(np.dtype(dtype))))
            cache.clear()
            cache["C"] = (key, C, Ct)
        return cache["C"][2], device, cache


def _is_sparse(W):
    import scipy.sparse as sp

    return sp.issparse(W)


def torch_result(name, W, n_iter, objective, gap, converged, extra=None):
    """Build a :class:`SolverResult` from torch tensors (converted at the edge).

    Parameters
    ----------
    name : str
        The solver's name.
    W : Tensor, ndarray or scipy.sparse matrix of shape (n_samples, n_concepts)
        The codes (sparse matrices are kept as they are).
    n_iter, objective, gap, converged : Tensor of shape (n_samples,)
        Per-sample diagnostics.
    extra : dict of Tensor, default=None
        Solver-specific diagnostics.

    Returns
    -------
    result : SolverResult
        The same, as numpy arrays.
    """
    return SolverResult(
        codes=W if _is_sparse(W) else to_numpy(W),
        n_iter=to_numpy(n_iter).astype(np.int64),
        objective=to_numpy(objective).astype(np.float64),
        gap=to_numpy(gap).astype(np.float64),
        converged=to_numpy(converged).astype(bool),
        solver=name,
        extra={k: to_numpy(v) for k, v in (extra or {}).items()},
    )
