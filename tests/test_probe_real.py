"""The one-line probe on real CLIP ViT-B/32 data (skips when ../shared/data is absent).

``make_pipeline(SpliceTransformer(l1=...), LogisticRegression())`` with no
scaler and LogisticRegression's defaults is a real probe on the micrographs
(775 images of the 7 imaging techniques with 20 or more images, LVIS
dictionary, the OpenAI ViT-B/32 MSCOCO image mean, 5-fold stratified CV):
never the constant predictor, and at its best l1 at least the dense probe.
"""

from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from sksplice import ConceptDictionary, SpliceTransformer

GRID = (0.05, 0.1, 0.15, 0.2, 0.25)


@pytest.fixture(scope="module")
def techniques(micrographs):
    X, labels = micrographs
    y = np.array([row["technique"] for row in labels])
    counts = collections.Counter(y)
    keep = np.array([counts[t] >= 20 for t in y])
    return X[keep], y[keep]


@pytest.fixture(scope="module")
def lvis_dictionary(lvis):
    names, E = lvis
    return ConceptDictionary(names, E)


def _cv():
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(5, shuffle=True, random_state=0)


def test_the_micrograph_subset_is_the_documented_one(techniques):
    X, y = techniques
    assert X.shape == (775, 512) and len(set(y)) == 7
    majority = collections.Counter(y).most_common(1)[0][1] / len(y)
    assert round(majority, 3) == 0.707


def test_transform_scales_the_exact_weights_and_keeps_their_pattern(techniques,
                                                                    lvis_dictionary,
                                                                    clip_image_mean):
    X = techniques[0][:60]
    st = SpliceTransformer(l1=0.1, dictionary=lvis_dictionary, image_mean=clip_image_mean,
                           device="cpu").fit()
    W = st.transform(X)
    codes, info = st.decompose(X)
    assert info.converged.all()
    # same sparsity pattern, a constant factor, same reconstruction
    assert (W != 0).nnz == codes.nnz and ((W != 0) != (codes != 0)).nnz == 0
    np.testing.assert_allclose(W.toarray(), st.output_scale * codes.toarray(), rtol=1e-12)
    np.testing.assert_allclose(st.inverse_transform(W), st.inverse_transform(codes),
                               atol=1e-12)
    # the exact weights are the SpLiCE reference scale: weights of at most ~0.3
    assert 0 < codes.max() < 0.5
    exact = SpliceTransformer(**{**st.get_params(), "output_scale": 1.0}).fit()
    np.testing.assert_allclose(exact.transform(X).toarray(), codes.toarray())
    np.testing.assert_allclose(st.decompose_embeddings(X)[0].toarray(), codes.toarray())


def test_imagenet_classes_decompose_onto_their_lvis_concept(imagenet_text, lvis_dictionary):
    """The 210 ImageNet classes whose name is an LVIS category: that category comes first."""
    names, X = imagenet_text
    lvis = {n.replace("_", " ").lower(): i for i, n in enumerate(lvis_dictionary.names)}
    pairs = [(i, lvis[n.lower()]) for i, n in enumerate(names) if n.lower() in lvis]
    assert len(pairs) == 210
    st = SpliceTransformer(l1=0.25, dictionary=lvis_dictionary,
                           image_mean=lvis_dictionary.text_mean, device="cpu").fit()
    W = st.transform(X[[i for i, _ in pairs]])
    top = np.asarray(W.argmax(axis=1)).ravel()
    assert np.mean(top == np.array([j for _, j in pairs])) >= 0.95
    assert 1 <= W.getnnz(axis=1).mean() <= 20


@pytest.mark.slow
def test_the_literal_pipeline_is_a_real_probe(techniques, lvis_dictionary, clip_image_mean):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict, cross_val_score
    from sklearn.pipeline import make_pipeline

    X, y = techniques
    majority = collections.Counter(y).most_common(1)[0][1] / len(y)
    dense = cross_val_score(LogisticRegression(), X, y, cv=_cv()).mean()
    assert round(dense, 3) == 0.782
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs iteration notices
        for l1 in GRID:
            pipe = make_pipeline(
                SpliceTransformer(l1=l1, dictionary=lvis_dictionary,
                                  image_mean=clip_image_mean, device="cpu"),
                LogisticRegression(),
            )
            pred = cross_val_predict(pipe, X, y, cv=_cv())
            scores[l1] = np.mean(pred == y)
            # never the constant predictor
            assert len(set(pred)) > 1 and scores[l1] > majority, (l1, scores[l1])
    assert max(scores.values()) >= dense, scores


@pytest.mark.slow
def test_grid_search_over_l1_on_micrographs(techniques, lvis_dictionary, clip_image_mean):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    X, y = techniques
    pipe = make_pipeline(SpliceTransformer(dictionary=lvis_dictionary,
                                           image_mean=clip_image_mean, device="cpu"),
                         LogisticRegression())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gs = GridSearchCV(pipe, {"splicetransformer__l1": [0.05, 0.1, 0.25]},
                          cv=_cv()).fit(X, y)
    assert gs.best_params_["splicetransformer__l1"] in (0.05, 0.1)
    assert gs.best_score_ > 0.782
    assert sp.issparse(gs.best_estimator_[0].transform(X[:3]))
