"""The exact working-set solver against scikit-learn's Lasso, KKT and edge cases."""

import numpy as np
import pytest
import torch
from conftest import coherent_problem
from scipy.optimize import nnls

from sksplice import ConceptDictionary
from sksplice.solvers import ActiveSetSolver, LassoSolver, get_solver, objective_and_gap
from sksplice.solvers import _kernels as kernels
from sksplice.solvers import _subproblems as subproblems


def _problem(seed=0, **kw):
    names, E, X, W = coherent_problem(seed=seed, **kw)
    C = ConceptDictionary(names, E).embeddings
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    return C, Z


def _reference(C, Z, l1):
    return LassoSolver(tol=1e-10, max_iter=200000).solve(C, Z, l1)


def _kkt_violation(C, Z, W, l1):
    """Largest violation of the KKT conditions, per sample."""
    corr = (Z - W @ C) @ C.T
    outside = np.max(corr - l1 / 2, axis=1)
    on_support = np.max(np.where(W > 0, np.abs(corr - l1 / 2), 0.0), axis=1)
    return np.maximum(outside, on_support)


@pytest.mark.parametrize("l1", [0.05, 0.25, 0.6])
@pytest.mark.parametrize("shape", [(400, 48, 8), (1500, 64, 12)])
def test_agrees_with_sklearn_on_coherent_dictionaries(l1, shape):
    k, d, n_active = shape
    C, Z = _problem(n_concepts=k, n_features=d, n_samples=16, n_active=n_active,
                    noise=0.05, coherence=2.5, seed=k)
    ref = _reference(C, Z, l1)
    res = ActiveSetSolver(device="cpu").solve(C, Z, l1)
    assert res.converged.all() and np.all(res.gap <= 1e-6)
    np.testing.assert_allclose(res.objective, ref.objective, rtol=1e-6)
    assert np.all(res.objective <= ref.objective * (1 + 1e-9))
    # the working set grew over rounds on these coherent problems
    assert res.n_iter.max() >= 2


def test_agrees_with_sklearn_on_real_lvis(lvis, imagenet_text):
    names, E = lvis
    cd = ConceptDictionary(names, E)
    X = imagenet_text[1][::40]  # 25 ImageNet classes, centred like text
    Z = X / np.linalg.norm(X, axis=1, keepdims=True) - cd.text_mean
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    ref = _reference(cd.embeddings, Z, 0.25)
    res = ActiveSetSolver(device="cpu").solve(cd.embeddings, Z, 0.25)
    assert res.converged.all()
    np.testing.assert_allclose(res.objective, ref.objective, rtol=1e-6)
    # exact: the KKT conditions hold to rounding, not just to the tolerance
    assert _kkt_violation(cd.embeddings, Z, res.codes, 0.25).max() < 1e-9
    assert np.all(res.gap < 1e-10)


def test_kkt_and_reported_diagnostics():
    C, Z = _problem(n_concepts=600, n_features=40, n_samples=10, seed=2)
    res = ActiveSetSolver(device="cpu", tol=1e-8).solve(C, Z, 0.2)
    assert _kkt_violation(C, Z, res.codes, 0.2).max() < 1e-9
    obj, gap = objective_and_gap(C, Z, res.codes, 0.2)
    np.testing.assert_allclose(res.objective, obj, rtol=1e-12)
    np.testing.assert_allclose(res.gap, gap, atol=1e-12)
    assert res.solver == "active_set"
    assert np.all(res.n_iter >= 1)


def test_huge_penalty_gives_zero_codes_in_one_round():
    C, Z = _problem(n_concepts=200, n_features=20, n_samples=5)
    res = ActiveSetSolver(device="cpu").solve(C, Z, 50.0)
    assert np.all(res.codes == 0)
    assert np.all(res.gap == 0) and res.converged.all()
    assert np.all(res.n_iter == 1)
    np.testing.assert_allclose(res.objective, 1.0)


def test_zero_input_row():
    C, Z = _problem(n_concepts=200, n_features=20, n_samples=4)
    Z[2] = 0.0
    res = ActiveSetSolver(device="cpu").solve(C, Z, 0.25)
    assert np.all(res.codes[2] == 0)
    assert res.objective[2] == 0 and res.gap[2] == 0 and res.converged[2]
    assert np.all(np.isfinite(res.codes))


