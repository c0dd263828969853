"""The verification fallback: scikit-learn's ``Lasso``, one sample at a time.

``Lasso`` minimises ``1/(2 n) ||y - X w||^2 + alpha ||w||_1`` with
``n = n_features`` rows here; multiplying by ``2 n`` shows that
``alpha = l1 / (2 n_features)`` solves SpLiCE's problem.  This is the
reference implementation's default (``solver='skl'``), kept as the exact
reference every other solver is tested against.
"""

from __future__ import annotations

import warnings

import numpy as np
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso

from ._base import BaseSolver, SolverResult, objective_and_gap

__all__ = ["LassoSolver"]

#: Refits of samples that ``Lasso`` stops above ``tol`` (each 100x tighter):
#: two take the rare unconverged sample from Lasso's scale to ours.
_REFITS = 2


class LassoSolver(BaseSolver):
    """Per-sample ``sklearn.linear_model.Lasso(positive=True)``, parallel with joblib.

    Parameters
    ----------
    tol : float, default=1e-6
        Target relative duality gap (passed to ``Lasso`` on its own scale).
    max_iter : int, default=10000
        Coordinate-descent epochs per sample.
    device : str, default="auto"
        Accepted for the common contract; this solver runs on the CPU (its
        registry entry lists only ``"cpu"``).
    n_jobs : int, default=None
        joblib workers over samples.
    batch_size : int, default=1024
        Samples handled per call of ``_solve``.

    Notes
    -----
    A sample counts as converged when its relative duality gap (computed
    here, in float64) is at most ``tol``.  ``Lasso``'s own stopping rule is
    on another scale; samples it stops above ``tol`` are refitted, warm
    started, with a 100x tighter ``Lasso`` tolerance (up to
    ``_REFITS`` times), within the same budget of ``max_iter`` epochs.
    """

    name = "sklearn"

    def __init__(self, *, tol=1e-6, max_iter=10000, device="auto", batch_size=1024, n_jobs=None):
        super().__init__(tol=tol, max_iter=max_iter, device=device, batch_size=batch_size)
        self.n_jobs = n_jobs

    def _solve(self, C, Z, l1, init, sparse=False):
        d = C.shape[1]
        A = np.asfortranarray(C.T, dtype=np.float64)
        C64 = np.asarray(C, dtype=np.float64)
        Z64 = np.asarray(Z, dtype=np.float64)
        # Lasso's gap is on the scale of P / 2 and compared with tol * ||z||^2;
        # the objective is at least ~0.1 for unit-norm z, hence the factor 0.05
        # (samples that still stop above tol are refitted below)
        sk_tol = float(self.tol) * 0.05
        W = None if init is None else np.asarray(init, dtype=np.float64)
        todo = np.arange(Z.shape[0])
        W_out = np.zeros((Z.shape[0], C.shape[0]))
        n_iter = np.zeros(Z.shape[0], dtype=np.int64)
        budget = max(1, int(self.max_iter))
        for _ in range(_REFITS + 1):
            # the refits share the sample's budget: max_iter epochs in all
            left = budget - int(n_iter[todo].max(initial=0))
            if left <= 0:
                break
            Wt, it = self._fit(A, Z64[todo], None if W is None else W[todo], l1 / (2.0 * d),
                               sk_tol, left)
            W_out[todo] = Wt
            n_iter[todo] += it
            obj, gap = objective_and_gap(C64, Z64[todo], Wt, l1)
            todo = todo[gap > self.tol]
            if todo.size == 0:
                break
            W, sk_tol = W_out, sk_tol / 100.0
        obj, gap = objective_and_gap(C64, Z64, W_out, l1)
        return SolverResult(
            codes=W_out.astype(Z.dtype, copy=False), n_iter=n_iter, objective=obj, gap=gap,
            converged=gap <= self.tol, solver=self.name,
        )

    def _fit(self, A, Z, init, alpha, sk_tol, max_iter):
        """Per-sample ``Lasso`` fits over joblib workers."""
        n = Z.shape[0]
        n_jobs = self.n_jobs if self.n_jobs is not None else 1
        n_chunks = max(1, min(n, 4 * abs(n_jobs) if n_jobs != -1 else 8))
        chunks = np.array_split(np.arange(n), n_chunks)
        parts = Parallel(n_jobs=n_jobs)(
            delayed(_lasso_chunk)(A, Z[ch], None if init is None else init[ch], alpha, sk_tol,
                                  int(max_iter))
            for ch in chunks
        )
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _lasso_chunk(A, Z, init, alpha, tol, max_iter):
    clf = Lasso(alpha=alpha, positive=True, fit_intercept=False, tol=tol,
                max_iter=max_iter, warm_start=init is not None)
    W = np.zeros((Z.shape[0], A.shape[1]))
    n_iter = np.zeros(Z.shape[0], dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in range(Z.shape[0]):
            if init is not None:
                clf.coef_ = init[i].copy()
            clf.fit(A, Z[i])
            W[i] = clf.coef_
            n_iter[i] = clf.n_iter_
    return W, n_iter
