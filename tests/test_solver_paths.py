"""The fast paths of the solvers, each against the exact reference on real data.

Gram-matrix subproblems, CSR output built from the working sets, per-sample
penalties, the thread policy, exact-by-default ADMM (on the real micrograph
rows whose exact code is empty), and ``LassoSolver``'s convergence flag.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sksplice import ConceptDictionary
from sksplice.solvers import (
    ActiveSetSolver,
    ADMMSolver,
    LassoSolver,
    get_solver,
    objective_and_gap,
    solve_batched,
)


@pytest.fixture(scope="module")
def lvis_rows(lvis, imagenet_text):
    """The LVIS dictionary and 24 ImageNet rows centred with its text mean."""
    names, E = lvis
    cd = ConceptDictionary(names, E)
    Z = imagenet_text[1][::42]
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True) - cd.text_mean
    return cd.embeddings, Z / np.linalg.norm(Z, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def lvis_reference(lvis_rows):
    """scikit-learn's Lasso on the LVIS rows at l1 = 0.1 and 0.25."""
    C, Z = lvis_rows
    return {l1: LassoSolver(tol=1e-10, max_iter=200000).solve(C, Z, l1) for l1 in (0.1, 0.25)}


#: (gram_budget_mb, compiled): the torch core without and with the Gram
#: matrix, and the compiled per-sample kernel (numba, when installed)
PATHS = [(0, True), (256, False), (256, True)]