def test_zero_penalty_is_nonnegative_least_squares():
    # fewer concepts than features: the NNLS solution is unique
    rng = np.random.default_rng(0)
    C, _ = _problem(n_concepts=30, n_features=48, n_samples=1)
    Z = rng.normal(size=(6, 48)) + 3 * np.abs(rng.normal(size=(6, 30))) @ C
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    res = ActiveSetSolver(device="cpu", working_set=4, max_add=4).solve(C, Z, 0.0)
    assert res.converged.all()
    for i, z in enumerate(Z):
        w, rnorm = nnls(C.T, z)
        np.testing.assert_allclose(res.codes[i], w, atol=1e-9)
        assert res.objective[i] == pytest.approx(rnorm**2, rel=1e-9)


def test_zero_penalty_with_more_concepts_than_features():
    # z lies in the cone of the concepts: the optimum is 0, the relative gap is
    # uninformative and convergence is decided by the KKT conditions
    C, Z = _problem(n_concepts=300, n_features=24, n_samples=5)
    res = ActiveSetSolver(device="cpu").solve(C, Z, 0.0)
    assert res.converged.all()
    assert np.all(res.objective < 1e-20)
    assert _kkt_violation(C, Z, res.codes, 0.0).max() < 1e-12


def test_duplicated_concepts_use_the_fallback(monkeypatch):
    # identical rows make every Gram block holding both of them singular
    C, Z = _problem(n_concepts=150, n_features=32, n_samples=6, seed=4)
    corr = Z @ C.T
    top = np.argmax(corr, axis=1)
    C = np.vstack([C, C[top]])
    ref = _reference(C, Z, 0.1)
    calls = []
    original = kernels.fallback_subproblem

    def spy(*args):
        calls.append(len(args[1]))
        return original(*args)

    monkeypatch.setattr(kernels, "fallback_subproblem", spy)
    res = ActiveSetSolver(device="cpu", working_set=200).solve(C, Z, 0.1)
    assert calls, "the singular subproblems went to the fallback"
    assert res.converged.all()
    np.testing.assert_allclose(res.objective, ref.objective, rtol=1e-6)


def test_float32_inputs_and_mixed_precision():
    C, Z = _problem(n_concepts=500, n_features=48, n_samples=10, seed=3)
    ref = ActiveSetSolver(device="cpu", tol=1e-10, mixed_precision=False).solve(C, Z, 0.25)
    mixed = ActiveSetSolver(device="cpu", tol=1e-10).solve(C, Z, 0.25)
    # every decision is the float64 one: the same codes to rounding
    np.testing.assert_allclose(mixed.codes, ref.codes, atol=1e-12)
    res32 = ActiveSetSolver(device="cpu").solve(C, Z.astype(np.float32), 0.25)
    assert res32.codes.dtype == np.float32
    assert res32.converged.all()
    np.testing.assert_allclose(res32.objective, ref.objective, rtol=1e-5)
    plain32 = ActiveSetSolver(device="cpu", mixed_precision=False).solve(
        C, Z.astype(np.float32), 0.25)
    np.testing.assert_allclose(plain32.objective, ref.objective, rtol=1e-5)


def test_tiny_working_sets_need_more_rounds_and_stop_at_max_iter():
    C, Z = _problem(n_concepts=400, n_features=48, n_samples=8, n_active=8, seed=6)
    ref = ActiveSetSolver(device="cpu").solve(C, Z, 0.05)
    small = ActiveSetSolver(device="cpu", working_set=1, max_add=1).solve(C, Z, 0.05)
    assert small.converged.all()
    np.testing.assert_allclose(small.objective, ref.objective, rtol=1e-9)
    assert small.n_iter.min() > ref.n_iter.max()
    capped = ActiveSetSolver(device="cpu", working_set=1, max_add=1, max_iter=2).solve(C, Z, 0.05)
    assert np.all(capped.n_iter <= 2)
    assert not capped.converged.any()
    assert np.all(capped.gap > 1e-6)


def test_warm_start_from_the_solution_needs_one_round():
    C, Z = _problem(n_concepts=400, n_features=48, n_samples=8, seed=7)
    cold = ActiveSetSolver(device="cpu", working_set=4, max_add=4).solve(C, Z, 0.1)
    warm = ActiveSetSolver(device="cpu", working_set=4, max_add=4).solve(
        C, Z, 0.1, init=cold.codes)
    assert np.all(warm.n_iter == 1)
    np.testing.assert_allclose(warm.codes, cold.codes, atol=1e-12)


