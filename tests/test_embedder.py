"""CLIPEmbedder: a stateless images/texts -> embeddings transformer that pipelines can cache."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from _clip_helpers import TINY, count_calls

from sksplice import (
    CLIPEmbedder,
    ConceptDictionary,
    Encoder,
    SpliceTransformer,
    get_encoder,
)


@pytest.fixture(autouse=True)
def _sandbox(offline_sandbox):
    return offline_sandbox


@pytest.fixture
def spec(tiny_checkpoint):
    return (TINY, str(tiny_checkpoint))


def test_fit_is_cheap_and_transform_embeds(spec, image_files, monkeypatch):
    paths, _ = image_files
    img_calls = count_calls(monkeypatch, Encoder, "encode_images")
    emb = CLIPEmbedder(spec, device="cpu").fit(paths)
    assert img_calls == [] and emb.embed_dim_ == 32
    X = emb.transform(paths)
    assert X.shape == (5, 32) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(X, get_encoder(spec, device="cpu").encode_images(paths), atol=1e-6)
    assert emb.get_feature_names_out().tolist() == [f"clipembedder{i}" for i in range(32)]


def test_texts(spec):
    emb = CLIPEmbedder(spec, input="text", device="cpu")
    T = emb.fit_transform(["a dog", "a cat"])
    np.testing.assert_allclose(T, get_encoder(spec, device="cpu").encode_texts(["a dog", "a cat"]),
                               atol=1e-6)
    np.testing.assert_allclose(emb.transform(np.array([["a dog"], ["a cat"]])), T, atol=1e-6)


def test_stateless_transform_without_fit(spec, image_files):
    paths, _ = image_files
    assert CLIPEmbedder(spec, device="cpu").transform(paths[:2]).shape == (2, 32)


def test_pickles_without_the_model(spec, image_files):
    paths, _ = image_files
    emb = CLIPEmbedder(spec, device="cpu").fit(paths)
    X = emb.transform(paths)
    blob = pickle.dumps(emb)
    assert len(blob) < 5_000
    np.testing.assert_allclose(pickle.loads(blob).transform(paths), X, atol=1e-6)


def test_parameter_validation(spec):
    with pytest.raises(ValueError, match="input"):
        CLIPEmbedder(spec, input="audio").fit(["x"])
    with pytest.raises(ValueError, match="batch_size"):
        CLIPEmbedder(spec, batch_size=0).fit(["x"])


def test_pipeline_memory_caches_the_embeddings(spec, image_files, tmp_path, monkeypatch):
    """GridSearchCV over l1 on a cached embedding step encodes each training set once."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    paths, _ = image_files
    paths = paths * 2  # 10 images, 2 classes
    y = np.arange(10) % 2
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(12)]
    cd = ConceptDictionary(names, rng.normal(size=(12, 32)))
    calls = count_calls(monkeypatch, Encoder, "encode_images")
    pipe = Pipeline(
        [("embed", CLIPEmbedder(spec, device="cpu")),
         ("splice", SpliceTransformer(dictionary=cd, input="embedding", image_mean=None,
                                      device="cpu")),
         ("clf", LogisticRegression())],
        memory=str(tmp_path / "joblib"),
    )
    search = GridSearchCV(pipe, {"splice__l1": [0.01, 0.1, 0.3]}, cv=2).fit(paths, y)
    # the 2 training folds and the final refit are encoded once each (not once per l1: the
    # fitted embedding step comes from the cache), plus one encoding of the test fold per
    # candidate and fold for scoring (Pipeline memory caches fit_transform, not predict):
    # 3 + 3 * 2 = 9, against 3 * 2 + 3 * 2 + 1 = 13 without memory
    assert len(calls) == 9
    assert calls.count(10) == 1  # the refit on all 10 images
    search.fit(paths, y)
    assert len(calls) == 9 + 6  # the second search re-encodes only the scoring folds


def test_set_params_encoder_reloads_the_model(spec, tiny_model, image_files):
    """A transform after set_params(encoder=B) uses B, not the cached A."""
    paths, _ = image_files
    emb = CLIPEmbedder(spec, device="cpu")
    A = emb.transform(paths)
    import copy

    import torch

    model_b = copy.deepcopy(tiny_model)
    with torch.no_grad():  # a different model: perturb the image tower of a copy
        for p in model_b.visual.parameters():
            p.add_(0.05 * torch.randn_like(p))
    other = Encoder.from_model(model_b, name="b", device="cpu")
    emb.set_params(encoder=other)
    B = emb.transform(paths)
    assert not np.allclose(A, B, atol=1e-4)
    np.testing.assert_allclose(B, other.encode_images(paths), atol=1e-6)
    emb.set_params(encoder=spec)
    np.testing.assert_allclose(emb.transform(paths), A, atol=1e-6)


def test_texts_from_tables_and_bad_rows(spec):
    import pandas as pd

    emb = CLIPEmbedder(spec, input="text", device="cpu")
    T = emb.transform(pd.DataFrame({"caption": ["a dog", "a cat", "snow"]}))
    assert T.shape == (3, 32)
    with pytest.raises(TypeError, match=r"X\[1\] is a int"):
        emb.transform(["a dog", 3])
    with pytest.raises(ValueError, match="input='text'"):
        CLIPEmbedder(spec, device="cpu").transform(["not an image"])
    with pytest.raises(ValueError, match="needs images"):
        CLIPEmbedder(spec, device="cpu").transform(np.zeros((2, 8, 8, 3)))
