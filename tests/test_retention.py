"""Zero-shot and retrieval retention in sparsity_sweep, against numpy on the real data."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from sksplice import ConceptDictionary, SpliceTransformer
from sksplice.analysis import SparsitySweep, sparsity_sweep


def _unit(X):
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms == 0, 1, norms)


def _reconstruct(st, X):
    """SpLiCE's reconstruction by hand: normalize(normalize(w @ C) + mean)."""
    W, _ = st.decompose(X)
    W = W.toarray() if hasattr(W, "toarray") else np.asarray(W)
    return _unit(_unit(W @ st.dictionary_.embeddings) + st.image_mean_)


def _ranked(scores, candidates):
    """``candidates`` by decreasing score, ties to the lower index (a full sort)."""
    return candidates[np.lexsort((candidates, -scores[candidates]))]


def _precision_at_k(Q, X, y, k):
    """Each query i against the rows of X other than i: share of its k nearest with y[i]."""
    cos = _unit(Q) @ _unit(X).T
    n = len(y)
    hits = []
    for i in range(n):
        top = _ranked(cos[i], np.delete(np.arange(n), i))[:k]
        hits.append(np.mean(y[top] == y[i]))
    return float(np.mean(hits))


def _recall_at_k(Q, y, G, g_labels, k):
    cos = _unit(Q) @ _unit(G).T
    return float(np.mean([np.isin(y[i], g_labels[_ranked(cos[i], np.arange(len(G)))[:k]])
                          for i in range(len(y))]))


# ------------------------------------------------------------------ real data


@pytest.fixture(scope="module")
def imagenet_over_lvis(imagenet_text, lvis):
    _, head = imagenet_text
    names, L = lvis
    st = SpliceTransformer(dictionary=ConceptDictionary(names, L), image_mean=_unit(L).mean(0),
                           device="cpu")
    return st, head


def test_zero_shot_retention_matches_numpy_on_imagenet(imagenet_over_lvis):
    """The 1000 ImageNet class texts over LVIS: 0.997 at l1=0.05, 0.646 at 0.25 (issue 17)."""
    st, head = imagenet_over_lvis
    y = np.arange(1000)
    grid = [0.05, 0.25]
    sweep = sparsity_sweep(st, head, grid, y=y, probe="drop", class_embeddings=head,
                           retrieval_k=5, retrieval_gallery=(head, y))
    assert sweep.accuracy is None and sweep.scoring is None  # no probe: one sample a class
    expected_zs, expected_rec = [], []
    for l1 in grid:
        X_hat = _reconstruct(st.set_params(l1=l1).fit(), head)
        expected_zs.append(np.mean((X_hat @ _unit(head).T).argmax(axis=1) == y))
        expected_rec.append(_recall_at_k(X_hat, y, head, y, 5))
    assert_allclose(sweep.zero_shot_accuracy, expected_zs, atol=1e-12)
    assert_allclose(sweep.zero_shot_accuracy, [0.997, 0.646], atol=0.005)
    dense_zs = np.mean((_unit(head) @ _unit(head).T).argmax(axis=1) == y)
    assert sweep.dense_zero_shot_accuracy == pytest.approx(dense_zs, abs=1e-12)
    # image-to-text recall against the class texts: recall@5 >= recall@1 = zero-shot accuracy
    assert_allclose(sweep.retrieval_recall, expected_rec, atol=1e-12)
    assert np.all(sweep.retrieval_recall >= sweep.zero_shot_accuracy)
    assert sweep.dense_retrieval_recall == pytest.approx(_recall_at_k(head, y, head, y, 5),
                                                         abs=1e-12)
    # one sample per class: no other sample shares a label, precision is zero by definition
    assert_allclose(sweep.retrieval_precision, 0.0)
    frame = sweep.to_frame()
    assert {"zero_shot_accuracy", "dense_zero_shot_accuracy", "retrieval_recall",
            "dense_retrieval_recall"} <= set(frame.columns)
    assert_allclose(frame["dense_zero_shot_accuracy"], dense_zs)


def test_retrieval_precision_matches_numpy_on_micrographs(micrographs, lvis, clip_image_mean):
    """Same-technique precision@10 of the 867 micrographs: 0.657 at l1=0.1, dense 0.742."""
    X, labels = micrographs
    y = np.array([r["technique"] for r in labels])
    names, L = lvis
    st = SpliceTransformer(dictionary=ConceptDictionary(names, L), image_mean=clip_image_mean,
                           device="cpu")
    grid = [0.1, 0.3]
    # a text-like gallery: one unit-norm centroid per technique, labelled by it
    techniques = np.unique(y)
    centroids = _unit(np.stack([_unit(X)[y == t].mean(axis=0) for t in techniques]))
    sweep = sparsity_sweep(st, X, grid, y=y, probe="drop", retrieval_k=10,
                           retrieval_gallery=(centroids, techniques))
    expected = [_precision_at_k(_reconstruct(st.set_params(l1=l1).fit(), X), X, y, 10)
                for l1 in grid]
    assert_allclose(sweep.retrieval_precision, expected, atol=1e-12)
    assert sweep.retrieval_precision[0] == pytest.approx(0.657, abs=0.0005)
    dense = _precision_at_k(X, X, y, 10)
    assert sweep.dense_retrieval_precision == pytest.approx(dense, abs=1e-12)
    assert dense == pytest.approx(0.742, abs=0.0005)
    expected_rec = [_recall_at_k(_reconstruct(st.set_params(l1=l1).fit(), X), y, centroids,
                                 techniques, 10) for l1 in grid]
    assert_allclose(sweep.retrieval_recall, expected_rec, atol=1e-12)
    assert sweep.retrieval_k == 10 and sweep.zero_shot_accuracy is None


