"""Probe explanations: per-class concept tables and concept-level permutation importance."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, Normalizer, StandardScaler

from sksplice import ConceptDictionary, SpliceTransformer
from sksplice.analysis import concept_permutation_importance, probe_concepts

pd = pytest.importorskip("pandas")

NAMES = ["cat", "dog", "car", "tree", "sea"]


def _data(n_per_class=30, seed=0):
    """Three classes, each planted on one concept of an identity dictionary."""
    rng = np.random.default_rng(seed)
    y = np.repeat(["pets", "roads", "beach"], n_per_class)
    X = np.abs(rng.normal(size=(y.size, 5))) * 0.15
    X[y == "pets", 0] += 1.0
    X[y == "roads", 2] += 1.0
    X[y == "beach", 4] += 1.0
    return X, y


def _transformer():
    cd = ConceptDictionary(NAMES, np.eye(5), center=False)
    return SpliceTransformer(l1=0.05, dictionary=cd, image_mean=None, device="cpu")


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.mark.parametrize("scaler", [None, MaxAbsScaler(), StandardScaler(with_mean=False)])
def test_table_finds_each_class_planted_concept(data, scaler):
    X, y = data
    steps = [_transformer()] + ([scaler] if scaler is not None else []) + [
        LogisticRegression(C=10.0)]
    probe = make_pipeline(*steps).fit(X, y)
    table = probe_concepts(probe, X, y, top_k=2)
    assert list(table.columns) == ["class", "rank", "concept", "coefficient", "mean_code",
                                   "contribution"]
    top = table[table["rank"] == 1].set_index("class")["concept"].to_dict()
    assert top == {"pets": "cat", "roads": "car", "beach": "sea"}
    assert_allclose(table["contribution"], table["coefficient"] * table["mean_code"])


def test_scaler_is_folded_into_the_coefficient(data):
    """Contributions are the same with and without a scaler that does not centre."""
    X, y = data
    probe = make_pipeline(_transformer(), MaxAbsScaler(), LogisticRegression()).fit(X, y)
    table = probe_concepts(probe, X, y, top_k=None)
    codes = probe[0].transform(X)
    scale = probe[1].scale_
    coef = probe[-1].coef_ / scale
    for c_idx, c in enumerate(probe[-1].classes_):
        rows = table[table["class"] == c].set_index("concept")
        mean = np.asarray(codes[y == c].mean(axis=0)).ravel()
        for j, name in enumerate(NAMES):
            if name in rows.index:
                assert rows.loc[name, "coefficient"] == pytest.approx(coef[c_idx, j])
                assert rows.loc[name, "mean_code"] == pytest.approx(mean[j])


def test_binary_classifier_lists_both_classes(data):
    X, y = data
    keep = y != "beach"
    probe = make_pipeline(_transformer(), LogisticRegression(C=10.0)).fit(X[keep], y[keep])
    table = probe_concepts(probe, X[keep], y[keep], top_k=1)
    assert table.set_index("class")["concept"].to_dict() == {"pets": "cat", "roads": "car"}
    no_y = probe_concepts(probe, X[keep], top_k=None)
    pets = no_y[no_y["class"] == "pets"].set_index("concept")["coefficient"]
    roads = no_y[no_y["class"] == "roads"].set_index("concept")["coefficient"]
    assert_allclose(pets.loc["cat"], -roads.loc["cat"])


def test_probe_errors_name_the_fix(data):
    X, y = data
    with pytest.raises(ValueError, match="fitted Pipeline"):
        probe_concepts(_transformer().fit(X), X, y)
    from sklearn.ensemble import RandomForestClassifier

    forest = make_pipeline(_transformer(), RandomForestClassifier(n_estimators=3)).fit(X, y)
    with pytest.raises(ValueError, match="concept_permutation_importance"):
        probe_concepts(forest, X, y)
    mixing = make_pipeline(_transformer(), Normalizer(), LogisticRegression()).fit(X, y)
    with pytest.raises(ValueError, match="do not scale each feature on its own"):
        probe_concepts(mixing, X, y)
    probe = make_pipeline(_transformer(), LogisticRegression()).fit(X, y)
    with pytest.raises(ValueError, match="class 'pets' of the classifier has no sample"):
        probe_concepts(probe, X[y != "pets"], y[y != "pets"])


def test_permutation_importance_ranks_the_planted_concepts(data):
    X, y = data
    probe = make_pipeline(_transformer(), MaxAbsScaler(), LogisticRegression()).fit(X, y)
    res = concept_permutation_importance(probe, X, y, n_repeats=3, random_state=0)
    assert res.importances.shape == (5, 3)
    top3 = {str(n) for n in res.feature_names[np.argsort(-res.importances_mean)[:3]]}
    assert top3 == {"cat", "car", "sea"}
    assert res.baseline_score == pytest.approx(probe.score(X, y))
    # the same seed gives the same result; a shuffled column never scores better on average
    again = concept_permutation_importance(probe, X, y, n_repeats=3, random_state=0)
    assert_allclose(res.importances, again.importances)


def test_permutation_shuffles_one_sparse_column_exactly(data):
    """The shuffled codes differ from the codes in exactly one column, by a row permutation."""
    X, y = data
    probe = make_pipeline(_transformer(), LogisticRegression()).fit(X, y)
    codes = sp.csr_matrix(probe[0].transform(X))
    seen = []

    class Spy(LogisticRegression):
        def score(self, Xs, ys, sample_weight=None):
            seen.append(sp.csr_matrix(Xs).toarray())
            return super().score(Xs, ys)

    spy = Spy().fit(codes, y)
    pipe = make_pipeline(probe[0], spy)
    concept_permutation_importance(pipe, X, y, n_repeats=2, random_state=1, features=["car"])
    base = codes.toarray()
    assert_allclose(seen[0], base)
    for shuffled in seen[1:]:
        diff = np.flatnonzero(np.any(shuffled != base, axis=0))
        assert set(diff) <= {2}
        assert_allclose(np.sort(shuffled[:, 2]), np.sort(base[:, 2]))
        assert_allclose(np.delete(shuffled, 2, axis=1), np.delete(base, 2, axis=1))


def test_unused_concepts_get_zero_without_scoring(data):
    X, y = data
    probe = make_pipeline(_transformer(), LogisticRegression()).fit(X, y)
    codes = probe[0].transform(X)
    unused = np.flatnonzero(np.diff(sp.csc_matrix(codes).indptr) == 0)
    res = concept_permutation_importance(probe, X, y, n_repeats=2, random_state=0)
    assert np.all(res.importances[unused] == 0)
    with pytest.raises(ValueError, match="not a column"):
        concept_permutation_importance(probe, X, y, features=["kitten"])
    with pytest.raises(ValueError, match="featurizer and at least one step"):
        concept_permutation_importance(make_pipeline(probe[0]), X, y)


def test_column_transformer_probe(data):
    """Feature names splice__<concept> plus a numeric column, dense ColumnTransformer output."""
    from sklearn.compose import ColumnTransformer

    X, y = data
    frame = pd.DataFrame({"embedding": list(X), "size": np.arange(y.size) % 7})
    ct = ColumnTransformer([("splice", _transformer(), "embedding"),
                            ("num", StandardScaler(), ["size"])])
    probe = make_pipeline(ct, LogisticRegression(C=10.0))
    try:
        probe.fit(frame, y)
    except (TypeError, ValueError) as exc:  # a column of per-row arrays needs tabular input
        pytest.skip(f"SpliceTransformer does not read a column of arrays yet: {exc}")
    table = probe_concepts(probe, frame, y, top_k=1)
    assert table.set_index("class")["concept"].to_dict() == {
        "pets": "splice__cat", "roads": "splice__car", "beach": "splice__sea"}
    res = concept_permutation_importance(probe, frame, y, n_repeats=2, random_state=0)
    assert "num__size" in set(res.feature_names)


@pytest.mark.slow
def test_real_micrographs_probe(lvis, micrographs, clip_image_mean):
    """On real embeddings, the table and the importances agree on the leading concepts."""
    names, E = lvis
    X, labels = micrographs
    tech = np.array([r["technique"] for r in labels])
    counts = {t: int(np.sum(tech == t)) for t in set(tech)}
    keep = np.flatnonzero([counts[t] >= 20 for t in tech])
    st = SpliceTransformer(l1=0.1, dictionary=ConceptDictionary(names, E),
                           image_mean=clip_image_mean, device="cpu")
    probe = make_pipeline(st, MaxAbsScaler(), LogisticRegression(max_iter=2000))
    probe.fit(X[keep], tech[keep])
    table = probe_concepts(probe, X[keep], tech[keep], top_k=5)
    assert set(table["class"]) == {t for t, n in counts.items() if n >= 20}
    assert (table["contribution"] > 0).all()
    res = concept_permutation_importance(probe, X[keep], tech[keep], n_repeats=2,
                                         random_state=0)
    best = {str(n) for n in res.feature_names[np.argsort(-res.importances_mean)[:20]]}
    assert best & set(table["concept"])