@pytest.mark.parametrize("n_full", [0, 8])
def test_block_principal_pivoting_matches_nnls(monkeypatch, n_full):
    # random strictly convex QPs min 1/2 x'Gx - q'x, x >= 0, with padding;
    # n_full=0 exercises the least-index (single exchange) rule alone
    monkeypatch.setattr(subproblems, "BPP_FULL", n_full)
    rng = np.random.default_rng(n_full)
    n, m, d = 40, 12, 20
    A = rng.normal(size=(n, d, m))
    b = rng.normal(size=(n, d))
    G = np.einsum("ndi,ndj->nij", A, A)
    q = np.einsum("ndi,nd->ni", A, b)
    valid = np.ones((n, m), dtype=bool)
    valid[:, -3:] = rng.random((n, 3)) < 0.5
    for i in range(n):
        G[i][~valid[i], :] = 0
        G[i][:, ~valid[i]] = 0
        G[i][~valid[i], ~valid[i]] = 1
        q[i][~valid[i]] = 0
    x, failed = subproblems.nnqp_bpp(
        torch.from_numpy(G), torch.from_numpy(q), torch.from_numpy(valid),
        torch.zeros((n, m), dtype=torch.bool))
    assert not failed.any()
    for i in range(n):
        cols = np.flatnonzero(valid[i])
        w, _ = nnls(A[i][:, cols], b[i])
        np.testing.assert_allclose(x[i, cols].numpy(), w, atol=1e-9)
        assert np.all(x[i, ~valid[i]].numpy() == 0)


def test_registered_and_chosen_by_auto():
    from sksplice.solvers import SOLVERS
    from sksplice.solvers._registry import auto_solver

    assert SOLVERS["active_set"]["class"] is ActiveSetSolver
    assert auto_solver(torch.device("cpu")) == "active_set"
    assert isinstance(get_solver("auto", device="cpu"), ActiveSetSolver)
    solver = get_solver("active_set", device="cpu", working_set=8, max_add=4, max_iter=7)
    assert (solver.working_set, solver.max_add, solver.max_iter) == (8, 4, 7)


def test_never_forms_a_concepts_by_concepts_matrix():
    # outside the Gram budget (here 0 MB) nothing n_concepts x n_concepts is formed
    from torch.profiler import ProfilerActivity, profile

    C, Z = _problem(n_concepts=700, n_features=32, n_samples=6)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        ActiveSetSolver(device="cpu", gram_budget_mb=0).solve(C, Z, 0.25)
    shapes = [tuple(s) for e in prof.events() for s in e.input_shapes if s]
    assert any(700 in s for s in shapes)  # the profiler saw the dictionary
    assert not any(s.count(700) >= 2 for s in shapes)


def test_admm_polish_and_screening_are_exact():
    from sksplice.solvers import ADMMSolver

    C, Z = _problem(n_concepts=500, n_features=40, n_samples=8, seed=8)
    ref = ActiveSetSolver(device="cpu", tol=1e-10).solve(C, Z, 0.2)
    plain = ADMMSolver(device="cpu", tol=1e-6).solve(C, Z, 0.2)
    polished = ADMMSolver(device="cpu", tol=1e-9, polish=True, warm_start="screen").solve(
        C, Z, 0.2)
    assert polished.converged.all() and np.all(polished.gap <= 1e-9)
    np.testing.assert_allclose(polished.objective, ref.objective, rtol=1e-9)
    assert polished.extra["polish_rounds"].min() >= 1
    # the polished run needs far fewer ADMM iterations than plain ADMM
    admm_iters = polished.n_iter - polished.extra["polish_rounds"]
    assert np.median(admm_iters) < np.median(plain.n_iter)
    with pytest.raises(ValueError, match="warm_start='bad'"):
        ADMMSolver(device="cpu", warm_start="bad").solve(C, Z, 0.2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu():
    C, Z = _problem(n_concepts=1500, n_features=64, n_samples=32, seed=9)
    cpu = ActiveSetSolver(device="cpu").solve(C, Z, 0.25)
    gpu = ActiveSetSolver(device="cuda").solve(C, Z, 0.25)
    np.testing.assert_allclose(gpu.objective, cpu.objective, rtol=1e-9)
    np.testing.assert_allclose(gpu.codes, cpu.codes, atol=1e-8)
