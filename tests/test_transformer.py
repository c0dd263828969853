import pickle
import re
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import coherent_problem
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Lasso, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sksplice import ConceptDictionary, SpliceTransformer, splice_encode
from sksplice.solvers import objective_and_gap
from sksplice.transformer import CenteringWarning


@pytest.fixture
def data():
    names, E, X, W = coherent_problem(n_concepts=120, n_features=24, n_samples=60, seed=1)
    rng = np.random.default_rng(1)
    y = (W[:, :60].sum(1) > W[:, 60:].sum(1)).astype(int)
    X = X + 0.3 * rng.normal(size=24)  # an offset, as CLIP's modality gap
    return names, E, X, y


def _st(names, E, **kw):
    kw.setdefault("device", "cpu")
    return SpliceTransformer(dictionary=ConceptDictionary(names, E), **kw)


def test_acceptance_snippet(data):
    names, E, X, y = data
    st = SpliceTransformer(l1=0.25, dictionary=ConceptDictionary(names, E), image_mean=X.mean(0))
    W = st.fit_transform(X)
    assert sp.isspmatrix_csr(W) and W.shape == (60, 120)
    assert list(st.get_feature_names_out()) == names
    Xhat = st.inverse_transform(W)
    assert Xhat.shape == (60, 24)
    ref = SpliceTransformer(l1=0.25, dictionary=ConceptDictionary(names, E),
                            image_mean=X.mean(0), solver="sklearn").fit_transform(X)
    # same problem: objectives agree within 1e-6 relative
    from sksplice.core import center_embeddings

    Zc = center_embeddings(X, st.image_mean_)
    C = st.dictionary_.embeddings
    o1, _ = objective_and_gap(C, Zc, W.toarray(), 0.25)
    o2, _ = objective_and_gap(C, Zc, ref.toarray(), 0.25)
    np.testing.assert_allclose(o1, o2, rtol=1e-6)
    pipe = make_pipeline(SpliceTransformer(dictionary=ConceptDictionary(names, E)),
                         LogisticRegression())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CenteringWarning)
        gs = GridSearchCV(pipe, {"splicetransformer__l1": [0.1, 0.25, 0.5]}, cv=3).fit(X, y)
    assert gs.best_params_["splicetransformer__l1"] in (0.1, 0.25, 0.5)
    assert gs.score(X, y) > 0.5


def test_l1_scale_matches_sklearn_lasso(data):
    names, E, X, _ = data
    st = _st(names, E, l1=0.25, image_mean=None, tol=1e-10, max_iter=100000).fit(X[:5])
    W = st.decompose(X[:5])[0].toarray()  # the exact weights (transform scales them)
    C = st.dictionary_.embeddings
    Z = X[:5] / np.linalg.norm(X[:5], axis=1, keepdims=True)
    d = X.shape[1]
    for i in range(5):
        las = Lasso(alpha=0.25 / (2 * d), positive=True, fit_intercept=False, tol=1e-12,
                    max_iter=100000).fit(C.T, Z[i])
        np.testing.assert_allclose(W[i], las.coef_, atol=1e-5)


def test_dtype_follows_input_and_dense_output(data):
    names, E, X, _ = data
    st = _st(names, E, image_mean="fit", tol=1e-5).fit(X)
    W32 = st.transform(X.astype(np.float32))
    assert W32.dtype == np.float32 and sp.issparse(W32)
    W64 = st.transform(X)
    assert W64.dtype == np.float64
    np.testing.assert_allclose(W32.toarray(), W64.toarray(), atol=2e-3)
    dense = _st(names, E, image_mean="fit", tol=1e-5, sparse_output=False).fit_transform(X)
    assert isinstance(dense, np.ndarray)
    np.testing.assert_allclose(dense, W64.toarray(), atol=1e-6)


def test_image_mean_options(data):
    names, E, X, _ = data
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    st = _st(names, E, image_mean="fit").fit(X)
    np.testing.assert_allclose(st.image_mean_, Xn.mean(0))
    assert _st(names, E, image_mean=None).fit(X).image_mean_ is None
    with pytest.warns(CenteringWarning, match="broad reference set"):
        st = _st(names, E).fit(X)
    np.testing.assert_allclose(st.image_mean_, Xn.mean(0))
    mu = np.arange(24.0) / 100
    np.testing.assert_allclose(_st(names, E, image_mean=mu).fit(X).image_mean_, mu)
    st = _st(names, E, image_mean=torch.as_tensor(mu)).fit(X)
    np.testing.assert_allclose(st.image_mean_, mu)


