"""SpliceTransformer with real (random-weight) CLIP models: every input kind end to end, offline."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from _clip_helpers import TINY, count_calls

from sksplice import Encoder, SpliceTransformer, get_encoder
from sksplice.transformer import CenteringWarning

VOCAB = ["dog", "cat", "red car", "sunset", "mountain", "beach", "city street", "forest",
         "snow", "people"]


@pytest.fixture(autouse=True)
def _sandbox(offline_sandbox):
    return offline_sandbox


@pytest.fixture
def encoder_spec(tiny_checkpoint):
    return (TINY, str(tiny_checkpoint))


def _splice(encoder_spec, **kw):
    kw.setdefault("image_mean", "fit")
    return SpliceTransformer(l1=0.05, encoder=encoder_spec, vocabulary=VOCAB, device="cpu", **kw)


def _check_codes(W, n):
    assert sp.issparse(W) and W.format == "csr"
    assert W.shape == (n, len(VOCAB))
    assert W.dtype == np.float32
    assert W.nnz > 0 and W.data.min() > 0


def test_paper_defaults():
    params = SpliceTransformer(l1=0.25).get_params()
    assert params["encoder"] == "ViT-B-32:laion2b_s34b_b79k"
    assert params["vocabulary"] == "laion" and params["vocabulary_size"] == 10000
    assert params["image_mean"] == "auto" and params["prompt_template"] == "{}"
    assert params["l1"] == 0.25 and params["input"] == "auto"


def test_paper_default_pipeline_offline(data_server, splice_data_dir, offline_sandbox):
    """``SpliceTransformer(l1=0.25)`` resolves the paper's setup: the default encoder's cached
    dictionary over the LAION top 10,000 and the open_clip ViT-B-32 reference mean (served by
    the local data server); no model weights are needed for embeddings."""
    import torch

    from sksplice.concepts import _write_entry, dictionary_cache_key
    from sksplice.vocabularies import load_vocabulary

    concepts = load_vocabulary("laion")
    enc = get_encoder(device="cpu")
    key = dictionary_cache_key(enc.identity, concepts, "{}", enc.precision)
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(10000, 512)).astype(np.float32)
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    path = offline_sandbox / "dictionaries" / f"{key[:40]}.npz"
    _write_entry(path, key, concepts, raw, enc.identity, "{}")  # as a first fit would

    X = rng.normal(size=(3, 512))
    st = SpliceTransformer(l1=0.25, device="cpu", max_iter=200)
    W = st.fit(X).transform(X)
    assert st.dictionary_.metadata["cache_hit"] is True  # nothing encoded
    assert st.get_feature_names_out().tolist() == concepts
    ref_mean = torch.load(splice_data_dir / "open_clip_ViT-B-32_image.pt", map_location="cpu")
    np.testing.assert_array_equal(st.image_mean_, ref_mean.numpy().astype(np.float64))
    assert W.shape == (3, 10000)
    assert data_server.requests == ["/vocab/laion.txt", "/means/open_clip_ViT-B-32_image.pt"]


def test_image_paths_end_to_end(encoder_spec, image_files):
    paths, _ = image_files
    st = _splice(encoder_spec)
    W = st.fit_transform([str(p) for p in paths])
    _check_codes(W, len(paths))
    assert st.input_kind_ == "image"
    assert st.get_feature_names_out().tolist() == VOCAB
    # pathlib paths, PIL images and uint8 arrays give the same codes
    from PIL import Image

    for X in (paths, [Image.open(p) for p in paths]):
        np.testing.assert_allclose(st.transform(X).toarray(), W.toarray(), atol=1e-4)


@pytest.mark.parametrize("kind", ["pil", "uint8", "uint8_batch"])
def test_other_image_inputs_end_to_end(encoder_spec, image_files, kind):
    from PIL import Image

    paths, arrays = image_files
    X = {"pil": lambda: [Image.open(p) for p in paths], "uint8": lambda: arrays,
         "uint8_batch": lambda: np.stack(arrays)}[kind]()
    st = _splice(encoder_spec)
    W = st.fit_transform(X)
    _check_codes(W, len(paths))
    assert st.input_kind_ == "image"
    assert st.get_feature_names_out().tolist() == VOCAB


def test_text_end_to_end(encoder_spec):
    st = _splice(encoder_spec, input="text", image_mean="auto")
    texts = ["dog", "red car", "snow"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", CenteringWarning)  # text has its own mean: no warning
        W = st.fit_transform(texts)
    _check_codes(W, 3)
    # text is centred on the vocabulary's text mean, like the concepts themselves
    np.testing.assert_array_equal(st.image_mean_, st.dictionary_.text_mean)
    # a concept's own text decomposes onto that concept (same text, same embedding)
    top = st.get_feature_names_out()[np.asarray(W.argmax(axis=1)).ravel()]
    assert top.tolist() == texts
    with pytest.raises(ValueError, match="input='text'"):
        _splice(encoder_spec).fit(["dog", "cat"])


def test_embeddings_end_to_end(encoder_spec, image_files):
    paths, _ = image_files
    enc = get_encoder(encoder_spec, device="cpu")
    X = enc.encode_images(paths)
    st = _splice(encoder_spec)
    W = st.fit_transform(X)
    _check_codes(W, len(paths))
    assert st.input_kind_ == "embedding"
    np.testing.assert_allclose(W.toarray(), _splice(encoder_spec).fit_transform(paths).toarray(),
                               atol=1e-4)


def test_embedding_dimension_checked_against_the_encoder(encoder_spec, monkeypatch):
    calls = count_calls(monkeypatch, Encoder, "encode_texts")
    X64 = np.random.default_rng(0).normal(size=(4, 64))
    st = _splice(encoder_spec)
    with pytest.raises(ValueError, match="embedding dimension 64 does not match"):
        st.fit(X64)
    assert not hasattr(st, "dictionary_")
    # the encoder's dimension is checked before the vocabulary is encoded
    calls.clear()
    with pytest.raises(ValueError, match=r"embedding dimension 64 does not match the 32 of "
                                         r"encoder=.*another model"):
        st._resolve_dictionary(64)
    assert calls == []


def test_set_params_switches_the_encoder(encoder_spec, tiny_model, image_files):
    paths, _ = image_files
    st = _splice(encoder_spec).fit(paths)
    first = st._get_encoder()
    st.set_params(encoder=Encoder.from_model(tiny_model, name="live", device="cpu"))
    assert st._get_encoder() is not first
    st.fit(paths)
    assert st.dictionary_.metadata["encoder"].startswith("custom/live/")


def test_auto_mean_without_reference_warns(encoder_spec, image_files):
    paths, _ = image_files
    st = _splice(encoder_spec, image_mean="auto")
    with pytest.warns(CenteringWarning, match="broad reference set"):
        st.fit(paths)
    enc = get_encoder(encoder_spec, device="cpu")
    np.testing.assert_allclose(st.image_mean_, enc.encode_images(paths).mean(0), atol=1e-6)


def test_explicit_mean_shape_checked(encoder_spec, image_files):
    paths, _ = image_files
    with pytest.raises(ValueError, match="image_mean has shape"):
        _splice(encoder_spec, image_mean=np.zeros(7)).fit(paths)


def test_bad_image_leaves_transformer_unfitted(encoder_spec, image_files, tmp_path):
    paths, _ = image_files
    st = _splice(encoder_spec)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        st.fit([*paths, tmp_path / "missing.png"])
    assert not hasattr(st, "dictionary_")
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="bad.jpg"):
        st.fit([*paths, bad])
    assert not hasattr(st, "dictionary_")


def test_unknown_encoder_and_vocabulary(image_files):
    paths, _ = image_files
    with pytest.raises(ValueError, match="Did you mean 'ViT-B-32'"):
        SpliceTransformer(encoder="ViT-B-23:openai", device="cpu").fit(paths)
    with pytest.raises(ValueError, match="Did you mean 'laion'"):
        SpliceTransformer(encoder=("ViT-B-32", None), vocabulary="laoin",
                          image_mean=None, device="cpu").fit(np.zeros((2, 512)) + 1)


def test_second_fit_and_grid_search_encode_the_vocabulary_once(encoder_spec, monkeypatch):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    calls = count_calls(monkeypatch, Encoder, "encode_texts")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 32))
    y = np.arange(24) % 2
    st = _splice(encoder_spec, image_mean=None)
    st.fit(X)
    assert calls == [len(VOCAB)]
    _splice(encoder_spec, image_mean=None).fit(X)
    assert calls == [len(VOCAB)]  # the second fit reads the cache
    pipe = make_pipeline(_splice(encoder_spec, image_mean=None), LogisticRegression())
    GridSearchCV(pipe, {"splicetransformer__l1": [0.01, 0.05, 0.2]}, cv=3).fit(X, y)
    assert calls == [len(VOCAB)]  # 10 more fits, all cache hits


def test_pickle_round_trip_with_image_inputs(encoder_spec, image_files):
    paths, _ = image_files
    st = _splice(encoder_spec).fit(paths)
    W = st.transform(paths)
    blob = pickle.dumps(st)
    assert b"state_dict" not in blob and len(blob) < 200_000  # no model inside
    again = pickle.loads(blob)
    np.testing.assert_allclose(again.transform(paths).toarray(), W.toarray(), atol=1e-6)


def test_user_encoder_object(tiny_model, image_files):
    enc = Encoder.from_model(tiny_model, name="tiny-live", device="cpu")
    paths, _ = image_files
    st = SpliceTransformer(l1=0.05, encoder=enc, vocabulary=VOCAB, image_mean="fit",
                           device="cpu")
    _check_codes(st.fit_transform(paths), len(paths))


# --------------------------------------------------------------- encode once
def test_fit_encodes_images_only_to_learn_a_mean(encoder_spec, image_files, monkeypatch):
    paths, _ = image_files
    calls = count_calls(monkeypatch, Encoder, "encode_images")
    mean = np.full(32, 0.01)
    _splice(encoder_spec, image_mean=mean).fit(paths)
    _splice(encoder_spec, image_mean=None).fit(paths)
    _splice(encoder_spec, image_mean=mean).fit()  # X=None: nothing to encode
    assert calls == []
    _splice(encoder_spec, image_mean="fit").fit(paths)
    assert calls == [len(paths)]
    with pytest.raises(ValueError, match="got X=None"):
        _splice(encoder_spec, image_mean="fit").fit()


@pytest.mark.parametrize("image_mean", ["fit", "array", None])
def test_fit_transform_encodes_each_image_once(encoder_spec, image_files, monkeypatch,
                                               image_mean):
    paths, _ = image_files
    mean = np.full(32, 0.01) if image_mean == "array" else image_mean
    calls = count_calls(monkeypatch, Encoder, "encode_images")
    st = _splice(encoder_spec, image_mean=mean)
    W = st.fit_transform(paths)
    assert sum(calls) == len(paths)
    np.testing.assert_allclose(W.toarray(), st.transform(paths).toarray(), atol=1e-5)
    # nothing kept after fit_transform: no attribute holds the fit's embeddings
    assert not [k for k in vars(st) if "embedding" in k]


@pytest.mark.slow
def test_cross_val_score_encodes_each_image_once_per_fold(encoder_spec, image_files,
                                                          monkeypatch):
    """12 images, cv=3: 8 training + 4 test images per fold, 36 encodings (was 60)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline

    paths, _ = image_files
    X = [str(p) for p in (paths * 3)[:12]]
    y = np.arange(12) % 2
    calls = count_calls(monkeypatch, Encoder, "encode_images")
    pipe = make_pipeline(_splice(encoder_spec), LogisticRegression())
    cross_val_score(pipe, X, y, cv=3)
    assert sum(calls) == 36


