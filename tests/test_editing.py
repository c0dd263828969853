"""ConceptEditor: exact edits, both embedding modes, sklearn compatibility, real data."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import CHECK_DIMS, DEFAULT_DIM, coherent_problem
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import estimator_checks_generator, parametrize_with_checks

from sksplice import ConceptDictionary, SpliceTransformer
from sksplice.core import normalize_rows
from sksplice.editing import ConceptEditor, match_concepts, residual_edit


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def problem():
    """A small coherent problem with a mean: names, dictionary, X, mean."""
    names, E, X, _ = coherent_problem(n_concepts=40, n_features=12, n_samples=24, n_active=3,
                                      seed=1)
    rng = np.random.default_rng(1)
    mean = normalize_rows(rng.normal(size=(1, 12)))[0] * 0.6
    # X as raw embeddings: centred codes plus the mean, so the mean matters
    Xraw = normalize_rows(normalize_rows(X) * 0.8 + mean)
    return names, ConceptDictionary(names, E), Xraw, mean


def _st(cd, mean, l1=0.1, **kw):
    return SpliceTransformer(l1=l1, dictionary=cd, image_mean=mean, device="cpu", **kw)


@pytest.fixture(scope="module")
def fitted(problem):
    names, cd, X, mean = problem
    st = _st(cd, mean).fit(X)
    return st, st.transform(X)


def _used_and_unused(codes):
    W = codes.toarray()
    totals = W.sum(axis=0)
    return np.flatnonzero(totals > 0), np.flatnonzero(totals == 0), W


# ----------------------------------------------------------------- name matching
def test_match_exact_and_word():
    vocab = ["dog", "hot dog", "dog_collar", "dogsled", "Cat", "sea lion"]
    assert_array_equal(match_concepts(["dog", "Cat"], vocab), [0, 4])
    assert_array_equal(match_concepts("dog", vocab, match="word"), [0, 1, 2])
    assert_array_equal(match_concepts(["cat"], vocab, match="word"), [4])
    assert_array_equal(match_concepts(["sea lion"], vocab, match="word"), [5])
    assert_array_equal(match_concepts(["dog collar"], vocab, match="word"), [2])


def test_unknown_name_suggests_close_matches():
    vocab = ["concept_1", "concept_12", "tree"]
    with pytest.raises(ValueError, match=r"'concept_13' is not in the dictionary.*Did you mean"):
        match_concepts(["concept_13"], vocab)
    with pytest.raises(ValueError, match="match='word'"):
        match_concepts(["concept"], vocab)
    with pytest.raises(ValueError, match=r"no concept contains the word 'tre'.*'tree'"):
        match_concepts(["tre"], vocab, match="word")
    with pytest.raises(ValueError, match="must be strings"):
        match_concepts([3], vocab)


def test_unknown_name_raises_in_fit(problem):
    names, cd, X, mean = problem
    with pytest.raises(ValueError, match="Did you mean"):
        ConceptEditor(_st(cd, mean), remove=["concept_400"]).fit(X)


def test_remove_and_keep_together_is_an_error(problem):
    names, cd, X, mean = problem
    with pytest.raises(ValueError, match="not both"):
        ConceptEditor(_st(cd, mean), remove=["concept_1"], keep=["concept_2"]).fit(X)
    with pytest.raises(ValueError, match="keep=\\[\\] would remove every concept"):
        ConceptEditor(_st(cd, mean), keep=[]).fit(X)


# ----------------------------------------------------------------- codes
def test_edit_zeroes_exactly_the_named_concepts(problem, fitted):
    names, cd, X, mean = problem
    st, codes = fitted
    used, _, W = _used_and_unused(codes)
    remove = [names[j] for j in used[:3]]
    ed = ConceptEditor(_st(cd, mean), remove=remove).fit(X)
    assert_array_equal(ed.removed_indices_, np.sort(used[:3]))
    assert list(ed.removed_concepts_) == [names[j] for j in np.sort(used[:3])]
    out = ed.transform(X)
    assert sp.isspmatrix_csr(out) or sp.issparse(out) and out.format == "csr"
    E = out.toarray()
    assert np.all(E[:, used[:3]] == 0)
    rest = np.setdiff1d(np.arange(len(names)), used[:3])
    assert_array_equal(E[:, rest], W[:, rest])  # every other weight untouched
    assert E.dtype == W.dtype


def test_keep_zeroes_every_other_concept(problem, fitted):
    names, cd, X, mean = problem
    st, codes = fitted
    used, _, W = _used_and_unused(codes)
    keep = [names[j] for j in used[:2]]
    ed = ConceptEditor(_st(cd, mean), keep=keep).fit(X)
    assert ed.removed_indices_.size == len(names) - 2
    E = ed.transform(X).toarray()
    assert_array_equal(E[:, used[:2]], W[:, used[:2]])
    E[:, used[:2]] = 0
    assert not E.any()


def test_word_match_in_editor():
    rng = np.random.default_rng(0)
    names = ["dog", "hot dog", "dogsled", "cat", "car", "tree"]
    cd = ConceptDictionary(names, rng.normal(size=(6, 5)))
    X = rng.normal(size=(6, 5))
    ed = ConceptEditor(_st(cd, None), remove=["dog"], match="word").fit(X)
    assert list(ed.removed_concepts_) == ["dog", "hot dog"]


def test_no_edit_is_identity(problem, fitted):
    names, cd, X, mean = problem
    st, codes = fitted
    ed = ConceptEditor(_st(cd, mean)).fit(X)
    assert ed.removed_indices_.size == 0
    assert_array_equal(ed.transform(X).toarray(), codes.toarray())
    res = ConceptEditor(_st(cd, mean), output="embedding", mode="residual").fit(X)
    assert_allclose(res.transform(X), normalize_rows(X), atol=1e-12)


def test_dense_codes_follow_the_estimator(problem):
    names, cd, X, mean = problem
    ed = ConceptEditor(_st(cd, mean, sparse_output=False), remove=["concept_0"]).fit(X)
    out = ed.transform(X)
    assert isinstance(out, np.ndarray) and np.all(out[:, 0] == 0)


def test_edit_codes_checks_shape(problem):
    names, cd, X, mean = problem
    ed = ConceptEditor(_st(cd, mean), remove=["concept_0"]).fit(X)
    with pytest.raises(ValueError, match="40 concepts"):
        ed.edit_codes(np.zeros((2, 39)))


def test_edit_codes_reads_a_list_and_names_bad_containers(problem, fitted):
    names, cd, X, mean = problem
    st, codes = fitted
    ed = ConceptEditor(_st(cd, mean), remove=["concept_0"]).fit(X)
    dense = codes.toarray()
    out = ed.edit_codes(dense.tolist())
    assert isinstance(out, np.ndarray)
    assert_allclose(out, ed.edit_codes(dense))
    assert np.all(out[:, 0] == 0)
    with pytest.raises(ValueError, match=r"shape \(40,\).*reshape\(1, -1\)"):
        ed.edit_codes(dense[0].tolist())
    with pytest.raises(ValueError, match="must be numeric"):
        ed.edit_codes([["a"] * 40])
    with pytest.raises(ValueError, match="2-D numeric array"):
        ed.edit_codes([[0.0] * 40, [0.0] * 3])


# ----------------------------------------------------------------- embeddings
def test_residual_unchanged_when_removed_weight_is_zero(problem, fitted):
    names, cd, X, mean = problem
    st, codes = fitted
    used, unused, W = _used_and_unused(codes)
    assert unused.size >= 1
    ed = ConceptEditor(_st(cd, mean), remove=[names[j] for j in unused],
                       output="embedding", mode="residual").fit(X)
    out = ed.transform(X)
    assert_allclose(out, normalize_rows(X), rtol=0, atol=1e-12)
    # the paper's mode changes the embedding even though nothing was removed
    rec = ConceptEditor(_st(cd, mean), remove=[names[j] for j in unused],
                        output="embedding", mode="recompose").fit(X).transform(X)
    assert np.max(np.abs(rec - normalize_rows(X))) > 1e-3


def test_residual_changes_only_rows_using_the_concept(problem, fitted):
    names, cd, X, mean = problem
    st, codes = fitted
    used, _, W = _used_and_unused(codes)
    j = used[0]
    rows = W[:, j] > 0
    assert rows.any() and not rows.all()
    out = ConceptEditor(_st(cd, mean), remove=[names[j]], output="embedding",
                        mode="residual").fit(X).transform(X)
    Xn = normalize_rows(X)
    assert_allclose(out[~rows], Xn[~rows], atol=1e-12)
    assert np.all(np.abs(out[rows] - Xn[rows]).max(axis=1) > 1e-6)
    # the formula: x' is proportional to s * (z - w_j c_j) + mu
    R = Xn - mean
    s = np.linalg.norm(R, axis=1, keepdims=True)
    w_j = st.decompose(X)[0].toarray()[:, [j]]  # the exact SpLiCE weight of concept j
    expected = normalize_rows(s * (R / s - w_j * cd.embeddings[j]) + mean)
    assert_allclose(out, expected, atol=1e-12)
    assert_allclose(np.linalg.norm(out, axis=1), 1.0)
    # the removed concept's direction is gone from the centred edit
    z_edit = R / s - w_j * cd.embeddings[j]
    z_orig = R / s
    assert np.all(np.abs(z_edit[rows] @ cd.embeddings[j]) < np.abs(z_orig[rows] @ cd.embeddings[j]))


def test_recompose_mode_is_the_papers(problem, fitted):
    names, cd, X, mean = problem
    st, codes = fitted
    used, _, W = _used_and_unused(codes)
    ed = ConceptEditor(_st(cd, mean), remove=[names[used[0]]], output="embedding").fit(X)
    W[:, used[0]] = 0
    expected = normalize_rows(normalize_rows(W @ cd.embeddings) + mean)
    assert_allclose(ed.transform(X), expected, atol=1e-10)
    assert_allclose(ed.transform(X), st.inverse_transform(sp.csr_matrix(W)), atol=1e-12)


def test_residual_without_mean():
    C = np.eye(3)
    X = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]])
    W = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    out = residual_edit(X, W, C, None, [1])
    assert_allclose(out, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert_allclose(residual_edit(X, sp.csr_matrix(W), C, None, []), normalize_rows(X))
    assert residual_edit(X.astype(np.float32), W, C, None, [1]).dtype == np.float32


def test_feature_names_out(problem):
    names, cd, X, mean = problem
    ed = ConceptEditor(_st(cd, mean), remove=["concept_0"]).fit(X)
    assert list(ed.get_feature_names_out()) == names
    emb = ConceptEditor(_st(cd, mean), remove=["concept_0"], output="embedding").fit(X)
    assert list(emb.get_feature_names_out()) == [f"x{i}" for i in range(12)]
    assert emb.n_features_in_ == 12
    out = emb.set_output(transform="pandas").transform(X)
    assert list(out.columns) == [f"x{i}" for i in range(12)]


def test_embedding_output_needs_a_splice_transformer():
    X = np.abs(np.random.default_rng(0).normal(size=(5, 3)))
    ft = FunctionTransformer(feature_names_out="one-to-one")
    ed = ConceptEditor(ft, remove=["x1"]).fit(X)
    assert np.all(ed.transform(X)[:, 1] == 0)
    with pytest.raises(ValueError, match="SpliceTransformer"):
        ConceptEditor(ft, remove=["x1"], output="embedding").fit(X)


# ----------------------------------------------------------------- sklearn integration
def test_clone_and_pickle(problem):
    names, cd, X, mean = problem
    ed = ConceptEditor(_st(cd, mean), remove=["concept_3"], output="embedding", mode="residual")
    c = clone(ed)
    assert c.get_params()["estimator__l1"] == 0.1 and c.remove == ["concept_3"]
    ed.fit(X)
    assert not hasattr(ed.estimator, "dictionary_")  # the wrapped estimator stays unfitted
    again = pickle.loads(pickle.dumps(ed))
    assert_allclose(again.transform(X), ed.transform(X))
    assert_array_equal(again.removed_indices_, ed.removed_indices_)


def _labelled_problem():
    """Labels carried by one concept ('signal'); 'noise' is unrelated."""
    rng = np.random.default_rng(0)
    k, d, n = 30, 16, 60
    E = rng.normal(size=(k, d))
    names = ["signal", "noise"] + [f"c{i}" for i in range(k - 2)]
    cd = ConceptDictionary(names, E)
    y = np.repeat([0, 1], n // 2)
    W = np.zeros((n, k))
    W[:, 1] = rng.uniform(0.5, 1.0, n)
    for i in range(n):
        W[i, rng.choice(np.arange(2, k), 2, replace=False)] = rng.uniform(0.3, 1.0, 2)
    W[y == 1, 0] = rng.uniform(0.6, 1.2, n // 2)
    X = W @ cd.embeddings + 0.02 * rng.normal(size=(n, d))
    return cd, X, y


def test_pipeline_and_grid_search_over_l1_and_removed_concepts():
    cd, X, y = _labelled_problem()
    pipe = make_pipeline(  # C=100 on the exact weights (output_scale=1)
        ConceptEditor(_st(cd, None, l1=0.05, output_scale=1.0)),
        LogisticRegression(C=100.0, max_iter=2000),
    )
    grid = GridSearchCV(
        pipe,
        {"concepteditor__estimator__l1": [0.05, 0.2],
         "concepteditor__remove": [["signal"], ["noise"]]},
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid.fit(X, y)
    res = grid.cv_results_
    # removing the concept that carries the labels makes the probe blind to them
    for l1 in (0.05, 0.2):
        sel = {tuple(p["concepteditor__remove"]): s
               for p, s in zip(res["params"], res["mean_test_score"], strict=False)
               if p["concepteditor__estimator__l1"] == l1}
        assert sel[("noise",)] >= 0.9
        assert sel[("signal",)] < sel[("noise",)] - 0.2
    assert grid.best_params_["concepteditor__remove"] == ["noise"]
    names = grid.best_estimator_[:-1].get_feature_names_out()
    assert names[0] == "signal"


# scikit-learn's checks: a dictionary fixes n_features, so a check passes only when it
# fits data of the dictionary's dimension.  parametrize_with_checks runs every check at
# d=3 and lists the ones that fit other dimensions as expected failures; those are then
# run at their own dimension below, so every check passes somewhere.
CONFIGS = {
    "codes": {},
    "recompose": {"output": "embedding", "mode": "recompose"},
    "residual": {"output": "embedding", "mode": "residual"},
}


def _editor(dim, config):
    rng = np.random.default_rng(dim)
    E = rng.normal(size=(12, dim))
    st = SpliceTransformer(l1=0.1, dictionary=ConceptDictionary([f"c{i}" for i in range(12)], E),
                           image_mean="fit", device="cpu")
    return ConceptEditor(st, remove=["c1", "c5"], **CONFIGS[config])


def _expected_failures(estimator):
    return {
        name: f"fits {dim}-feature data, but this editor's dictionary has "
              f"{DEFAULT_DIM} features (an embedding dimension is fixed by the dictionary); "
              f"test_check_at_its_dimension runs it at d={dim}"
        for name, dim in CHECK_DIMS.items()
    }


@parametrize_with_checks(
    [_editor(DEFAULT_DIM, c) for c in CONFIGS],
    expected_failed_checks=_expected_failures,
    xfail_strict=True,
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


def _dim_cases():
    for config in CONFIGS:
        for dim in sorted(set(CHECK_DIMS.values())):
            for est, check in estimator_checks_generator(_editor(dim, config), legacy=True,
                                                         mark="skip"):
                name = getattr(check, "func", check).__name__
                if CHECK_DIMS.get(name) == dim:
                    yield pytest.param(est, check, id=f"{config}-{name}[d={dim}]")


@pytest.mark.parametrize("estimator, check", list(_dim_cases()))
def test_check_at_its_dimension(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


# ----------------------------------------------------------------- real data
def test_real_data_edit(lvis, micrographs, clip_image_mean):
    names, E = lvis
    X, _ = micrographs
    X = X[:12]
    cd = ConceptDictionary(names, E)
    st = _st(cd, clip_image_mean, l1=0.1)
    codes = st.fit(X).transform(X).toarray()
    top = int(np.argmax(codes.sum(axis=0)))
    ed = ConceptEditor(st, remove=[names[top]], output="embedding", mode="residual").fit(X)
    out = ed.transform(X)
    rows = codes[:, top] > 0
    Xn = normalize_rows(X)
    assert_allclose(out[~rows], Xn[~rows], atol=1e-10)
    # similarity to the removed concept's (raw) text direction drops in the edited rows
    t = E[top] / np.linalg.norm(E[top])
    assert np.all(out[rows] @ t < Xn[rows] @ t)
    # ... and the edited embeddings no longer use the concept
    again = st.transform(out).toarray()
    assert np.all(again[rows, top] < codes[rows, top])


class _Letters:
    """A toy text model: counts of the letters a, b, c, d (plus a little of each)."""

    def encode_image(self, images):  # pragma: no cover - text only here
        return np.ones((len(images), 4))

    def encode_text(self, texts):
        return np.array([[t.count(c) + 0.1 for c in "abcd"] for t in texts])


def test_text_inputs_are_encoded_once_and_edited():
    from sksplice import Encoder
    from sksplice.analysis import reconstruction_cosine

    enc = Encoder.from_model(_Letters(), name="letters", device="cpu")
    cd = ConceptDictionary(list("abcd"), np.eye(4), center=False)
    st = SpliceTransformer(l1=0.05, dictionary=cd, encoder=enc, input="text", image_mean=None,
                           device="cpu")
    texts = ["abba", "cab", "dd", "a"]
    ed = ConceptEditor(st, remove=["b"], output="embedding", mode="residual").fit(texts)
    out = ed.transform(texts)
    emb = enc.encode_texts(texts)
    codes, _ = ed.estimator_.decompose(texts)  # the exact SpLiCE weights
    assert_allclose(out, residual_edit(emb, codes, cd.embeddings, None, [1]), atol=1e-6)
    assert np.all(out[:, 1] < normalize_rows(emb)[:, 1])
    assert list(ed.get_feature_names_out()) == ["x0", "x1", "x2", "x3"]
    cos = reconstruction_cosine(ed.estimator_, texts)
    assert cos.shape == (4,) and np.all(cos > 0.9)
