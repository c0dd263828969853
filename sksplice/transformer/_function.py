"""``splice_encode``: the one sparse coder (``SpliceTransformer`` calls it).

As scikit-learn's ``SparseCoder`` calls ``sparse_encode``, the estimator
validates once and calls :func:`splice_encode` with ``check_input=False``;
this module holds the one batching loop: each batch is centred
(:func:`sksplice.core.center_embeddings`, numpy or torch, where the batch
lives) and handed to the solver, which receives ``z`` and validates nothing.
"""

from __future__ import annotations

import copy
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from .. import _defaults
from .._inputs import check_mean
from .._utils import progress_bar, to_numpy, user_stacklevel
from ..core import center_embeddings
from ..dictionary import ConceptDictionary, as_concept_dictionary
from ..exceptions import DegenerateInputWarning
from ..solvers import BaseSolver, SolverResult, get_solver, solve_n_nonzero
from ._checks import check_encode_input, on_accelerator

__all__ = ["splice_encode"]

#: ``verbose`` shows a progress bar from this many rows on
PROGRESS_MIN_ROWS = 1000


def splice_encode(X, dictionary, *, l1=_defaults.L1, image_mean=None, solver="auto",
                  device="auto", batch_size=_defaults.BATCH_SIZE, max_iter=None,
                  tol=_defaults.TOL, sparse_output=True, n_jobs=None,
                  return_diagnostics=False, n_nonzero=None, check_input=True, verbose=0):
    """Decompose embeddings into sparse concept codes: the exact SpLiCE weights.

    :class:`SpliceTransformer` calls this function (with
    ``check_input=False``) for every decomposition, so both share one code
    path.  Each row ``x`` becomes ``z = normalize(normalize(x) - image_mean)``
    and its codes solve ``min_{w >= 0} ||z - C^T w||^2 + l1 ||w||_1``.

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_samples, n_features)
        Embeddings.  A torch tensor on a GPU is centred there and handed to
        the solver without a copy to the host.
    dictionary : ConceptDictionary or (names, embeddings)
        The concept dictionary.
    l1 : float, default=0.25
        Sparsity penalty (reference-implementation scale).
    image_mean : ndarray of shape (n_features,), "fit" or None, default=None
        Modality mean subtracted before decomposition (``"fit"``: the mean
        of the normalised rows of ``X``).
    solver : str or BaseSolver, default="auto"
        A solver name (:func:`sksplice.list_solvers`) or a configured
        instance (used as it is: its own ``tol``, ``max_iter``, ``device``
        and ``batch_size`` apply).
    device : str, default="auto"
        Device of a solver given by name.
    batch_size : int, default=1024
        Rows decomposed at once by a solver given by name.
    max_iter : int, default=None
        Iteration budget of a solver given by name (``None``: its default).
    tol : float, default=1e-6
        Target relative duality gap of a solver given by name.
    sparse_output : bool, default=True
        Return a ``scipy.sparse.csr_matrix`` (else a dense ndarray).
    n_jobs : int, default=None
        Deprecated: pass ``solver=LassoSolver(n_jobs=...)``.
    return_diagnostics : bool, default=False
        Also return the solver's :class:`~sksplice.solvers.SolverResult`.
    n_nonzero : int, default=None
        Target sparsity per sample, instead of ``l1``.
    check_input : bool, default=True
        Validate ``X``, the dictionary, the mean and the parameters.
        ``False`` is for callers that have done so (``SpliceTransformer``):
        ``X`` must then be a finite float32/float64 array (or tensor) of the
        dictionary's width, ``dictionary`` a :class:`ConceptDictionary` (or
        its unit-norm embeddings), ``image_mean`` an array or None and
        ``solver`` an instance.
    verbose : int, default=0
        Show a progress bar while at least 1,000 rows are decomposed.

    Returns
    -------
    codes : scipy.sparse.csr_matrix or ndarray of shape (n_samples, n_concepts)
        The exact weights, dtype of ``X`` (float32 or float64; float16 and
        bfloat16 give float32).
    info : SolverResult
        Only when ``return_diagnostics=True``: per-sample iterations,
        objective, relative duality gap and convergence flags (``info.codes``
        is ``codes`` itself, not a copy).

    Warns
    -----
    DegenerateInputWarning
        Rows with no direction (every entry zero, or equal to the mean up to
        rounding): their codes are zero.
    ConvergenceWarning
        Samples that did not reach ``tol`` within ``max_iter``.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice import splice_encode
    >>> E = np.eye(4)
    >>> W = splice_encode(np.array([[2.0, 1.0, 0.0, 0.0]]), (["a", "b", "c", "d"], E),
    ...                   l1=0.1, device="cpu", sparse_output=False)
    >>> np.round(W, 3)
    array([[0.7  , 0.312, 0.   , 0.   ]])
    """
    if check_input:
        if n_jobs is not None:
            warnings.warn(
                "splice_encode(n_jobs=...) is deprecated and will be removed; pass "
                f"solver=LassoSolver(n_jobs={n_jobs!r}) instead.",
                FutureWarning, stacklevel=user_stacklevel(),
            )
        dictionary = as_concept_dictionary(dictionary)
        X = check_encode_input(X, dictionary.n_features, "the dictionary passed to "
                               "splice_encode")
        _check_number("l1", l1, numbers.Real, 0)
        if n_nonzero is not None:
            _check_number("n_nonzero", n_nonzero, numbers.Integral, 1)
        if isinstance(image_mean, str):
            if image_mean != "fit":
                raise ValueError(
                    f"image_mean={image_mean!r}: pass 'fit', an array of shape (n_features,) "
                    "or None."
                )
            image_mean = fit_mean(X)
        elif image_mean is not None:
            image_mean = check_mean(image_mean, dictionary.n_features)
        solver = resolve_solver(solver, tol=tol, max_iter=max_iter, device=device,
                                batch_size=batch_size, n_jobs=n_jobs, copy_instance=False)
    C = dictionary.embeddings if isinstance(dictionary, ConceptDictionary) else dictionary
    codes, info = _encode(X, C, l1, image_mean, solver, sparse_output, n_nonzero, verbose)
    return (codes, info) if return_diagnostics else codes