def test_clones_reuse_the_cached_vocabulary(encoder_spec, monkeypatch):
    from sklearn.base import clone

    calls = count_calls(monkeypatch, Encoder, "encode_texts")
    X = np.random.default_rng(0).normal(size=(4, 32))
    st = _splice(encoder_spec, image_mean=None).fit(X)
    for _ in range(3):
        # one dictionary per process: clones neither re-encode nor re-read it
        assert clone(st).fit(X).dictionary_ is st.dictionary_
    assert calls == [len(VOCAB)]
    other = clone(st).set_params(prompt_template="a photo of {}").fit(X)
    assert other.dictionary_ is not st.dictionary_
    assert calls == [len(VOCAB), len(VOCAB)]


# --------------------------------------------------------------- model mismatch
@pytest.mark.slow
def test_set_params_encoder_on_a_fitted_estimator_warns(encoder_spec, tiny_model, image_files):
    from sksplice import ModelMismatchWarning

    paths, _ = image_files
    st = _splice(encoder_spec, image_mean=None).fit(paths)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelMismatchWarning)
        st.transform(paths)
    st.set_params(encoder=Encoder.from_model(tiny_model, name="other", device="cpu"))
    with pytest.warns(ModelMismatchWarning, match="custom/other") as record:
        st.transform(paths)
    assert record[0].filename == __file__  # points at the user's call
    st.fit(paths)  # refitting rebuilds the dictionary with the new encoder
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelMismatchWarning)
        st.transform(paths)


