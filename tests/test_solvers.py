"""Every registered solver against the exact references (skglm's pattern).

Parametrised over the ``SOLVERS`` registry, so a newly registered solver is
checked here automatically.
"""

import itertools

import numpy as np
import pytest
import torch
from conftest import coherent_problem

from sksplice import ConceptDictionary
from sksplice.solvers import (
    SOLVERS,
    ADMMSolver,
    LassoSolver,
    get_solver,
    objective_and_gap,
)

ALL_SOLVERS = sorted(SOLVERS)
FAST_SOLVERS = [s for s in ALL_SOLVERS if s != "sklearn"]


def exact_solution(C, z, l1):
    """Brute-force nonnegative lasso for a tiny dictionary: enumerate supports.

    On a support S the optimum solves (A_S^T A_S) w_S = A_S^T z - l1/2; it is
    the global optimum iff w_S > 0 and no other concept violates KKT.
    """
    k = C.shape[0]
    A = C.T
    best = (float(z @ z), np.zeros(k))
    for size in range(1, k + 1):
        for S in itertools.combinations(range(k), size):
            S = list(S)
            AS = A[:, S]
            try:
                wS = np.linalg.solve(AS.T @ AS, AS.T @ z - l1 / 2)
            except np.linalg.LinAlgError:
                continue
            if np.any(wS <= 0):
                continue
            w = np.zeros(k)
            w[S] = wS
            r = z - A @ w
            if np.all(A.T @ r <= l1 / 2 + 1e-12):
                obj = float(r @ r + l1 * w.sum())
                if obj < best[0]:
                    best = (obj, w)
    return best


def _problem(seed=0, **kw):
    names, E, X, W = coherent_problem(seed=seed, **kw)
    C = ConceptDictionary(names, E).embeddings
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    return C, Z, W


def _solver(name, **kw):
    opts = dict(tol=1e-10, device="cpu")
    opts.update(kw)
    if name == "admm":
        opts.setdefault("max_iter", 100000)
    if name == "sklearn":
        opts.setdefault("max_iter", 200000)
    return get_solver(name, **opts)


# ----------------------------------------------------------- duality gap
def test_gap_matches_definition_and_is_nonnegative():
    rng = np.random.default_rng(0)
    C, Z, _ = _problem(n_concepts=40, n_features=12, n_samples=5)
    l1 = 0.3
    for _ in range(20):
        W = np.maximum(rng.normal(size=(5, 40)) * 0.2, 0)
        obj, rel = objective_and_gap(C, Z, W, l1)
        for i in range(5):
            r = Z[i] - C.T @ W[i]
            m = (C @ r).max()
            s = min(1.0, (l1 / 2) / m) if m > 0 else 1.0
            theta = s * r
            f = 0.5 * r @ r + l1 / 2 * W[i].sum()
            dual = 0.5 * Z[i] @ Z[i] - 0.5 * (Z[i] - theta) @ (Z[i] - theta)
            assert (C @ theta).max() <= l1 / 2 + 1e-12  # dual feasible
            assert obj[i] == pytest.approx(2 * f)
            assert rel[i] * obj[i] == pytest.approx(2 * (f - dual), abs=1e-12)
            assert rel[i] >= 0


def test_gap_is_zero_at_exact_optimum():
    C, Z, _ = _problem(n_concepts=8, n_features=6, n_samples=4, n_active=2)
    for l1 in (0.05, 0.3):
        for z in Z:
            obj, w = exact_solution(C, z, l1)
            o, g = objective_and_gap(C, z[None], w[None], l1)
            assert o[0] == pytest.approx(obj)
            assert g[0] < 1e-12


# ------------------------------------------------------------ agreement
@pytest.mark.parametrize("name", ALL_SOLVERS)
@pytest.mark.parametrize("l1", [0.02, 0.25, 1.0])
def test_matches_brute_force_on_tiny_problems(name, l1):
    C, Z, _ = _problem(n_concepts=8, n_features=6, n_samples=6, n_active=2, seed=3)
    res = _solver(name).solve(C, Z, l1)
    for i, z in enumerate(Z):
        obj, w = exact_solution(C, z, l1)
        assert res.objective[i] == pytest.approx(obj, rel=1e-7)
        np.testing.assert_allclose(res.codes[i], w, atol=1e-5)