# ------------------------------------------------------------------ synthetic


@pytest.fixture
def clusters():
    """Three classes around three concept directions, plus the class "texts"."""
    rng = np.random.default_rng(3)
    C = rng.normal(size=(12, 16))
    y = np.repeat([0, 1, 2], 10)
    X = C[y] + 0.5 * C[3 + rng.integers(0, 9, size=30)] + 0.3 * rng.normal(size=(30, 16))
    st = SpliceTransformer(dictionary=ConceptDictionary([f"c{i}" for i in range(12)], C),
                           image_mean=None, device="cpu")
    return st, X, y, C[:3]


def test_retention_with_a_probe_and_named_classes(clusters):
    st, X, y, head = clusters
    names = np.array(["a", "b", "c"])
    sweep = sparsity_sweep(st, X, [0.01, 100.0], y=names[y], cv=3, dense_baseline=True,
                           class_embeddings=head, classes=names, retrieval_k=3)
    assert sweep.accuracy.shape == (2,) and sweep.dense_accuracy is not None
    # all-zero codes reconstruct one point: zero-shot picks one class, a third are right
    assert sweep.mean_l0[1] == 0 and sweep.zero_shot_accuracy[1] == pytest.approx(1 / 3)
    assert sweep.zero_shot_accuracy[0] >= 0.9 and sweep.dense_zero_shot_accuracy >= 0.9
    # ... and rank every candidate alike: ties go to the first, samples 0, 1, 2 (class "a")
    assert sweep.retrieval_precision[1] == pytest.approx(
        _precision_at_k(np.ones_like(X), X, names[y], 3), abs=1e-12)
    rec = sweep.to_records()[0]
    assert rec["dense_zero_shot_accuracy"] == sweep.dense_zero_shot_accuracy
    assert "retrieval_recall" not in rec


def test_retention_errors_name_the_fix(clusters):
    st, X, y, head = clusters
    with pytest.raises(ValueError, match="class_embeddings needs the true labels"):
        sparsity_sweep(st, X, [0.1], class_embeddings=head)
    with pytest.raises(ValueError, match="retrieval_k needs the true labels"):
        sparsity_sweep(st, X, [0.1], retrieval_k=3)
    with pytest.raises(ValueError, match="not among the 3 classes"):
        sparsity_sweep(st, X, [0.1], y=y + 1, probe="drop", class_embeddings=head)
    with pytest.raises(ValueError, match="retrieval_k=30 is more than the 29 other samples"):
        sparsity_sweep(st, X, [0.1], y=y, probe="drop", retrieval_k=30)
    with pytest.raises(ValueError, match="positive integer"):
        sparsity_sweep(st, X, [0.1], y=y, probe="drop", retrieval_k=0.5)
    with pytest.raises(ValueError, match="needs retrieval_k"):
        sparsity_sweep(st, X, [0.1], y=y, probe="drop", retrieval_gallery=(head, [0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels \[2\] of y have no item"):
        sparsity_sweep(st, X, [0.1], y=y, probe="drop", retrieval_k=1,
                       retrieval_gallery=(head[:2], [0, 1]))
    with pytest.raises(ValueError, match="same CLIP model"):
        sparsity_sweep(st, X, [0.1], y=y, probe="drop", retrieval_k=1,
                       retrieval_gallery=(head[:, :4], [0, 1, 2]))
    with pytest.raises(ValueError, match="a pair"):
        sparsity_sweep(st, X, [0.1], y=y, probe="drop", retrieval_k=1, retrieval_gallery=head)
    with pytest.raises(ValueError, match="'drop'"):
        sparsity_sweep(st, X, [0.1], y=y, probe="none")
    with pytest.raises(ValueError, match="needs labels y and a probe"):
        sparsity_sweep(st, X, [0.1], y=y, probe="drop", dense_baseline=True)


def test_sweep_fields_default_to_none():
    sweep = SparsitySweep(l1=np.array([0.1]), mean_l0=np.array([3.0]), cosine=np.array([0.7]),
                          zero_fraction=np.zeros(1))
    assert sweep.zero_shot_accuracy is None and sweep.retrieval_recall is None
    assert list(sweep.to_records()[0]) == ["l1", "mean_l0", "cosine", "zero_fraction"]