def fit_mean(X):
    """``image_mean="fit"``: the mean of the normalised rows of ``X`` (float64 ndarray).

    Parameters
    ----------
    X : ndarray or Tensor of shape (n_samples, n_features)
        Validated embeddings.

    Returns
    -------
    mean : ndarray of shape (n_features,), dtype float64
    """
    if on_accelerator(X):
        return center_embeddings(X.double(), None).mean(dim=0).cpu().numpy()
    return center_embeddings(np.asarray(X, dtype=np.float64), None).mean(axis=0)


def resolve_solver(solver, *, tol, max_iter, device, batch_size, n_jobs=None,
                   copy_instance=True):
    """A solver instance from a name or an instance (copied unless ``copy_instance=False``).

    Parameters
    ----------
    solver : str or BaseSolver
        A registered name (``"auto"`` included) or an instance.
    tol, max_iter, device, batch_size : object
        The options of a solver given by name.
    n_jobs : int, default=None
        joblib workers of the ``"sklearn"`` solver given by name.
    copy_instance : bool, default=True
        Return a deep copy of an instance (an estimator never mutates its
        parameters).

    Returns
    -------
    solver : BaseSolver
        Ready to solve.
    """
    if isinstance(solver, BaseSolver):
        return copy.deepcopy(solver) if copy_instance else solver
    if not isinstance(solver, str):
        raise TypeError(
            f"solver={solver!r} is neither a solver name nor a BaseSolver; pass one of "
            "sksplice.list_solvers() or an instance such as ActiveSetSolver()."
        )
    options = {"n_jobs": n_jobs} if solver == "sklearn" and n_jobs is not None else {}
    return get_solver(solver, tol=tol, max_iter=max_iter, device=str(device),
                      batch_size=batch_size, **options)