def test_reconstruction_and_score(data):
    names, E, X, _ = data
    mu = X.mean(0) / np.linalg.norm(X.mean(0))
    st = _st(names, E, l1=0.05, image_mean=mu * 0.5).fit(X)
    W = st.transform(X)
    Xhat = st.inverse_transform(W)
    np.testing.assert_allclose(np.linalg.norm(Xhat, axis=1), 1.0)
    C = st.dictionary_.embeddings
    R = W.toarray() @ C
    R /= np.linalg.norm(R, axis=1, keepdims=True)
    R += st.image_mean_
    R /= np.linalg.norm(R, axis=1, keepdims=True)
    np.testing.assert_allclose(Xhat, R)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    assert st.score(X) == pytest.approx(np.mean(np.sum(Xn * Xhat, axis=1)))
    assert 0.5 < st.score(X) <= 1.0
    # sparser codes reconstruct worse
    assert _st(names, E, l1=1.0, image_mean=mu * 0.5).fit(X).score(X) < st.score(X)


def test_all_zero_codes_reconstruct_to_the_mean(data):
    names, E, X, _ = data
    mu = np.full(24, 0.1)
    st = _st(names, E, l1=1e6, image_mean=mu).fit(X)
    W = st.transform(X[:3])
    assert W.nnz == 0
    Xhat = st.inverse_transform(W)
    np.testing.assert_allclose(Xhat, np.tile(mu / np.linalg.norm(mu), (3, 1)))
    st = _st(names, E, l1=1e6, image_mean=None).fit(X)
    assert np.all(np.isfinite(st.inverse_transform(st.transform(X[:3]))))


def test_function_form_shares_the_code_path(data):
    names, E, X, _ = data
    cd = ConceptDictionary(names, E)
    st = SpliceTransformer(l1=0.2, dictionary=cd, image_mean="fit", device="cpu",
                           output_scale=1.0).fit(X)
    W1 = st.transform(X)
    W2, info = splice_encode(X, cd, l1=0.2, image_mean="fit", device="cpu",
                             return_diagnostics=True)
    assert (W1 != W2).nnz == 0
    assert info.converged.all() and np.all(info.gap <= 1e-6)
    codes, info = st.decompose(X)
    assert (codes != W1).nnz == 0 and info.objective.shape == (60,)


def test_clone_pickle_joblib_round_trips(data, tmp_path):
    names, E, X, _ = data
    st = _st(names, E, image_mean="fit").fit(X)
    W = st.transform(X)
    for other in (pickle.loads(pickle.dumps(st)), clone(st).fit(X)):
        assert (other.transform(X) != W).nnz == 0
    joblib.dump(st, tmp_path / "st.joblib")
    assert (joblib.load(tmp_path / "st.joblib").transform(X) != W).nnz == 0


def test_batch_size_does_not_change_codes(data):
    names, E, X, _ = data
    a = _st(names, E, image_mean="fit", tol=1e-9, max_iter=50000).fit(X).transform(X)
    b = _st(names, E, image_mean="fit", tol=1e-9, max_iter=50000, batch_size=7).fit(X).transform(X)
    np.testing.assert_allclose(a.toarray(), b.toarray(), atol=1e-7)


def test_real_data_lvis_names_imagenet(lvis, imagenet_text):
    """ImageNet classes named like an LVIS category decompose to that category first."""
    names, E = lvis
    inames, X = imagenet_text

    def norm(s):
        return re.sub(r"\s*\(.*\)", "", s.replace("_", " ")).strip().lower()

    lv = {}
    for i, n in enumerate(names):
        lv.setdefault(norm(n), []).append(i)
    pairs = [(j, lv[norm(n)]) for j, n in enumerate(inames) if norm(n) in lv]
    assert len(pairs) >= 200
    cd = ConceptDictionary(names, E)
    st = SpliceTransformer(l1=0.25, dictionary=cd, image_mean=cd.text_mean, tol=1e-5)
    W = st.fit_transform(X[[j for j, _ in pairs]]).toarray()
    hits = np.mean([W[i].argmax() in idx for i, (_, idx) in enumerate(pairs)])
    assert hits >= 0.9
    l0 = (W > 0).sum(1)
    assert 1 <= np.median(l0) <= 30


# --------------------------------------------------------------- bad input
@pytest.fixture
def fitted(data):
    names, E, X, _ = data
    return _st(names, E, image_mean="fit").fit(X), X


