"""Decomposition solvers: one contract (:class:`BaseSolver`), a registry by name.

Each solver computes, for every centred input row ``z``::

    argmin_{w >= 0} ||z - C^T w||^2 + l1 * ||w||_1

and returns a :class:`SolverResult` (codes plus per-sample iterations,
objective, relative duality gap and convergence flags).
"""

from __future__ import annotations

from .._utils import suggest
from ._base import BaseSolver, SolverResult, objective_and_gap
from .active_set import ActiveSetSolver
from .admm import ADMMSolver
from .lasso import LassoSolver
from .sparsity import solve_n_nonzero
from ._batched import solve_batched

__all__ = [
    "ActiveSetSolver",
    "ADMMSolver",
    "BaseSolver",
    "LassoSolver",
    "SolverResult",
    "SOLVERS",
    "get_solver",
    "list_solvers",
    "solve_batched",
    "objective_and_gap",
    "solve_n_nonzero",
]

#: Registry of solvers by name (data, as open_clip's model registry).
SOLVERS = {
    "active_set": {
        "class": ActiveSetSolver,
        "devices": ("cpu", "cuda"),
        "description": "exact working-set solver: batched KKT checks, exact small subproblems",
    },
    "admm": {
        "class": ADMMSolver,
        "devices": ("cpu", "cuda"),
        "description": "batched ADMM in torch with a d x d Woodbury factorisation",
    },
    "sklearn": {
        "class": LassoSolver,
        "devices": ("cpu",),
        "description": "per-sample sklearn Lasso(positive=True): the exact reference",
    },
}


def list_solvers():
    """Names of the available solvers (``"auto"`` included).

    Returns
    -------
    names : list of str
    """
    return ["auto", *SOLVERS]


def _auto_solver(device):
    """The solver ``solver="auto"`` picks for a resolved torch device.

    ``"active_set"`` on every device: it is exact and, per batch, costs a
    few ``(batch x d) @ (d x n_concepts)`` matmuls (one per round, 2-3
    rounds) where ADMM needs two per iteration and hundreds of iterations.
    Measured with ``benchmarks/bench_solvers.py`` (CPU) and
    ``benchmarks/bench_gpu.py`` (CUDA); see ``docs/benchmarks.md``.

    Parameters
    ----------
    device : torch.device
        The resolved device.

    Returns
    -------
    name : str
        A key of :data:`SOLVERS`.
    """
    if device.type in ("cpu", "cuda"):
        return "active_set"
    return "admm"  # pragma: no cover - resolve_device only yields cpu/cuda


def get_solver(name, *, tol=1e-6, max_iter=None, device="auto", batch_size=1024,
               n_jobs=None, **options):
    """Instantiate a solver by name.

    Parameters
    ----------
    name : str
        A key of :data:`SOLVERS`, or ``"auto"`` (the fastest exact solver for
        ``device``).
    tol, max_iter, device, batch_size, n_jobs
        Common solver options (``max_iter=None`` keeps the solver's default).
    **options
        Solver-specific options (e.g. ``rho`` for ADMM).

    Returns
    -------
    solver : BaseSolver
    """
    from .._utils import resolve_device

    if name == "auto":
        name = _auto_solver(resolve_device(device))
    if name not in SOLVERS:
        raise ValueError(
            f"unknown solver {name!r}; choose one of {list_solvers()}.{suggest(name, SOLVERS)}"
        )
    cls = SOLVERS[name]["class"]
    kwargs = dict(tol=tol, device=device, batch_size=batch_size, **options)
    if max_iter is not None:
        kwargs["max_iter"] = max_iter
    if name == "sklearn":
        kwargs["n_jobs"] = n_jobs
    return cls(**kwargs)
