"""Decomposition solvers: one contract (:class:`BaseSolver`), a registry by name.

Each solver computes, for every centred input row ``z``::

    argmin_{w >= 0} ||z - C^T w||^2 + l1 * ||w||_1

and returns a :class:`SolverResult` (codes plus per-sample iterations,
objective, relative duality gap and convergence flags).

Layout: ``_base`` (the contract and the duality gap), the working-set
solver's two kernels -- ``_cpu`` (numba, every CPU solve) and ``_kernels``
with ``_subproblems`` (batched torch, for devices) -- one module per solver,
``sparsity`` (target sparsity), ``_registry`` (the registry and
:func:`get_solver`) and ``_batched`` (the deprecated :func:`solve_batched`).
"""

from __future__ import annotations

from ._base import BaseSolver, SolverResult, objective_and_gap
from ._batched import solve_batched
from ._registry import SOLVERS, get_solver, list_solvers
from .active_set import ActiveSetSolver
from .admm import ADMMSolver
from .lasso import LassoSolver
from .sparsity import solve_n_nonzero

__all__ = [
    "SOLVERS",
    "ADMMSolver",
    "ActiveSetSolver",
    "BaseSolver",
    "LassoSolver",
    "SolverResult",
    "get_solver",
    "list_solvers",
    "objective_and_gap",
    "solve_batched",
    "solve_n_nonzero",
]
