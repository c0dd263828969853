"""``splice_encode`` is the one coder and ``SpliceTransformer`` is built on it.

Solver instances, the deprecated ``n_jobs``, rows that equal the mean up to
rounding, the progress bar of long transforms, half-precision inputs, the
unused-parameter warning with ``dictionary=``, the notebook repr's API link
and the one batching loop (each row solved once, in batches of the solver's
size, each validated once).
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sksplice import (
    ConceptDictionary,
    DegenerateInputWarning,
    SpliceTransformer,
    get_solver,
    splice_encode,
)
from sksplice.core import center_embeddings
from sksplice.solvers import ActiveSetSolver, BaseSolver, LassoSolver


@pytest.fixture(scope="module")
def lvis_setup(lvis, imagenet_text):
    names, E = lvis
    cd = ConceptDictionary(names, E)
    return cd, imagenet_text[1][::25]


def _toy(k=20, d=8, seed=0):
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(k, d))
    return ConceptDictionary([f"c{i}" for i in range(k)], E), rng


# ------------------------------------------------------------------ solvers
def test_a_solver_instance_gives_the_codes_of_its_name(lvis_setup):
    cd, X = lvis_setup
    by_name = SpliceTransformer(l1=0.25, dictionary=cd, image_mean=cd.text_mean,
                                solver="active_set", device="cpu").fit(X)
    solver = get_solver("active_set", device="cpu")
    before = copy.deepcopy(vars(solver))
    by_instance = SpliceTransformer(l1=0.25, dictionary=cd, image_mean=cd.text_mean,
                                    solver=solver, device="cpu").fit(X)
    W1, W2 = by_name.transform(X), by_instance.transform(X)
    assert W1.nnz > 0
    assert (W1 != W2).nnz == 0
    # the parameter is never mutated: fit works on a copy
    assert by_instance.solver is solver and by_instance.solver_ is not solver
    assert vars(solver).keys() == before.keys() and "_cache" not in vars(solver)
    assert by_instance.get_params()["solver"] is solver


def test_a_solver_instance_keeps_its_own_options():
    cd, rng = _toy()
    X = rng.normal(size=(5, 8))
    st = SpliceTransformer(l1=0.1, dictionary=cd, image_mean=None, device="cpu",
                           solver=ActiveSetSolver(working_set=4, max_iter=7, device="cpu"),
                           tol=1e-3).fit(X)
    assert st.solver_.working_set == 4 and st.solver_.max_iter == 7
    assert st.solver_.tol == 1e-6  # the instance's, not the estimator's tol


def test_solver_must_be_a_name_or_an_instance():
    cd, rng = _toy()
    with pytest.raises(ValueError, match="solver"):
        SpliceTransformer(dictionary=cd, solver=object()).fit(rng.normal(size=(2, 8)))
    assert isinstance(get_solver("active_set"), BaseSolver)


def test_n_jobs_is_deprecated_and_still_works():
    cd, rng = _toy()
    X = rng.normal(size=(4, 8))
    st = SpliceTransformer(l1=0.1, dictionary=cd, image_mean=None, device="cpu",
                           solver="sklearn", n_jobs=2)
    with pytest.warns(FutureWarning, match=r"solver=LassoSolver\(n_jobs=2\)"):
        st.fit(X)
    assert isinstance(st.solver_, LassoSolver) and st.solver_.n_jobs == 2
    ref = SpliceTransformer(l1=0.1, dictionary=cd, image_mean=None, device="cpu",
                            solver=LassoSolver(n_jobs=2, device="cpu")).fit(X)
    np.testing.assert_allclose(st.transform(X).toarray(), ref.transform(X).toarray())
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        SpliceTransformer(l1=0.1, dictionary=cd, image_mean=None, device="cpu").fit(X)
    with pytest.warns(FutureWarning, match="n_jobs"):
        splice_encode(X, cd, l1=0.1, solver="sklearn", n_jobs=2, device="cpu")


# ---------------------------------------------------------------- one loop
def test_one_loop_each_batch_solved_once_without_revalidation(lvis_setup, monkeypatch):
    cd, X = lvis_setup
    calls = []
    original = ActiveSetSolver.solve

    def spy(self, C, Z, l1, **kw):
        calls.append((Z.shape[0], kw.get("check_input", True)))
        return original(self, C, Z, l1, **kw)

    monkeypatch.setattr(ActiveSetSolver, "solve", spy)
    st = SpliceTransformer(l1=0.25, dictionary=cd, image_mean=cd.text_mean, device="cpu",
                           solver="active_set", batch_size=16).fit(X)
    codes, info = st.decompose(X)
    assert calls == [(16, False), (16, False), (8, False)]
    assert info.codes is codes and len(info.gap) == len(X)
    # the same codes as one solve of the centred rows
    Z = center_embeddings(X, cd.text_mean)
    ref = get_solver("active_set", device="cpu").solve(cd.embeddings, Z, 0.25)
    np.testing.assert_allclose(codes.toarray(), ref.codes, rtol=1e-9, atol=1e-12)


def test_splice_encode_validates_and_matches_the_estimator(lvis_setup):
    cd, X = lvis_setup
    st = SpliceTransformer(l1=0.25, dictionary=cd, image_mean=cd.text_mean,
                           device="cpu").fit(X)
    W, info = splice_encode(X.tolist(), cd, l1=0.25, image_mean=cd.text_mean, device="cpu",
                            return_diagnostics=True, batch_size=7)
    assert sp.isspmatrix_csr(W) and W.has_sorted_indices
    np.testing.assert_allclose(W.toarray(), st.decompose(X)[0].toarray(), rtol=1e-9,
                               atol=1e-12)
    assert info.converged.all() and info.codes is W
    with pytest.raises(ValueError, match="512"):
        splice_encode(X[:, :100], cd)
    with pytest.raises(ValueError, match="l1"):
        splice_encode(X, cd, l1=-1.0)


def test_a_cpu_tensor_is_read_without_a_copy_and_gives_numpy_codes(lvis_setup):
    cd, X = lvis_setup
    Xt = torch.from_numpy(X.astype(np.float32))
    W = splice_encode(Xt, cd, image_mean=cd.text_mean, device="cpu", sparse_output=False)
    ref = splice_encode(X.astype(np.float32), cd, image_mean=cd.text_mean, device="cpu",
                        sparse_output=False)
    assert isinstance(W, np.ndarray) and W.dtype == np.float32
    np.testing.assert_array_equal(W, ref)


def test_centring_agrees_between_numpy_and_torch(clip_image_mean):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(6, 512))
    X[2] = 0.0
    X[4] *= 1e-300
    Z, none = center_embeddings(X, clip_image_mean, return_degenerate=True)
    Zt, none_t = center_embeddings(torch.from_numpy(X), torch.from_numpy(clip_image_mean),
                                   return_degenerate=True)
    assert isinstance(Zt, torch.Tensor)
    np.testing.assert_allclose(Zt.numpy(), Z, atol=1e-12)
    assert none.tolist() == none_t.tolist() == [False, False, True, False, False, False]
    np.testing.assert_allclose(np.linalg.norm(Z[[0, 1, 3, 4, 5]], axis=1), 1.0)


# --------------------------------------------------------- degenerate rows
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_row_equal_to_a_unit_mean_has_no_direction(clip_image_mean, dtype, lvis_setup):
    cd, X = lvis_setup
    mean = clip_image_mean / np.linalg.norm(clip_image_mean)
    st = SpliceTransformer(l1=0.25, dictionary=cd, image_mean=mean, device="cpu").fit()
    rows = np.vstack([mean, X[0], mean]).astype(dtype)
    with pytest.warns(DegenerateInputWarning, match=r"rows \[0, 2\]") as record:
        W = st.transform(rows)
    assert record[0].filename == __file__
    assert W[[0, 2]].nnz == 0 and W[1].nnz > 0


def test_the_fit_mean_of_one_float32_row_leaves_that_row_without_direction(lvis_setup):
    cd, X = lvis_setup
    row = X[:1].astype(np.float32)
    st = SpliceTransformer(l1=0.25, dictionary=cd, image_mean="fit", device="cpu").fit(row)
    with pytest.warns(DegenerateInputWarning):
        assert st.transform(row).nnz == 0


def test_a_row_near_but_not_at_the_mean_is_decomposed(clip_image_mean, lvis_setup):
    cd, X = lvis_setup
    mean = clip_image_mean / np.linalg.norm(clip_image_mean)
    near = mean + 1e-3 * X[0] / np.linalg.norm(X[0])
    st = SpliceTransformer(l1=0.25, dictionary=cd, image_mean=mean, device="cpu").fit()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateInputWarning)
        assert st.transform(near[None]).nnz > 0


@pytest.mark.parametrize("container", ["list", "float64 array"])
def test_a_float32_mean_held_in_float64_has_no_direction(clip_image_mean, lvis_setup, container):
    # issue 20, class 10: the float32 rounding residual (norm ~1e-7) was decomposed in
    # float64 (126 concepts at l1=0.05), with no warning
    cd, X = lvis_setup
    mean = clip_image_mean / np.linalg.norm(clip_image_mean)
    st = SpliceTransformer(l1=0.05, dictionary=cd, image_mean=mean, device="cpu").fit()
    rows = np.vstack([mean, X[0]]).astype(np.float32)
    rows = rows.tolist() if container == "list" else rows.astype(np.float64)
    with pytest.warns(DegenerateInputWarning, match=r"rows \[0\]"):
        W = st.transform(rows)
    assert W[0].nnz == 0 and W[1].nnz > 0


# ------------------------------------------------------------- progress bar
def test_verbose_shows_the_progress_of_a_long_transform_of_embeddings(lvis_setup, capsys):
    cd, X = lvis_setup
    rows = np.tile(X, (40, 1))[:1500]
    st = SpliceTransformer(l1=0.25, dictionary=cd, image_mean=cd.text_mean, device="cpu",
                           verbose=1).fit(rows[:10])
    capsys.readouterr()
    st.transform(rows)
    err = capsys.readouterr().err
    assert "decomposing" in err and "1500/1500" in err
    st.set_params(verbose=0).transform(rows)
    assert "decomposing" not in capsys.readouterr().err


# --------------------------------------------------------- half precision
@pytest.mark.parametrize("make", [
    lambda X: X.astype(np.float16),
    lambda X: torch.from_numpy(X).to(torch.float16),
    lambda X: torch.from_numpy(X).to(torch.bfloat16),
])
def test_half_precision_inputs_give_float32_codes(lvis_setup, make):
    cd, X = lvis_setup
    st = SpliceTransformer(l1=0.25, dictionary=cd, image_mean=cd.text_mean, device="cpu")
    W = st.fit_transform(make(X))
    assert W.dtype == np.float32 and W.nnz > 0
    assert st.decompose(make(X))[0].dtype == np.float32
    assert splice_encode(make(X), cd, image_mean=cd.text_mean).dtype == np.float32


# ------------------------------------------------------- unused parameters
def test_dictionary_with_building_parameters_warns_naming_them():
    cd, rng = _toy()
    X = rng.normal(size=(3, 8))
    st = SpliceTransformer(dictionary=cd, image_mean=None, vocabulary="mscoco",
                           vocabulary_size=500, encoder="RN50:openai", device="cpu")
    with pytest.warns(UserWarning, match=r"vocabulary='mscoco', vocabulary_size=500, "
                                         r"encoder='RN50:openai' are unused"):
        st.fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        SpliceTransformer(dictionary=cd, image_mean=None, device="cpu").fit(X)
        # with image or text inputs the encoder is used: only embeddings name it
        SpliceTransformer(dictionary=cd, image_mean=None, encoder="RN50:openai",
                          device="cpu").fit()


# ------------------------------------------------------------- HTML repr
def test_the_html_repr_links_to_the_api_page():
    from sksplice import CLIPEmbedder, _defaults

    for est in (SpliceTransformer(), CLIPEmbedder()):
        url = est._get_doc_link()
        assert url == (f"{_defaults.DOCS_URL}api/generated/sksplice."
                       f"{type(est).__name__}.html")
        assert url in est._repr_html_()
