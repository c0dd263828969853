"""The SpLiCE paper's intervention experiment: remove concepts, measure zero-shot and probe."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sksplice import ConceptDictionary, ConceptEditor, SpliceTransformer, ZeroShotClassifier
from sksplice.editing import match_concepts

DOG_WORDS = ["dog", "bulldog", "puppy"]


def _unit(X):
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms == 0, 1, norms)


def _zeroed_probe(probe, columns):
    """A copy of a fitted linear probe whose coefficients of ``columns`` are zero."""
    zeroed = clone(probe)
    for name in ("classes_", "coef_", "intercept_", "n_features_in_", "n_iter_"):
        setattr(zeroed, name, np.copy(getattr(probe, name)))
    zeroed.coef_[:, columns] = 0.0
    return zeroed


def test_editing_codes_before_a_probe_zeroes_its_coefficients():
    """probe(edit(codes)) == probe with the removed concepts' coefficients set to zero."""
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(10)]
    C = rng.normal(size=(10, 12))
    y = np.repeat([0, 1, 2], 20)
    X = C[y] + C[3 + rng.integers(0, 7, size=60)] + 0.3 * rng.normal(size=(60, 12))
    st = SpliceTransformer(l1=0.05, dictionary=ConceptDictionary(names, C), image_mean=None,
                           device="cpu").fit(X)
    codes = st.transform(X)
    probe = LogisticRegression().fit(codes, y)
    editor = ConceptEditor(st, remove=["c0", "c4"]).fit(X)
    removed = [names.index(n) for n in editor.removed_concepts_]
    edited = editor.transform(X)
    zeroed = _zeroed_probe(probe, removed)
    assert_allclose(probe.decision_function(edited), zeroed.decision_function(codes),
                    atol=1e-12)
    assert_allclose(probe.predict_proba(edited), zeroed.predict_proba(codes), atol=1e-12)
    # and it does something: the c0 class loses its evidence
    assert np.mean(probe.predict(edited)[y == 0] == 0) < np.mean(probe.predict(codes)[y == 0] == 0)


# ------------------------------------------------------------------ real data


@pytest.fixture(scope="module")
def imagenet_dogs(imagenet_text, lvis):
    """ImageNet class texts over LVIS (l1=0.15), and which rows are dog classes (151-268)."""
    _, head = imagenet_text
    names, L = lvis
    names = [n.replace("_", " ") for n in names]
    st = SpliceTransformer(l1=0.15, dictionary=ConceptDictionary(names, L),
                           image_mean=_unit(L).mean(0), device="cpu").fit()
    idx = np.arange(head.shape[0])
    return st, head, (idx >= 151) & (idx <= 268)


def test_removing_dog_concepts_moves_the_dog_classes_only(imagenet_dogs):
    st, head, is_dog = imagenet_dogs
    y = np.arange(len(is_dog))
    plain = make_pipeline(ConceptEditor(st, output="embedding"), ZeroShotClassifier(head))
    edited = make_pipeline(ConceptEditor(st, remove=DOG_WORDS, match="word", output="embedding"),
                           ZeroShotClassifier(head))
    before = plain.fit(head, y).predict(head)
    after = edited.fit(head, y).predict(head)
    assert set(edited[0].removed_concepts_) == {"bulldog", "dog", "dog collar", "pug-dog",
                                                "puppy", "shepherd dog"}
    # independent: zero the dog columns of the weights, recompose, argmax of cosines
    W, _ = st.decompose(head)
    W = W.toarray()
    W[:, match_concepts(DOG_WORDS, st.get_feature_names_out(), match="word")] = 0.0
    X_edit = _unit(_unit(W @ st.dictionary_.embeddings) + st.image_mean_)
    np.testing.assert_array_equal(after, (X_edit @ _unit(head).T).argmax(axis=1))
    moved = before != after
    assert moved[is_dog].mean() >= 0.5          # measured 0.636
    assert moved[~is_dog].mean() <= 0.01        # measured 0.005


def test_probe_on_edited_dog_codes_equals_zeroed_coefficients(imagenet_dogs):
    """A dog-or-not probe on held-out classes: edited codes == zeroed coefficients."""
    st, head, is_dog = imagenet_dogs
    train = np.arange(len(is_dog)) % 2 == 0
    codes = st.transform(head)
    probe = LogisticRegression().fit(codes[train], is_dog[train])
    editor = ConceptEditor(st, remove=DOG_WORDS, match="word").fit(head)
    edited = editor.transform(head[~train])
    removed = match_concepts(DOG_WORDS, st.get_feature_names_out(), match="word")
    zeroed = _zeroed_probe(probe, removed)
    assert_allclose(probe.decision_function(edited), zeroed.decision_function(codes[~train]),
                    atol=1e-10)
    test_dog = is_dog[~train]
    recall_before = probe.predict(codes[~train])[test_dog].mean()
    recall_after = probe.predict(edited)[test_dog].mean()
    assert recall_before >= 0.9 and recall_after <= 0.3  # measured 0.966 -> 0.153
