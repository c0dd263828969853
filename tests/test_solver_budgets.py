"""Every solver path stops within its budget, for every valid ``l1`` and ``n_nonzero``.

Property-based (hypothesis, a bounded example budget) over extreme penalties
(``0``, a denormal, ``1e-300``, ``1e-12``), dictionary shapes with more or
fewer concepts than features (and duplicated concepts), and target
sparsities up to the number of concepts: each solve returns finite,
nonnegative codes within ``max_iter``, and a sample that stopped before
``tol`` is named by a ``ConvergenceWarning`` with the worst gap.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

from sksplice.solvers import ActiveSetSolver, ADMMSolver, LassoSolver, solve_n_nonzero

#: Penalties at and near the edge of the valid range, and ordinary ones.
EXTREME_L1 = st.sampled_from([0.0, 5e-324, 1e-300, 1e-12, 1e-6]) | st.floats(0.0, 1.5)
BUDGET = settings(max_examples=20, deadline=None)


def _problem(k, d, n, seed, duplicate):
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(k, d))
    if duplicate and k >= 2:
        C[-1] = C[0]
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    Z = rng.normal(size=(n, d))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    return C, Z


def _solvers(max_iter):
    return {
        "active_set": ActiveSetSolver(device="cpu", max_iter=max_iter, working_set=2,
                                      max_add=1),
        "active_set_torch": ActiveSetSolver(device="cpu", max_iter=max_iter, working_set=2,
                                            max_add=1, compiled=False),
        "admm": ADMMSolver(device="cpu", max_iter=10 * max_iter, check_every=3),
        "sklearn": LassoSolver(max_iter=10 * max_iter, tol=1e-12),
    }


def _check_result(name, solver, res, caught, n):
    codes = np.asarray(res.codes)
    assert codes.shape[0] == n and np.all(np.isfinite(codes)) and np.all(codes >= 0)
    iters = res.n_iter
    if name == "admm":  # ADMM iterations, then at most 100 polishing rounds
        iters = res.n_iter - res.extra["polish_rounds"]
        assert np.all(res.extra["polish_rounds"] <= 100)
    assert np.all(iters <= solver.max_iter), (name, iters)
    bad = ~res.converged
    msgs = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    if bad.any():
        worst = f"{float(np.max(res.gap[bad])):.3g}"
        assert any(worst in m and f"max_iter={solver.max_iter}" in m for m in msgs), (name, msgs)
    else:
        assert not msgs, (name, msgs)


@BUDGET
@given(l1=EXTREME_L1, k=st.integers(1, 40), d=st.integers(2, 12), n=st.integers(1, 3),
       max_iter=st.integers(1, 6), seed=st.integers(0, 2**16), duplicate=st.booleans())
def test_every_solver_stops_within_max_iter_and_warns(l1, k, d, n, max_iter, seed, duplicate):
    C, Z = _problem(k, d, n, seed, duplicate)
    for name, solver in _solvers(max_iter).items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = solver.solve(C, Z, l1)
        _check_result(name, solver, res, caught, n)


@BUDGET
@given(k=st.integers(2, 30), d=st.integers(2, 10), data=st.data(),
       seed=st.integers(0, 2**16), duplicate=st.booleans())
def test_n_nonzero_gives_that_many_concepts_or_says_which_rows_do_not(k, d, data, seed,
                                                                      duplicate):
    n_nonzero = data.draw(st.integers(1, k))
    C, Z = _problem(k, d, 3, seed, duplicate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = solve_n_nonzero(C, Z, n_nonzero, device="cpu")
    counts = np.count_nonzero(res.codes > 0, axis=1)
    assert np.all(res.extra["path_steps"] <= 4 * n_nonzero + 20)
    off = np.flatnonzero(counts != n_nonzero)
    msgs = [str(w.message) for w in caught if issubclass(w.category, UserWarning)
            and f"n_nonzero={n_nonzero}:" in str(w.message)]
    if off.size:
        assert msgs and all(f"row {i}: {counts[i]}" in msgs[0] for i in off[:10])
    else:
        assert not msgs
    with pytest.raises(ValueError, match=f"n_nonzero={k + 1} exceeds the number of concepts"):
        solve_n_nonzero(C, Z, k + 1, device="cpu")


def test_more_concepts_than_features_cannot_reach_n_nonzero_and_say_so():
    # at most n_features concepts: 9 of 30 concepts in 6 dimensions is out of reach
    C, Z = _problem(30, 6, 2, 0, False)
    with pytest.warns(UserWarning, match=r"n_nonzero=9: 2 of 2 rows .*row 0: [0-6]\b"):
        res = solve_n_nonzero(C, Z, 9, device="cpu")
    assert np.all(np.count_nonzero(res.codes > 0, axis=1) <= 6)


def test_lasso_refits_share_the_budget():
    C, Z = _problem(40, 8, 2, 1, False)
    with pytest.warns(ConvergenceWarning, match="max_iter=5"):
        res = LassoSolver(max_iter=5, tol=1e-14).solve(C, Z, 1e-3)
    assert np.all(res.n_iter <= 5)