@pytest.mark.parametrize("name", FAST_SOLVERS)
@pytest.mark.parametrize("l1", [0.05, 0.25])
def test_agrees_with_sklearn_lasso_synthetic(name, l1):
    C, Z, _ = _problem(n_concepts=200, n_features=32, n_samples=12)
    ref = _solver("sklearn").solve(C, Z, l1)
    res = _solver(name).solve(C, Z, l1)
    assert res.converged.all()
    assert np.all(res.gap <= 1e-8)
    np.testing.assert_allclose(res.objective, ref.objective, rtol=1e-6)
    assert np.all(res.objective <= ref.objective * (1 + 1e-6))


@pytest.mark.parametrize("name", FAST_SOLVERS)
def test_agrees_with_sklearn_lasso_real(name, lvis, imagenet_text):
    names, E = lvis
    C = ConceptDictionary(names, E)
    Z = imagenet_text[1][::50]  # 20 ImageNet classes
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True) - C.text_mean
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    ref = _solver("sklearn").solve(C.embeddings, Z, 0.25)
    res = _solver(name).solve(C.embeddings, Z, 0.25)
    assert res.converged.all()
    np.testing.assert_allclose(res.objective, ref.objective, rtol=1e-6)


@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_support_recovery(name):
    # well-separated synthetic truth: the planted concepts are recovered
    C, Z, W = _problem(n_concepts=120, n_features=64, n_samples=10, n_active=3,
                       noise=0.002, coherence=0.5, seed=5)
    res = _solver(name, tol=1e-8).solve(C, Z, 0.01)
    for i in range(len(Z)):
        truth = set(np.flatnonzero(W[i]))
        top = set(np.argsort(-res.codes[i])[: len(truth)])
        assert top == truth


# ----------------------------------------------------------- properties
@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_result_contract(name):
    C, Z, _ = _problem(n_concepts=60, n_features=16, n_samples=7)
    res = _solver(name, tol=1e-6).solve(C, Z, 0.25)
    assert res.codes.shape == (7, 60)
    assert res.codes.dtype == np.float64
    assert np.all(res.codes >= 0)
    for field in ("n_iter", "objective", "gap", "converged"):
        assert getattr(res, field).shape == (7,)
    assert res.solver == name
    assert np.all(res.n_iter >= 1)
    obj, gap = objective_and_gap(C, Z, res.codes, 0.25)
    np.testing.assert_allclose(res.objective, obj)
    np.testing.assert_allclose(res.gap, gap, atol=1e-12)


@pytest.mark.parametrize("name", ALL_SOLVERS)
def test_edge_cases(name):
    C, Z, _ = _problem(n_concepts=30, n_features=10, n_samples=3)
    # a huge penalty: all codes zero, gap zero
    res = _solver(name).solve(C, Z, 100.0)
    assert np.all(res.codes == 0) and np.all(res.gap <= 1e-12)
    # a zero input row: zero codes, no NaN
    Z0 = Z.copy()
    Z0[1] = 0
    res = _solver(name).solve(C, Z0, 0.25)
    assert np.all(res.codes[1] == 0)
    assert np.all(np.isfinite(res.codes)) and np.all(np.isfinite(res.gap))
    # an empty batch
    res = _solver(name).solve(C, Z[:0], 0.25)
    assert res.codes.shape == (0, 30)


def test_admm_float32():
    C, Z, _ = _problem(n_concepts=200, n_features=32, n_samples=8)
    ref = _solver("sklearn").solve(C, Z, 0.25)
    res = ADMMSolver(tol=1e-5, device="cpu").solve(C, Z.astype(np.float32), 0.25)
    assert res.codes.dtype == np.float32
    assert res.converged.all()
    np.testing.assert_allclose(res.objective, ref.objective, rtol=1e-4)


#: ADMM's own iterations (no screening, no polishing): what the tests of its
#: iteration counts are about
PLAIN_ADMM = {"polish": False, "warm_start": "zeros"}


