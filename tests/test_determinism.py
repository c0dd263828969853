"""Same input, same codes: whatever the batch size or the batch's other samples.

Parametrised over the ``SOLVERS`` registry, so every registered solver is
checked.  Codes agree to the solver's tolerance (exactly for repeated runs
of one configuration).
"""

import numpy as np
import pytest
from conftest import coherent_problem

from sksplice import ConceptDictionary, SpliceTransformer
from sksplice.solvers import SOLVERS, get_solver, solve_n_nonzero

TOL = 1e-9


def _problem():
    names, E, X, _ = coherent_problem(n_concepts=250, n_features=32, n_samples=11,
                                      n_active=6, seed=11)
    C = ConceptDictionary(names, E).embeddings
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    return C, Z


def _solve(name, C, Z, batch_size):
    opts = dict(tol=TOL, device="cpu", batch_size=batch_size)
    if name in ("admm", "sklearn"):
        opts["max_iter"] = 200000
    return get_solver(name, **opts).solve(C, Z, 0.15)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_codes_do_not_depend_on_the_batch(name):
    C, Z = _problem()
    full = _solve(name, C, Z, batch_size=1024)
    again = _solve(name, C, Z, batch_size=1024)
    np.testing.assert_array_equal(full.codes, again.codes)  # deterministic
    for bs in (1, 4):
        res = _solve(name, C, Z, batch_size=bs)
        np.testing.assert_allclose(res.codes, full.codes, atol=1e-6)
        np.testing.assert_allclose(res.objective, full.objective, rtol=1e-8)
    # the same rows in another order, mixed with other samples
    perm = np.random.default_rng(0).permutation(len(Z))
    res = _solve(name, C, Z[perm], batch_size=1024)
    np.testing.assert_allclose(res.codes, full.codes[perm], atol=1e-6)


def test_active_set_is_batch_independent_to_rounding():
    # the exact solver: the same supports, codes equal to float64 rounding
    C, Z = _problem()
    full = _solve("active_set", C, Z, batch_size=1024)
    for bs in (1, 3):
        res = _solve("active_set", C, Z, batch_size=bs)
        np.testing.assert_array_equal(res.codes > 0, full.codes > 0)
        np.testing.assert_allclose(res.codes, full.codes, atol=1e-12)
        np.testing.assert_array_equal(res.n_iter, full.n_iter)


def test_n_nonzero_is_batch_independent():
    C, Z = _problem()
    full = solve_n_nonzero(C, Z, 4, device="cpu")
    small = solve_n_nonzero(C, Z, 4, device="cpu", batch_size=2)
    np.testing.assert_allclose(small.extra["l1"], full.extra["l1"], rtol=1e-12)
    np.testing.assert_allclose(small.codes, full.codes, atol=1e-12)


@pytest.mark.parametrize("solver", ["auto", "admm"])
def test_transformer_batch_size(solver):
    names, E, X, _ = coherent_problem(n_concepts=150, n_features=24, n_samples=9, seed=12)
    kw = dict(dictionary=ConceptDictionary(names, E), image_mean="fit", device="cpu",
              solver=solver, tol=TOL, sparse_output=False)
    if solver == "admm":
        kw["max_iter"] = 200000
    a = SpliceTransformer(batch_size=1024, **kw).fit_transform(X)
    b = SpliceTransformer(batch_size=2, **kw).fit_transform(X)
    np.testing.assert_allclose(a, b, atol=1e-6)