def test_bad_transform_inputs(fitted):
    st, X = fitted
    with pytest.raises(ValueError,
                       match="embedding dimension 23 does not match the dictionary's 24"):
        st.transform(X[:, :23])
    Xnan = X.copy()
    Xnan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        st.transform(Xnan)
    Xinf = X.copy()
    Xinf[1, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        st.transform(Xinf)
    with pytest.raises(ValueError, match="0 sample"):
        st.transform(X[:0])
    with pytest.raises(ValueError, match="Reshape your data"):
        st.transform(X[0])
    with pytest.raises(ValueError, match="non-numeric.*input='text'"):
        st.transform(np.array([["a", "b"], ["c", "d"]], dtype=object))
    with pytest.raises(ValueError, match="input='text'"):
        st.transform(["a red car", "a cat"])
    with pytest.raises(ValueError, match="codes have 3 columns but the dictionary has 120"):
        st.inverse_transform(np.zeros((2, 3)))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"l1": -0.1}, "'l1' parameter .* range \\[0.0, inf\\)"),
        ({"solver": "lars"}, "'solver' parameter"),
        ({"image_mean": np.zeros(5)}, "image_mean has shape \\(5,\\)"),
        ({"image_mean": np.full(24, np.nan)}, "image_mean contains NaN"),
        ({"device": "tpu"}, "device='tpu' is not"),
    ],
)
def test_bad_parameters(data, params, match):
    names, E, X, _ = data
    st = _st(names, E, **params)
    with pytest.raises(ValueError, match=match):
        st.fit(X)
    assert not hasattr(st, "dictionary_")  # nothing half-written


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu(data):
    names, E, X, _ = data
    with pytest.raises(ValueError, match="no CUDA GPU is available.*device='cpu'"):
        _st(names, E, device="cuda").fit(X)


def test_bad_dictionaries_in_fit(data):
    names, E, X, _ = data
    with pytest.raises(ValueError, match="120 names but 119"):
        SpliceTransformer(dictionary=(names, E[:-1])).fit(X)
    with pytest.raises(ValueError, match="duplicate concept names"):
        SpliceTransformer(dictionary=(names[:-1] + [names[0]], E)).fit(X)
    E0 = E.copy()
    E0[3] = 0
    with pytest.raises(ValueError, match="concept_3.*are zero"):
        SpliceTransformer(dictionary=(names, E0)).fit(X)
    with pytest.raises(ValueError, match="does not match the dictionary's 24"):
        _st(names, E, image_mean="fit").fit(X[:, :10])


def test_refit_failure_keeps_previous_state(fitted):
    st, X = fitted
    W = st.transform(X)
    st.set_params(image_mean=np.zeros(3))
    with pytest.raises(ValueError):
        st.fit(X)
    assert (st.transform(X) != W).nnz == 0


def test_not_fitted(data):
    names, E, X, _ = data
    with pytest.raises(NotFittedError):
        _st(names, E).transform(X)


def test_score_is_the_mean_reconstruction_cosine(data):
    from sksplice import reconstruction_cosine

    names, E, X, _ = data
    st = _st(names, E, l1=0.05, image_mean="fit").fit(X)
    codes, _ = st.decompose(X)
    expected = reconstruction_cosine(X, st.inverse_transform(codes)).mean()
    assert st.score(X) == pytest.approx(expected, rel=1e-12)


def test_public_api_for_other_layers(data):
    """fit(X=None), decompose_embeddings, embed and build_solver.

    These are the public pieces the analysis, editing and shard layers use.
    """
    names, E, X, _ = data
    mu = X.mean(0)
    st = _st(names, E, image_mean=mu).fit()  # nothing to learn from data
    assert st.n_features_in_ == 24 and st.input_kind_ == "auto"
    codes, info = st.decompose_embeddings(X)
    assert info.objective.shape == (60,) and sp.issparse(codes)
    np.testing.assert_allclose(st.transform(X).toarray(), st.output_scale * codes.toarray())
    np.testing.assert_array_equal(st.embed(X), X)
    solver = st.build_solver()
    assert type(solver) is type(st.solver_) and solver is not st.solver_
    with pytest.raises(ValueError, match="got X=None"):
        _st(names, E, image_mean="fit").fit()


@pytest.mark.parametrize("size", [-1, None, 3])
def test_vocabulary_size_minus_one_keeps_the_whole_vocabulary(size, monkeypatch):
    from sksplice import concepts

    seen = {}

    def fake_build(enc, vocabulary, *, vocabulary_size, **kw):
        seen["size"] = vocabulary_size
        return ConceptDictionary(["a", "b", "c"], np.eye(3))

    monkeypatch.setattr(concepts, "build_dictionary", fake_build)
    st = SpliceTransformer(encoder=("ViT-B-32", None), vocabulary=["a", "b", "c"],
                           vocabulary_size=size, image_mean=None, device="cpu")
    st._resolve_dictionary()
    assert seen["size"] == size  # -1 reaches load_vocabulary: the whole list


def test_vocabulary_size_zero_is_refused():
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="vocabulary_size"):
        SpliceTransformer(vocabulary_size=0, dictionary=(["a", "b"], np.eye(2))).fit(np.eye(2))