def test_admm_warm_start_from_solution_stops_at_first_check():
    C, Z, _ = _problem(n_concepts=100, n_features=24, n_samples=5)
    cold = ADMMSolver(tol=1e-9, device="cpu", max_iter=100000, **PLAIN_ADMM).solve(C, Z, 0.25)
    warm = ADMMSolver(tol=1e-6, device="cpu", **PLAIN_ADMM).solve(C, Z, 0.25, init=cold.codes)
    assert np.all(warm.n_iter == 10)
    assert np.all(cold.n_iter > 10)
    np.testing.assert_allclose(warm.objective, cold.objective, rtol=1e-6)


def test_admm_is_deterministic_and_batch_independent():
    C, Z, _ = _problem(n_concepts=100, n_features=24, n_samples=9)
    a = ADMMSolver(tol=1e-8, device="cpu").solve(C, Z, 0.25)
    b = ADMMSolver(tol=1e-8, device="cpu").solve(C, Z, 0.25)
    c = ADMMSolver(tol=1e-8, device="cpu", batch_size=2).solve(C, Z, 0.25)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_allclose(a.codes, c.codes, atol=1e-7)
    np.testing.assert_array_equal(a.n_iter, c.n_iter)


def test_admm_never_forms_a_concepts_by_concepts_matrix():
    C, Z, _ = _problem(n_concepts=300, n_features=20, n_samples=4)
    solver = ADMMSolver(tol=1e-6, device="cpu")
    solver.solve(C, Z, 0.25)
    tensors = [v for v in solver._cache.values() if isinstance(v, torch.Tensor)]
    assert tensors, "the factorisation is cached across calls"
    assert all(t.shape != (300, 300) for t in tensors)
    assert solver._cache["G"].shape == (20, 20)


def test_admm_reports_non_convergence():
    C, Z, _ = _problem(n_concepts=100, n_features=24, n_samples=3)
    res = ADMMSolver(tol=1e-12, max_iter=20, device="cpu", **PLAIN_ADMM).solve(C, Z, 0.05)
    assert not res.converged.any()
    assert np.all(res.n_iter == 20)
    assert np.all(res.gap > 1e-12)


def test_sklearn_solver_parallel_matches_serial():
    C, Z, _ = _problem(n_concepts=80, n_features=16, n_samples=6)
    a = LassoSolver(tol=1e-8, n_jobs=1).solve(C, Z, 0.25)
    b = LassoSolver(tol=1e-8, n_jobs=2).solve(C, Z, 0.25)
    np.testing.assert_array_equal(a.codes, b.codes)


def test_get_solver_errors():
    with pytest.raises(ValueError, match="unknown solver 'adm'.*Did you mean 'admm'"):
        get_solver("adm")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            ADMMSolver(device="cuda").solve(np.eye(3), np.eye(3), 0.1)
    with pytest.raises(ValueError, match="does not match the dictionary"):
        ADMMSolver(device="cpu").solve(np.eye(3), np.eye(4), 0.1)
    with pytest.raises(ValueError, match="nonnegative"):
        ADMMSolver(device="cpu").solve(np.eye(3), np.eye(3), -1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", [s for s in FAST_SOLVERS if "cuda" in SOLVERS[s]["devices"]])
def test_gpu_matches_cpu(name):
    C, Z, _ = _problem(n_concepts=200, n_features=32, n_samples=12)
    cpu = _solver(name, tol=1e-9).solve(C, Z, 0.25)
    gpu = _solver(name, tol=1e-9, device="cuda").solve(C, Z, 0.25)
    np.testing.assert_allclose(gpu.objective, cpu.objective, rtol=1e-6)


def test_auto_device_falls_back_to_a_device_the_solver_runs_on(monkeypatch):
    """On a GPU machine, device="auto" with a CPU-only solver is the CPU, not an error."""
    import torch

    from sksplice.solvers import _registry

    real = _registry.resolve_device
    monkeypatch.setattr(
        _registry, "resolve_device",
        lambda d: torch.device("cuda") if str(d) in ("auto", "cuda") else real(d),
    )
    solver = _registry.get_solver("sklearn", device="auto")
    assert str(solver.device) == "cpu"
    with pytest.raises(ValueError, match="runs on cpu"):
        _registry.get_solver("sklearn", device="cuda")