@pytest.mark.parametrize("l1", [0.1, 0.25])
@pytest.mark.parametrize(("gram_budget_mb", "compiled"), PATHS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gram_and_gram_free_paths_match_sklearn_on_lvis(lvis_rows, lvis_reference, l1,
                                                        gram_budget_mb, compiled, dtype):
    C, Z = lvis_rows
    ref = lvis_reference[l1]
    solver = ActiveSetSolver(device="cpu", gram_budget_mb=gram_budget_mb, compiled=compiled)
    res = solver.solve(C, Z.astype(dtype), l1)
    assert ("gram" in solver._cache) == (gram_budget_mb > 0)
    assert res.converged.all()
    obj, gap = objective_and_gap(C, Z, res.codes.astype(np.float64), l1)
    if dtype == np.float64:
        assert np.all(gap <= 1e-6)
        np.testing.assert_allclose(obj, ref.objective, rtol=1e-6)
    else:  # float32 codes: the rounding of the codes themselves
        np.testing.assert_allclose(obj, ref.objective, rtol=1e-5)


@pytest.mark.parametrize(("gram_budget_mb", "compiled"), PATHS)
def test_sparse_output_is_the_dense_codes(lvis_rows, gram_budget_mb, compiled):
    C, Z = lvis_rows
    solver = ActiveSetSolver(device="cpu", gram_budget_mb=gram_budget_mb, batch_size=7,
                             compiled=compiled)
    dense = solver.solve(C, Z, 0.25)
    csr = solver.solve(C, Z, 0.25, sparse_output=True)
    assert sp.isspmatrix_csr(csr.codes) and csr.codes.has_sorted_indices
    assert csr.codes.nnz == np.count_nonzero(dense.codes)
    np.testing.assert_array_equal(csr.codes.toarray(), dense.codes)
    np.testing.assert_array_equal(csr.objective, dense.objective)


def test_padding_never_overwrites_concept_zero():
    # concept 0 is in every support while other samples' working sets are padded
    rng = np.random.default_rng(0)
    C = rng.normal(size=(60, 12))
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    W = np.zeros((5, 60))
    W[:, 0] = 2.0
    W[1:, 1:1 + 5] = rng.random((4, 5))
    Z = W @ C
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    ref = LassoSolver(tol=1e-10).solve(C, Z, 0.05)
    for sparse, compiled in itertools.product((False, True), (False, True)):
        res = ActiveSetSolver(device="cpu", working_set=2, max_add=1, compiled=compiled).solve(
            C, Z, 0.05, sparse_output=sparse)
        codes = res.codes.toarray() if sparse else res.codes
        assert np.all(codes[:, 0] > 0)
        np.testing.assert_allclose(res.objective, ref.objective, rtol=1e-8)


def test_per_sample_penalties_match_separate_solves(lvis_rows):
    C, Z = lvis_rows
    l1 = np.linspace(0.08, 0.4, len(Z))
    base = ActiveSetSolver(device="cpu")
    res = base.solve_penalties(C, Z, l1)
    lasso = LassoSolver(tol=1e-9).solve_penalties(C, Z[:4], l1[:4])  # the rescaling route
    for i in range(len(Z)):
        one = base.solve(C, Z[i : i + 1], float(l1[i]))
        np.testing.assert_allclose(res.objective[i], one.objective[0], rtol=1e-9)
    np.testing.assert_allclose(lasso.objective, res.objective[:4], rtol=1e-6)


def test_no_process_wide_thread_state_changes(lvis, micrographs, clip_image_mean):
    # a library call leaves the caller's torch and numba thread counts alone
    import numba

    from sksplice import SpliceTransformer

    names, E = lvis
    X = micrographs[0][:40]
    n_numba = min(2, numba.config.NUMBA_NUM_THREADS)
    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    try:
        torch.set_num_threads(2)
        numba.set_num_threads(n_numba)
        st = SpliceTransformer(l1=0.25, dictionary=ConceptDictionary(names, E),
                               image_mean=clip_image_mean, device="cpu").fit()
        st.transform(X[:1])
        assert (torch.get_num_threads(), numba.get_num_threads()) == (2, n_numba)
        st.transform(X)
        assert (torch.get_num_threads(), numba.get_num_threads()) == (2, n_numba)
        # an explicit n_threads is set for the call and restored after it
        st.set_params(solver=ActiveSetSolver(device="cpu", n_threads=1)).fit()
        st.transform(X)
        assert (torch.get_num_threads(), numba.get_num_threads()) == (2, n_numba)
    finally:
        torch.set_num_threads(torch_before)
        numba.set_num_threads(numba_before)


def test_explicit_n_threads_gives_the_same_codes(lvis_rows):
    C, Z = lvis_rows
    default = ActiveSetSolver(device="cpu").solve(C, Z, 0.25)
    one = ActiveSetSolver(device="cpu", n_threads=1).solve(C, Z, 0.25)
    np.testing.assert_array_equal(one.codes, default.codes)


def test_solve_batched_small_batches_and_csr(lvis_rows):
    C, Z = lvis_rows
    solver = get_solver("auto", device="cpu", batch_size=5)
    codes, info = solve_batched(Z, C, 0.25, None, solver, True)
    ref = solver.solve(C, Z, 0.25)
    # (solve_batched renormalises the rows: equal up to that rounding)
    assert sp.isspmatrix_csr(codes) and codes.shape == ref.codes.shape
    np.testing.assert_allclose(codes.toarray(), ref.codes, rtol=1e-9, atol=1e-13)
    assert len(info.gap) == len(Z) and info.converged.all()
    one, _ = solve_batched(Z[:1], C, 0.25, None, solver, False)
    np.testing.assert_allclose(one, ref.codes[:1], rtol=1e-9, atol=1e-13)


def test_get_solver_checks_the_registry_devices(monkeypatch):
    from sksplice.solvers import SOLVERS

    monkeypatch.setitem(SOLVERS, "sklearn", {**SOLVERS["sklearn"], "devices": ("cuda",)})
    with pytest.raises(ValueError, match="solver 'sklearn' runs on cuda, not on device 'cpu'"):
        get_solver("sklearn", device="cpu")
    for name in ("active_set", "admm", "sklearn"):
        assert get_solver.__kwdefaults__["device"] == "auto"
        assert SOLVERS[name]["class"]().device == "auto"


def test_lasso_solver_converged_means_gap_below_tol(lvis_rows):
    C, Z = lvis_rows
    res = LassoSolver(tol=1e-7).solve(C, Z[:6], 0.25)
    assert np.all(res.converged == (res.gap <= 1e-7))
    assert res.converged.all()
    short = LassoSolver(tol=1e-12, max_iter=3).solve(C, Z[:3], 0.1)
    assert np.all(short.converged == (short.gap <= 1e-12))
    assert not short.converged.all()


# ------------------------------------------------------- exact ADMM by default
@pytest.fixture(scope="module")
def micrograph_problem(shared_data_dir, micrographs, clip_image_mean):
    """The real micrographs over all 2,281 real CLIP text concepts (LVIS+ImageNet+COCO)."""
    clip = shared_data_dir / "clip-vit-b32"
    cats = sorted(json.loads((clip / "lvis_categories.json").read_text()), key=lambda c: c["id"])
    inet = json.loads((clip / "imagenet_classes.json").read_text())
    first = sorted({name: i for i, name in reversed(list(enumerate(inet)))}.values())
    coco = [c for c in (clip / "coco_names.txt").read_text().splitlines() if c]
    names = ([f"lvis:{c['name']}" for c in cats] + [f"imagenet:{inet[i]}" for i in first]
             + [f"coco:{c}" for c in coco])
    E = np.vstack([np.load(clip / "lvis_text.npy").astype(np.float64),
                   np.load(clip / "imagenet_zeroshot_head.npy").astype(np.float64).T[first],
                   np.load(clip / "coco_text.npy").astype(np.float64)])
    C = ConceptDictionary(names, E).embeddings
    X = micrographs[0]
    Z = X / np.linalg.norm(X, axis=1, keepdims=True) - clip_image_mean
    return C, Z / np.linalg.norm(Z, axis=1, keepdims=True)


@pytest.mark.slow
def test_admm_is_exact_by_default_on_micrographs(micrograph_problem):
    C, Z = micrograph_problem
    assert C.shape == (2281, 512)
    exact = ActiveSetSolver(device="cpu", tol=1e-10).solve(C, Z, 0.25)
    empty = np.flatnonzero(~(exact.codes > 0).any(axis=1))
    assert empty.size >= 1, "some real micrograph rows have an empty exact code"
    rows = np.union1d(empty, np.arange(0, len(Z), 58))
    res = ADMMSolver(device="cpu").solve(C, Z[rows], 0.25)
    assert res.converged.all() and np.all(res.gap <= 1e-6)
    # no spurious weights: the support is the exact one, empty rows stay empty
    np.testing.assert_array_equal(res.codes > 0, exact.codes[rows] > 0)
    assert not res.codes[np.isin(rows, empty)].any()
    np.testing.assert_allclose(res.objective, exact.objective[rows], rtol=1e-6)


@pytest.mark.slow
def test_admm_float32_has_no_spurious_weights_where_plain_admm_does(micrograph_problem):
    C, Z = micrograph_problem
    Z = Z[:100]  # (rows 26, 49, 81 and 98 get spurious weights from plain ADMM)
    exact = ActiveSetSolver(device="cpu", tol=1e-10).solve(C, Z, 0.25)
    Z32 = Z.astype(np.float32)
    plain = ADMMSolver(device="cpu", polish=False, warm_start="zeros").solve(C, Z32, 0.25)
    res = ADMMSolver(device="cpu").solve(C, Z32, 0.25)
    spurious = (plain.codes > 0) & ~(exact.codes > 0)
    assert spurious.any(), "plain ADMM leaves tiny weights outside the exact support"
    assert res.converged.all()
    np.testing.assert_array_equal(res.codes > 0, exact.codes > 0)
    obj, _ = objective_and_gap(C, Z, res.codes.astype(np.float64), 0.25)
    np.testing.assert_allclose(obj, exact.objective, rtol=1e-5)  # float32 codes


@pytest.mark.parametrize(("gram_budget_mb", "compiled"), PATHS)
@pytest.mark.parametrize("l1", [0.05, 0.25])
def test_single_sample_path_matches_the_batched_core_on_lvis(lvis_rows, gram_budget_mb,
                                                             compiled, l1):
    C, Z = lvis_rows
    solver = ActiveSetSolver(device="cpu", gram_budget_mb=gram_budget_mb, compiled=compiled)
    batch = ActiveSetSolver(device="cpu", gram_budget_mb=0).solve(C, Z[:8], l1)
    for i in range(8):
        one = solver.solve(C, Z[i : i + 1], l1)
        csr = solver.solve(C, Z[i : i + 1], l1, sparse_output=True)
        assert one.converged[0] and one.gap[0] <= 1e-6
        np.testing.assert_allclose(one.objective[0], batch.objective[i], rtol=1e-10)
        np.testing.assert_allclose(one.codes[0], batch.codes[i], atol=1e-12)
        np.testing.assert_array_equal(csr.codes.toarray(), one.codes)


def test_single_sample_path_float32_and_singular_fallback():
    # a duplicated concept makes the block singular: the batched core's fallback answers
    rng = np.random.default_rng(3)
    C = rng.normal(size=(40, 10))
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    z = C[:3].sum(axis=0)
    z /= np.linalg.norm(z)
    Cd = np.vstack([C, C[:3]])
    ref = LassoSolver(tol=1e-10).solve(Cd, z[None], 0.05)
    for compiled in (False, True):
        res = ActiveSetSolver(device="cpu", working_set=43, compiled=compiled).solve(
            Cd, np.vstack([z, z]), 0.05)
        np.testing.assert_allclose(res.objective, ref.objective[[0, 0]], rtol=1e-6)
    r32 = ActiveSetSolver(device="cpu").solve(C, z[None].astype(np.float32), 0.05)
    assert r32.codes.dtype == np.float32 and r32.converged.all()


def test_tensors_reach_the_kernels_without_a_numpy_round_trip(lvis_rows, monkeypatch):
    # a CPU tensor stands in for a device batch: it reaches the torch kernel as a
    # tensor (active_set, and ADMM's screening and polishing), with no numpy
    # conversion before the result is assembled
    from sksplice.solvers import active_set as active_set_module
    from sksplice.solvers import admm as admm_module

    C, Z = lvis_rows
    Zt = torch.from_numpy(Z[:6].copy())
    ref = ActiveSetSolver(device="cpu").solve(C, Z[:6], 0.25)
    ref_admm = ADMMSolver(device="cpu").solve(C, Z[:6], 0.25)
    conversions, seen = [], []
    real_numpy = torch.Tensor.numpy

    def counting_numpy(self, *args, **kwargs):
        conversions.append(tuple(self.shape))
        return real_numpy(self, *args, **kwargs)

    def no_array(self, *args, **kwargs):
        raise AssertionError("a tensor was converted with np.asarray")

    monkeypatch.setattr(torch.Tensor, "numpy", counting_numpy)
    monkeypatch.setattr(torch.Tensor, "__array__", no_array)
    for module in (active_set_module, admm_module):
        def spy(Ck, C64, Z64, half, _real=module.working_set_solve, **kw):
            support = kw.get("support")
            seen.append((isinstance(Z64, torch.Tensor) and Z64.device == Zt.device,
                         support is None or isinstance(support, torch.Tensor), len(conversions)))
            out = _real(Ck, C64, Z64, half, **kw)
            assert isinstance(out["codes"], torch.Tensor)
            return out

        monkeypatch.setattr(module, "working_set_solve", spy)
    res = ActiveSetSolver(device="cpu").solve(C, Zt, 0.25, check_input=False)
    conversions.clear()  # (the first result's, at its edge)
    res_admm = ADMMSolver(device="cpu").solve(C, Zt, 0.25, check_input=False)
    assert len(seen) == 3, seen  # active_set; ADMM's screening and polishing
    assert all(is_tensor and support_ok and n == 0 for is_tensor, support_ok, n in seen), seen
    np.testing.assert_allclose(res.codes, ref.codes, atol=1e-12)
    np.testing.assert_allclose(res_admm.codes, ref_admm.codes, atol=1e-12)