def test_a_dictionary_from_another_model_warns(encoder_spec, tiny_model, image_files):
    from sksplice import ModelMismatchWarning, build_dictionary

    paths, _ = image_files
    other = Encoder.from_model(tiny_model, name="other", device="cpu")
    cd = build_dictionary(other, VOCAB)
    st = _splice(encoder_spec, dictionary=cd, image_mean=None).fit(paths)
    with pytest.warns(ModelMismatchWarning, match="dictionary or mean came from"):
        st.transform(paths)


# --------------------------------------------------------------- feedback
def test_verbose_shows_progress_and_logs(encoder_spec, image_files, capsys, caplog):
    import logging

    paths, _ = image_files
    st = _splice(encoder_spec, image_mean=None, verbose=1)
    with caplog.at_level(logging.INFO, logger="sksplice"):
        st.fit(paths)
    assert any("building the concept dictionary" in r.message for r in caplog.records)
    assert any(r.name == "sksplice" for r in caplog.records)
    st.transform(paths)
    err = capsys.readouterr().err
    assert "%" in err or "it/s" in err or "img" in err  # a tqdm bar on stderr
    _splice(encoder_spec, image_mean=None).fit(paths).transform(paths)
    assert capsys.readouterr().err == ""  # verbose=0 is silent


def test_convergence_warning_points_at_the_callers_line():
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(0)
    E = rng.normal(size=(40, 16))
    st = SpliceTransformer(l1=0.01, dictionary=([f"c{i}" for i in range(40)], E),
                           image_mean=None, solver="sklearn", max_iter=1, tol=1e-12,
                           device="cpu")
    X = rng.normal(size=(3, 16))
    with pytest.warns(ConvergenceWarning) as record:
        st.fit(X).transform(X)
    assert record[0].filename == __file__


def test_refit_after_set_params_encoder_does_not_warn(encoder_spec, tiny_model, image_files):
    """A refit encodes its mean with the new encoder: no stale mismatch warning."""
    from sksplice import ModelMismatchWarning

    paths, _ = image_files
    st = _splice(encoder_spec, image_mean="fit").fit(paths)
    st.set_params(encoder=Encoder.from_model(tiny_model, name="other", device="cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelMismatchWarning)
        st.fit(paths)
        st.transform(paths)
