"""The solver registry: plain data looked up by name (as open_clip's model registry).

Each entry names the class, the torch devices it runs on (checked by
:func:`get_solver`, and used by ``solver="auto"``) and a one-line description.
"""

from __future__ import annotations

from .. import _defaults
from .._utils import resolve_device, suggest
from .active_set import ActiveSetSolver
from .admm import ADMMSolver
from .lasso import LassoSolver

__all__ = ["SOLVERS", "auto_solver", "get_solver", "list_solvers"]

#: Registry of solvers by name.
SOLVERS = {
    "active_set": {
        "class": ActiveSetSolver,
        "devices": ("cpu", "cuda"),
        "description": "exact working-set solver: batched KKT checks, exact small subproblems",
    },
    "admm": {
        "class": ADMMSolver,
        "devices": ("cpu", "cuda"),
        "description": "batched ADMM (d x d Woodbury factorisation), screened and polished "
                       "to the exact codes by default",
    },
    "sklearn": {
        "class": LassoSolver,
        "devices": ("cpu",),
        "description": "per-sample sklearn Lasso(positive=True): the exact reference",
    },
}


if tuple(SOLVERS) != _defaults.SOLVER_NAMES:  # pragma: no cover - a registry edit's reminder
    raise ImportError(f"sksplice._defaults.SOLVER_NAMES {_defaults.SOLVER_NAMES} must list the "
                      f"registry's solvers {tuple(SOLVERS)} (the command line reads it).")


def list_solvers():
    """Names of the available solvers (``"auto"`` included).

    Returns
    -------
    names : list of str
        ``"auto"`` followed by the keys of :data:`SOLVERS`.
    """
    return ["auto", *SOLVERS]


def auto_solver(device):
    """The solver ``solver="auto"`` picks for a resolved torch device.

    The fastest exact solver whose registry entry lists the device:
    ``"active_set"`` on the CPU and on CUDA.  Per batch it costs a few
    ``(batch x d) @ (d x n_concepts)`` matmuls (one per round, 2-3 rounds)
    where ADMM needs two per iteration and hundreds of iterations (measured
    with ``benchmarks/bench_solvers.py`` and ``benchmarks/bench_gpu.py``;
    see ``docs/benchmarks.md``).

    Parameters
    ----------
    device : torch.device
        The resolved device.

    Returns
    -------
    name : str
        A key of :data:`SOLVERS`.
    """
    for name in ("active_set", "admm", "sklearn"):
        if device.type in SOLVERS[name]["devices"]:
            return name
    raise ValueError(f"no registered solver runs on device {str(device)!r}; use device='cpu'.")


def get_solver(name, *, tol=_defaults.TOL, max_iter=None, device="auto",
               batch_size=_defaults.BATCH_SIZE, n_jobs=None, **options):
    """Instantiate a solver by name.

    Parameters
    ----------
    name : str
        A key of :data:`SOLVERS`, or ``"auto"`` (the fastest exact solver for
        ``device``).
    tol : float, default=1e-6
        Target relative duality gap.
    max_iter : int, default=None
        Iteration (or round) budget per sample; ``None`` keeps the solver's
        default.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; it must be one of
        the devices the solver's registry entry lists.
    batch_size : int, default=1024
        Samples solved at once.
    n_jobs : int, default=None
        joblib workers of the ``"sklearn"`` solver (ignored by the others).
    **options
        Solver-specific options (e.g. ``rho`` for ADMM).

    Returns
    -------
    solver : BaseSolver
        The configured solver.
    """
    resolved = resolve_device(device)
    if name == "auto":
        name = auto_solver(resolved)
    if name not in SOLVERS:
        raise ValueError(
            f"unknown solver {name!r}; choose one of {list_solvers()}.{suggest(name, SOLVERS)}"
        )
    entry = SOLVERS[name]
    if str(device) == "auto" and resolved.type not in entry["devices"]:
        # "auto" means the best device this solver runs on, not an error on a GPU machine
        device, resolved = "cpu", resolve_device("cpu")
    if resolved.type not in entry["devices"]:
        raise ValueError(
            f"solver {name!r} runs on {' or '.join(entry['devices'])}, not on device "
            f"{device!r}; use device='cpu' or one of the solvers "
            f"{[n for n, e in SOLVERS.items() if resolved.type in e['devices']]}."
        )
    cls = entry["class"]
    kwargs = dict(tol=tol, device=str(resolved), batch_size=batch_size, **options)
    if max_iter is not None:
        kwargs["max_iter"] = max_iter
    if name == "sklearn":
        kwargs["n_jobs"] = n_jobs
    return cls(**kwargs)