# ------------------------------------------------------------------ the loop
def _encode(X, C, l1, mean, solver, sparse_output, n_nonzero, verbose):
    """The one batching loop: centre each batch where it lives, solve it, assemble once."""
    n = X.shape[0]
    step = max(1, int(getattr(solver, "batch_size", None) or n or 1))
    show = bool(verbose) and n >= PROGRESS_MIN_ROWS
    if show:  # about 20 updates, whatever the batch size
        step = min(step, max(64, -(-n // 20)))
    on_device = on_accelerator(X)
    if on_device and mean is not None:
        import torch

        mean = torch.as_tensor(mean, dtype=X.dtype, device=X.device)  # once, not per batch
    elif not isinstance(X, np.ndarray):
        X = to_numpy(X)  # a CPU tensor: a view, no copy
    blocks, results, degenerate = [], [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with progress_bar(n, show, "decomposing", "row") as bar:
            for start in range(0, n, step):
                Z, none = center_embeddings(X[start:start + step], mean, return_degenerate=True)
                if n_nonzero is None:
                    res = solver.solve(C, Z, l1, sparse_output=sparse_output, check_input=False)
                else:
                    res = solve_n_nonzero(C, Z, n_nonzero, solver=solver)
                blocks.append(_as_output(res.codes, sparse_output, X.dtype))
                results.append(res)
                none = none.cpu().numpy() if on_device else none
                degenerate.append(start + np.flatnonzero(none))
                bar.update(Z.shape[0])
    codes = _stack(blocks, sparse_output, C.shape[0], _np_dtype(X.dtype))
    info = _diagnostics(results, codes, solver)
    _reissue(caught, np.concatenate(degenerate) if degenerate else np.zeros(0, int), info,
             solver)
    return codes, info


def _as_output(W, sparse_output, dtype):
    dtype = _np_dtype(dtype)
    if sparse_output:
        W = W if sp.issparse(W) else sp.csr_matrix(W)
        if not W.has_sorted_indices:
            W.sort_indices()
    else:
        W = W.toarray() if sp.issparse(W) else np.asarray(W)
    return W.astype(dtype, copy=False)


def _stack(blocks, sparse_output, k, dtype):
    if len(blocks) == 1:
        return blocks[0]
    if not blocks:
        return sp.csr_matrix((0, k), dtype=dtype) if sparse_output else np.zeros((0, k), dtype)
    return sp.vstack(blocks, format="csr") if sparse_output else np.concatenate(blocks)


def _diagnostics(results, codes, solver):
    """One :class:`SolverResult` whose ``codes`` are ``codes`` (diagnostics concatenated)."""
    name = getattr(solver, "name", type(solver).__name__)
    if len(results) == 1:
        info = results[0]
        info.codes = codes
        return info
    if not results:
        empty = np.zeros(0)
        return SolverResult(codes, empty.astype(np.int64), empty, empty, empty.astype(bool),
                            name)
    extra = {}
    for key in results[0].extra:
        values = [r.extra.get(key) for r in results]
        if all(isinstance(v, np.ndarray) for v in values):
            extra[key] = np.concatenate(values)
    return SolverResult(
        codes=codes,
        n_iter=np.concatenate([r.n_iter for r in results]),
        objective=np.concatenate([r.objective for r in results]),
        gap=np.concatenate([r.gap for r in results]),
        converged=np.concatenate([r.converged for r in results]),
        solver=results[0].solver, time=float(sum(r.time for r in results)), extra=extra,
    )


def _reissue(caught, degenerate, info, solver):
    """The loop's warnings, once each, at the user's call."""
    bad = ~np.asarray(info.converged, dtype=bool)
    if not (degenerate.size or caught or bad.any()):
        return
    level = user_stacklevel()
    if degenerate.size:
        rows = degenerate[:10].tolist()
        warnings.warn(
            f"{degenerate.size} input row(s) have no direction to decompose (rows {rows}"
            f"{' ...' if degenerate.size > 10 else ''}): every entry is zero, or the row "
            "equals the mean up to rounding. Their codes are zero; drop them, or check how "
            "they were produced.",
            DegenerateInputWarning, stacklevel=level,
        )
    for w in caught:  # the solvers' own, unless the summary below covers them
        if not (bad.any() and issubclass(w.category, ConvergenceWarning)):
            warnings.warn(w.message, w.category, stacklevel=level)
    if bad.any():
        worst = float(np.max(info.gap)) if len(info.gap) else float("nan")
        warnings.warn(
            f"{int(bad.sum())} of {len(bad)} samples did not reach "
            f"tol={getattr(solver, 'tol', float('nan')):g} within "
            f"max_iter={getattr(solver, 'max_iter', None)} (worst relative duality gap "
            f"{worst:.2e}); increase max_iter or tol.",
            ConvergenceWarning, stacklevel=level,
        )


def _check_number(name, value, kind, low):
    if isinstance(value, bool) or not isinstance(value, kind) or not value >= low:
        raise ValueError(f"{name} must be a number >= {low}; got {value!r}.")


def _np_dtype(dtype):
    if isinstance(dtype, np.dtype):
        return dtype
    return np.dtype(str(dtype).replace("torch.", ""))
