"""ZeroShotClassifier: against numpy on the real ImageNet head, inputs, sklearn's checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import CHECK_DIMS, DEFAULT_DIM
from scipy.special import softmax
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import estimator_checks_generator, parametrize_with_checks

from sksplice import ConceptDictionary, ConceptEditor, SpliceTransformer, ZeroShotClassifier
from sksplice.zero_shot import IMAGENET_TEMPLATES, build_class_embeddings


def _unit(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


# ------------------------------------------------------------------ real data


def test_predict_is_the_argmax_of_cosines_on_the_imagenet_head(imagenet_text, lvis):
    names, head = imagenet_text
    _, L = lvis
    # ImageNet's names repeat ("missile", "sunglasses"): the labels are the column indices
    with pytest.raises(ValueError, match="duplicate labels .*'missile'"):
        ZeroShotClassifier(head, classes=names).fit(L)
    clf = ZeroShotClassifier(head).fit(L)
    cos = _unit(L) @ _unit(head).T  # independent: the cosines by hand
    np.testing.assert_allclose(clf.decision_function(L), cos, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(L), cos.argmax(axis=1))
    np.testing.assert_allclose(clf.predict_proba(L), softmax(100 * cos, axis=1), atol=1e-12)
    np.testing.assert_allclose(clf.predict_log_proba(L[:5]),
                               np.log(softmax(100 * cos[:5], axis=1)), atol=1e-9)
    # the head classifies its own rows (all but the near-duplicate classes' twins)
    own = _unit(head) @ _unit(head).T
    expected = np.mean(own.argmax(axis=1) == np.arange(len(names)))
    assert clf.score(head, np.arange(len(names))) == pytest.approx(expected, abs=1e-12)
    assert expected >= 0.995


def test_reconstructions_keep_zero_shot_accuracy_as_measured(imagenet_text, lvis):
    """The ImageNet rows over LVIS, reconstructed: top-1 0.997 at l1=0.05, 0.646 at 0.25."""
    _, head = imagenet_text
    lvis_names, L = lvis
    mu = _unit(L).mean(axis=0)
    st = SpliceTransformer(l1=0.25, dictionary=ConceptDictionary(lvis_names, L),
                           image_mean=mu, device="cpu")
    pipe = make_pipeline(ConceptEditor(st, output="embedding"),
                         ZeroShotClassifier(head)).fit(head, np.arange(1000))
    X_hat = st.fit().inverse_transform(st.transform(head))
    expected = np.mean((_unit(X_hat) @ _unit(head).T).argmax(axis=1) == np.arange(1000))
    assert pipe.score(head, np.arange(1000)) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.646, abs=0.005)


# ------------------------------------------------------------------ inputs


@pytest.fixture
def head3():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3, 6)), rng.normal(size=(20, 6))


def test_the_same_inputs_as_the_other_estimators(head3):
    pd = pytest.importorskip("pandas")
    torch = pytest.importorskip("torch")
    E, X = head3
    clf = ZeroShotClassifier(torch.from_numpy(E), classes=["a", "b", "c"]).fit(X)
    expected = clf.predict(X)
    assert list(clf.predict(torch.from_numpy(X))) == list(expected)
    assert list(clf.predict(torch.from_numpy(X).to(torch.bfloat16))) == list(
        clf.predict(torch.from_numpy(X).to(torch.bfloat16).float().numpy()))
    assert list(clf.predict(pd.Series(list(X)))) == list(expected)
    assert list(clf.predict(pd.DataFrame({"emb": list(X)}))) == list(expected)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    fitted = ZeroShotClassifier(E).fit(frame)
    assert list(fitted.feature_names_in_) == list(frame.columns)
    np.testing.assert_array_equal(fitted.predict(frame), fitted.predict(X))
    pl = pytest.importorskip("polars")
    assert list(clf.predict(pl.Series("emb", list(X)))) == list(expected)


class _Letters:
    """A toy CLIP: texts and images map to letter counts of "abc" (images: their mean)."""

    def encode_text(self, texts):
        import torch

        return torch.tensor([[t.count(c) + 0.01 for c in "abc"] for t in texts],
                            dtype=torch.float32)

    def encode_image(self, images):
        return images.reshape(images.shape[0], 3, -1).mean(dim=2)


def test_class_names_through_an_encoder_with_templates():
    clf = ZeroShotClassifier(classes=["aaa", "bbb", "ccc"], encoder=_Letters(),
                             templates=["{}", "a photo of {}"], device="cpu").fit()
    # built by hand: each template encoded, normalised, averaged, normalised again
    enc = np.array([[t.count(c) + 0.01 for c in "abc"] for name in ["aaa", "bbb", "ccc"]
                    for t in (name, f"a photo of {name}")])
    expected = _unit(_unit(enc).reshape(3, 2, 3).mean(axis=1))
    np.testing.assert_allclose(clf.class_embeddings_, expected, atol=1e-6)
    assert list(clf.classes_) == ["aaa", "bbb", "ccc"]
    clf.set_params(input="text")
    assert list(clf.predict(["cab ccc", "bb"])) == ["ccc", "bbb"]


def test_builtin_templates_are_clips_80():
    assert len(IMAGENET_TEMPLATES) == len(set(IMAGENET_TEMPLATES)) == 80
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    assert "itap of a {}." in IMAGENET_TEMPLATES


def test_builtin_templates_are_open_clips_list():
    zero_shot_metadata = pytest.importorskip("open_clip.zero_shot_metadata")
    assert [t("{}") for t in zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES] == list(
        IMAGENET_TEMPLATES)


def test_images_and_texts_through_a_clip_model(tiny_checkpoint, image_files, offline_sandbox):
    """Image paths, uint8 arrays and texts go through a (random-weight) open_clip model."""
    from _clip_helpers import TINY

    from sksplice import get_encoder

    enc = get_encoder((TINY, str(tiny_checkpoint)), device="cpu")
    paths, arrays = image_files
    clf = ZeroShotClassifier(classes=["dog", "cat", "car"], encoder=enc,
                             templates=["a photo of a {}.", "a {}."], device="cpu").fit()
    # the head by hand: each template encoded, normalised, averaged, normalised again
    T = _unit(enc.encode_texts([t.format(c) for c in ["dog", "cat", "car"]
                                for t in ("a photo of a {}.", "a {}.")]))
    np.testing.assert_allclose(clf.class_embeddings_, _unit(T.reshape(3, 2, -1).mean(axis=1)),
                               atol=1e-6)
    cos = _unit(enc.encode_images(paths)) @ clf.class_embeddings_.T
    np.testing.assert_allclose(clf.cosine(paths), cos, atol=1e-6)
    np.testing.assert_array_equal(clf.predict(paths), np.array(["dog", "cat", "car"])[
        cos.argmax(axis=1)])
    np.testing.assert_allclose(clf.cosine(arrays), cos, atol=1e-5)
    texts = ["a dog on a beach", "a red car"]
    text_cos = _unit(enc.encode_texts(texts)) @ clf.class_embeddings_.T
    np.testing.assert_allclose(clf.set_params(input="text").cosine(texts), text_cos, atol=1e-6)


def test_build_class_embeddings_checks_templates():
    with pytest.raises(ValueError, match="exactly one"):
        build_class_embeddings(["a"], _Letters(), ["no slot"])


def test_fit_checks_the_labels(head3):
    E, X = head3
    y = np.array([0, 1, 2, 5] * 5)
    with pytest.raises(ValueError, match="not among the 3 classes: 5"):
        ZeroShotClassifier(E).fit(X, y)
    with pytest.raises(ValueError, match="Unknown label type"):
        ZeroShotClassifier(E).fit(X, np.linspace(0, 1, 20))
    with pytest.raises(ValueError, match="3 labels but class_embeddings has 3 rows|one label"):
        ZeroShotClassifier(E, classes=["a", "b"]).fit(X)
    with pytest.raises(ValueError, match="zero-shot head"):
        ZeroShotClassifier(E).fit(X[:, :4])
    with pytest.raises(ValueError, match="needs a CLIP model"):
        ZeroShotClassifier(classes=["a", "b"]).fit()
    clf = ZeroShotClassifier(E).fit(X, y % 3)
    assert clf.score(X, y % 3) == np.mean(clf.predict(X) == y % 3)


def test_binary_decision_function_follows_sklearn(head3):
    E, X = head3
    clf = ZeroShotClassifier(E[:2]).fit(X)
    cos = clf.cosine(X)
    np.testing.assert_allclose(clf.decision_function(X), cos[:, 1] - cos[:, 0])
    assert np.array_equal(clf.decision_function(X) > 0, clf.predict(X) == 1)


def test_edited_embeddings_compose():
    """ConceptEditor(output="embedding") feeds the classifier; removing concepts moves it."""
    rng = np.random.default_rng(1)
    concepts = np.linalg.qr(rng.normal(size=(8, 5)))[0].T  # 5 orthonormal concepts
    y = np.array([0, 1, 2, 3] * 5)
    X = concepts[y] + 0.6 * concepts[4] + 0.02 * rng.normal(size=(20, 8))
    st = SpliceTransformer(l1=0.05, dictionary=ConceptDictionary(
        [f"c{i}" for i in range(5)], concepts, center=False), image_mean=None, device="cpu")
    plain = make_pipeline(ConceptEditor(st, output="embedding"), ZeroShotClassifier(concepts))
    edited = make_pipeline(ConceptEditor(st, remove=["c0"], output="embedding"),
                           ZeroShotClassifier(concepts))
    assert plain.fit(X, y).score(X, y) == 1.0
    pred = edited.fit(X, y).predict(X)
    moved = pred != y
    assert (pred[y == 0] == 4).all()  # what is left of a "c0" sample is its background
    assert moved[y == 0].all() and not moved[y != 0].any()


# ------------------------------------------------------------------ estimator checks

#: n_features (and n_classes, default 3) of the data each check fits, beyond CHECK_DIMS.
ZS_DIMS = {
    **CHECK_DIMS,
    "check_classifier_data_not_an_array": 2,
    "check_classifiers_classes": 2,
    "check_classifiers_train": 2,
    "check_decision_proba_consistency": 2,
    "check_classifiers_regression_target": 10,
}
ZS_CLASSES = {"check_dtype_object": 4, "check_decision_proba_consistency": 2}

EXPECTED_FAILURES = {
    "check_classifiers_train": (
        "asserts a training accuracy above 0.83 on blobs: a zero-shot classifier learns "
        "nothing from (X, y), its predictions come from the fixed class embeddings"
    ),
    "check_classifiers_classes": (
        "fits string labels 'one', 'two', 'three' and expects classes_ to become them; "
        "classes_ is the zero-shot head's, and fit refuses labels that are not among them"
    ),
    "check_classifiers_one_label": (
        "expects predictions to be the one label fit saw; the zero-shot head predicts "
        "all of its classes whatever fit saw"
    ),
}


def _classifier(dim, n_classes=3):
    rng = np.random.default_rng(dim)
    return ZeroShotClassifier(rng.normal(size=(n_classes, dim)))


def _cases():
    configs = {(ZS_DIMS.get(n, DEFAULT_DIM), ZS_CLASSES.get(n, 3)) for n in
               {*ZS_DIMS, *ZS_CLASSES}} | {(DEFAULT_DIM, 3)}
    for dim, k in sorted(configs):
        for estimator, check in estimator_checks_generator(_classifier(dim, k), legacy=True,
                                                           mark="skip"):
            name = getattr(check, "func", check).__name__
            if (ZS_DIMS.get(name, DEFAULT_DIM), ZS_CLASSES.get(name, 3)) != (dim, k):
                continue
            marks = []
            if name in EXPECTED_FAILURES:
                marks = [pytest.mark.xfail(reason=EXPECTED_FAILURES[name], strict=True)]
            yield pytest.param(estimator, check, id=f"{name}[d={dim},k={k}]", marks=marks)


@pytest.mark.parametrize("estimator, check", list(_cases()))
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)


def test_every_named_check_exists():
    names = {getattr(c, "func", c).__name__
             for _, c in estimator_checks_generator(_classifier(DEFAULT_DIM), legacy=True,
                                                    mark="skip")}
    assert set(ZS_DIMS) | set(ZS_CLASSES) | set(EXPECTED_FAILURES) <= names


def _expected_at_default(estimator):
    failures = {
        name: f"fits {dim}-feature data, but this head has {DEFAULT_DIM} features (the class "
              "embeddings fix the embedding dimension); test_sklearn_compatible runs it at "
              "its own dimension"
        for name, dim in ZS_DIMS.items() if dim != DEFAULT_DIM
    }
    failures["check_dtype_object"] = (
        "fits labels 0..3; this head has 3 classes (test_sklearn_compatible runs it with 4)")
    failures.update(EXPECTED_FAILURES)
    return failures


@parametrize_with_checks([_classifier(DEFAULT_DIM)], expected_failed_checks=_expected_at_default)
def test_parametrize_with_checks(estimator, check):
    """scikit-learn's own entry point, every expected failure listed with its reason."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(estimator)
