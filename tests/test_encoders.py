"""Encoders: random-weight open_clip models, checkpoints, inputs, exact truncated texts."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
from _clip_helpers import TINY, TINY_B, count_calls

from sksplice import Encoder, get_encoder, list_encoders
from sksplice.encoders import DEFAULT_ENCODER
from sksplice.encoders._text import causal_text_tower as _causal_text_tower

TEXTS = [
    "dog", "a photo of a cat", "x", "hot dog stand at night", "the", "",
    "an extremely long caption " * 20,  # over the 77-token context: truncated by the tokenizer
]


@pytest.fixture(autouse=True)
def _sandbox(offline_sandbox):
    return offline_sandbox


def _full_context(model, tokenizer, texts):
    import torch

    with torch.inference_mode():
        out = model.encode_text(tokenizer(texts)).float()
    return torch.nn.functional.normalize(out, dim=-1).numpy()


@pytest.mark.slow
def test_registry_and_defaults():
    assert DEFAULT_ENCODER == "ViT-B-32:laion2b_s34b_b79k"
    assert list_encoders() == [
        "ViT-B-32:laion2b_s34b_b79k", "ViT-B-32:openai", "ViT-B-16:openai", "RN50:openai",
    ]
    assert "ViT-L-14:openai" in list_encoders(include_open_clip=True)
    enc = get_encoder(device="cpu")
    assert (enc.model_name, enc.pretrained, enc.embed_dim) == ("ViT-B-32", "laion2b_s34b_b79k", 512)
    assert enc.identity == "open_clip/ViT-B-32/laion2b_s34b_b79k"
    assert get_encoder("ViT-B-32", device="cpu").pretrained == "laion2b_s34b_b79k"
    assert get_encoder("RN50", device="cpu").pretrained == "openai"
    assert get_encoder(("ViT-B-16", "openai"), device="cpu").embed_dim == 512
    assert enc.precision == "fp32"
    # OpenAI-style spellings resolve to open_clip's names (and so to the registered means)
    assert get_encoder("ViT-B/32:OpenAI", device="cpu").identity == "open_clip/ViT-B-32/openai"
    assert get_encoder("ViT-B/16", device="cpu").identity == "open_clip/ViT-B-16/openai"


def test_bad_specifications(tmp_path):
    with pytest.raises(ValueError,
                       match="unknown open_clip model 'ViT-B-23'. Did you mean 'ViT-B-32'"):
        get_encoder("ViT-B-23:openai")
    with pytest.raises(ValueError, match=r"unknown pretrained tag 'laion2b_s34b_b97k'.*"
                                         r"Did you mean 'laion2b_s34b_b79k'"):
        get_encoder("ViT-B-32:laion2b_s34b_b97k")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_encoder(("ViT-B-32", str(tmp_path / "missing.pt")))
    with pytest.raises(ValueError, match="path without a model name"):
        get_encoder(tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="is not an encoder"):
        get_encoder(42)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        import torch

        if torch.cuda.is_available():  # pragma: no cover
            raise ValueError("no CUDA GPU (skip)")
        get_encoder("RN50:openai", device="cuda")
    with pytest.raises(ValueError, match="precision"):
        get_encoder("RN50:openai", device="cpu", precision="fp16")


def test_random_weight_model_texts_and_images(tiny_config, image_files):
    enc = get_encoder((TINY, None), device="cpu")
    assert enc.identity is None  # random weights: never cached
    assert enc.embed_dim == 32
    T = enc.encode_texts(["dog", "cat", "dog"])
    assert T.shape == (3, 32) and T.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(T, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(T[0], T[2], atol=1e-6)
    paths, _ = image_files
    X = enc.encode_images(paths, batch_size=2)
    assert X.shape == (5, 32) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-6)


def test_every_image_input_kind_agrees(tiny_model, image_files):
    from PIL import Image

    enc = Encoder.from_model(tiny_model, device="cpu")
    paths, arrays = image_files
    ref = enc.encode_images([str(p) for p in paths])
    np.testing.assert_array_equal(enc.encode_images(paths), ref)                  # pathlib
    np.testing.assert_allclose(enc.encode_images(arrays), ref, atol=1e-6)         # uint8 (H, W, 3)
    np.testing.assert_allclose(enc.encode_images(np.stack(arrays)), ref, atol=1e-6)  # (n, H, W, 3)
    pil = [Image.open(p) for p in paths]
    np.testing.assert_allclose(enc.encode_images(pil), ref, atol=1e-6)            # PIL
    np.testing.assert_allclose(enc.encode_images(paths[0]), ref[:1], atol=1e-6)   # one image
    # RGBA and grayscale arrays are converted to RGB
    rgba = np.concatenate([arrays[0], np.full((*arrays[0].shape[:2], 1), 255, np.uint8)], axis=2)
    np.testing.assert_allclose(enc.encode_images([rgba]), ref[:1], atol=1e-6)
    gray = arrays[1][:, :, 0]
    g = enc.encode_images([gray, gray[:, :, None]])
    np.testing.assert_allclose(g[0], g[1], atol=1e-6)
    # batching does not change the result
    np.testing.assert_allclose(enc.encode_images(paths, batch_size=1), ref, atol=1e-6)


def test_bad_images_are_named_and_nothing_is_encoded(tiny_model, image_files, tmp_path,
                                                     monkeypatch):
    enc = Encoder.from_model(tiny_model, device="cpu")
    paths, arrays = image_files
    calls = count_calls(monkeypatch, type(tiny_model), "encode_image")
    missing = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match=r"image 3 \(.*nope\.jpg'\) does not exist"):
        enc.encode_images([paths[0], paths[1], paths[2], missing])
    assert calls == []  # checked before any encoding
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError, match=r"image 2 \(.*corrupt\.png'\) could not be read"):
        enc.encode_images([paths[0], paths[1], corrupt], batch_size=1)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(Path(paths[0]).read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.png"):
        enc.encode_images([truncated])
    with pytest.raises(ValueError, match="uint8"):
        enc.encode_images([arrays[0].astype(np.float32) / 255])
    with pytest.raises(ValueError, match="uint8"):
        enc.encode_images(np.zeros((4, 4), dtype=np.float64))
    with pytest.raises(ValueError, match="is a int"):
        enc.encode_images([3])
    with pytest.raises(ValueError, match="no images"):
        enc.encode_images([])
    with pytest.raises(ValueError, match="texts must be strings"):
        enc.encode_texts(["ok", 3])
    with pytest.raises(ValueError, match="no texts"):
        enc.encode_texts([])
    with pytest.raises(ValueError, match="batch_size"):
        enc.encode_texts(["a"], batch_size=0)


@pytest.mark.parametrize("batch_size", [1, 3, 256])
def test_truncated_text_encoding_is_exact_tiny(tiny_model, batch_size):
    enc = Encoder.from_model(tiny_model, device="cpu")
    assert enc.truncates_text
    out = enc.encode_texts(TEXTS, batch_size=batch_size)
    ref = _full_context(tiny_model, enc.tokenizer, TEXTS)
    assert np.abs(out - ref).max() <= 1e-5


@pytest.mark.slow
def test_truncated_text_encoding_is_exact_vit_b_32(monkeypatch):
    """The paper's architecture, random weights: truncated == full context (float32)."""
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    enc = Encoder.from_model(model, device="cpu")
    assert enc.truncates_text
    texts = ["dog", "sunset", "red car", "photograph", "the", "hot air balloon"]
    calls = count_calls(monkeypatch, type(model), "encode_text")
    out = enc.encode_texts(texts, batch_size=4)
    assert calls == []  # the truncated forward replaced the 77-token one
    monkeypatch.undo()
    ref = _full_context(model, enc.tokenizer, texts)
    assert np.abs(out - ref).max() <= 1e-5


def test_truncation_only_where_exact(tiny_config):
    """A bidirectional text tower (no causal mask) is encoded at full length."""
    import open_clip

    model = open_clip.create_model(TINY, pretrained=None,
                                   text_cfg={**open_clip.get_model_config(TINY)["text_cfg"],
                                             "no_causal_mask": True}).eval()
    assert _causal_text_tower(model) is None
    enc = Encoder.from_model(model, device="cpu")
    assert not enc.truncates_text
    out = enc.encode_texts(TEXTS[:4])
    np.testing.assert_allclose(out, _full_context(model, enc.tokenizer, TEXTS[:4]), atol=1e-6)
    # last-token pooling depends on the padding: not truncated either
    model = open_clip.create_model(TINY, pretrained=None,
                                   text_cfg={**open_clip.get_model_config(TINY)["text_cfg"],
                                             "pool_type": "last"}).eval()
    assert _causal_text_tower(model) is None


def test_custom_text_tower_truncation(tiny_config):
    """CustomTextCLIP with open_clip's causal TextTransformer is truncated exactly too."""
    import open_clip

    model = open_clip.create_model(TINY, pretrained=None, force_custom_text=True).eval()
    assert isinstance(model, open_clip.CustomTextCLIP)
    enc = Encoder.from_model(model, device="cpu")
    assert enc.truncates_text
    out = enc.encode_texts(TEXTS, batch_size=2)
    assert np.abs(out - _full_context(model, enc.tokenizer, TEXTS)).max() <= 1e-5


def test_checkpoint_route(tiny_model, tiny_checkpoint, image_files):
    """A local weights file loads through open_clip's checkpoint path, bit for bit."""
    enc = get_encoder((TINY, str(tiny_checkpoint)), device="cpu")
    assert enc.checkpoint == tiny_checkpoint
    assert enc.identity.startswith(f"open_clip/{TINY}/sha256:")
    assert len(enc.identity.split("sha256:")[1]) == 64
    assert get_encoder(f"{TINY}:{tiny_checkpoint}", device="cpu").identity == enc.identity
    ref = Encoder.from_model(tiny_model, device="cpu")
    np.testing.assert_array_equal(enc.encode_texts(TEXTS), ref.encode_texts(TEXTS))
    paths, _ = image_files
    np.testing.assert_allclose(enc.encode_images(paths), ref.encode_images(paths), atol=1e-6)


def test_checkpoint_for_another_architecture(tiny_checkpoint, tiny_config):
    enc = get_encoder((TINY_B, tiny_checkpoint), device="cpu")
    with pytest.raises(ValueError, match=rf"does not fit the architecture '{TINY_B}'.*"
                                         r"model name the checkpoint was trained with"):
        enc.encode_texts(["dog"])


def test_garbage_checkpoint(tmp_path, tiny_config):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        get_encoder((TINY, bad), device="cpu").encode_texts(["dog"])


def test_tag_loading_applies_the_tag_config(monkeypatch, tiny_checkpoint, tiny_config):
    """OpenAI tags get QuickGELU and the tag's preprocessing, from the cached file, offline."""
    import open_clip

    import sksplice.encoders._weights as encoders

    seen = {}
    real = open_clip.create_model_and_transforms

    def fake_create(name, pretrained=None, **kwargs):
        seen.update(name=name, pretrained=pretrained, **kwargs)
        return real(TINY, pretrained=pretrained, device=kwargs["device"])

    monkeypatch.setenv("SKSPLICE_OFFLINE", "1")
    monkeypatch.setattr(encoders, "cached_weights",
                        lambda cfg, cache_dir: (str(tiny_checkpoint), []))
    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    enc = get_encoder("ViT-B-32:openai", device="cpu")
    enc.encode_texts(["dog"])
    assert seen["name"] == "ViT-B-32" and seen["pretrained"] == str(tiny_checkpoint)
    assert seen["force_quick_gelu"] is True
    assert seen["image_interpolation"] == "bicubic"
    assert tuple(seen["image_mean"]) == open_clip.OPENAI_DATASET_MEAN


def test_user_object_bring_your_own_model(image_files):
    """Any object with encode_image/encode_text plus preprocess and tokenizer."""
    import torch

    class ColourModel:
        """Embeds an image by its mean colour, a text by letter counts."""

        def preprocess(self, image):
            return torch.as_tensor(np.asarray(image, dtype=np.float32).mean(axis=(0, 1)))

        def tokenizer(self, texts):
            return torch.tensor([[t.count(c) for c in "rgb"] for t in texts], dtype=torch.float32)

        def encode_image(self, batch):
            assert batch.shape[1] == 3
            return batch + 1.0

        def encode_text(self, tokens):
            return tokens + 0.5

    model = ColourModel()
    enc = get_encoder(model, device="cpu")
    assert enc.embed_dim == 3
    assert enc.identity is None  # not a torch module, no name: never cached on disk
    assert Encoder.from_model(model, name="colours").identity == "custom/colours"
    paths, arrays = image_files
    X = enc.encode_images(paths)
    expected = np.stack([a.reshape(-1, 3).mean(0) + 1 for a in arrays])
    np.testing.assert_allclose(X, expected / np.linalg.norm(expected, axis=1, keepdims=True),
                               atol=1e-5)
    np.testing.assert_allclose(enc.encode_texts(["rrg"]), [[2.5, 1.5, 0.5]] / np.linalg.norm(
        [2.5, 1.5, 0.5]), atol=1e-6)
    # a (model, preprocess, tokenizer) tuple works too
    enc3 = get_encoder((model, model.preprocess, model.tokenizer), device="cpu")
    np.testing.assert_allclose(enc3.encode_images(paths), X)
    with pytest.raises(ValueError, match="one row per input"):
        Encoder.from_model(type("Bad", (), {
            "encode_image": lambda self, b: np.ones((1, 3)),
            "encode_text": lambda self, t: np.ones((1, 3)),
        })()).encode_texts(["a", "b"])


def test_torch_module_identity_tracks_weights(tiny_model, tiny_config):
    import open_clip

    a = Encoder.from_model(tiny_model, name="tiny", device="cpu")
    b = Encoder.from_model(tiny_model, name="tiny", device="cpu")
    other = open_clip.create_model(TINY, pretrained=None)
    c = Encoder.from_model(other, name="tiny", device="cpu")
    assert a.identity == b.identity != c.identity
    assert a.identity.startswith("custom/tiny/sha256:")


def test_pickle_drops_loaded_weights_and_deepcopy_shares(tiny_checkpoint):
    enc = get_encoder((TINY, tiny_checkpoint), device="cpu")
    before = enc.encode_texts(["dog"])
    blob = pickle.dumps(enc)
    assert len(blob) < 10_000  # the model is not pickled
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again.encode_texts(["dog"]), before)
    assert copy.deepcopy(enc) is enc
    assert "sksplice-tiny" in repr(enc)


def test_progress_bar(tiny_model, capsys):
    enc = Encoder.from_model(tiny_model, device="cpu")
    enc.encode_texts(["a", "b", "c"], batch_size=1)
    assert "encoding" not in capsys.readouterr().err  # quiet by default
    enc.encode_texts(["a", "b", "c"], batch_size=1, progress=True)
    assert "encoding texts" in capsys.readouterr().err


def test_truncated_batches_respect_the_token_budget():
    from sksplice.encoders._text import token_budget_spans as _token_budget_spans

    assert _token_budget_spans([3, 3, 3, 4, 4, 10], 8) == [(0, 2), (2, 4), (4, 5), (5, 6)]
    assert _token_budget_spans([90], 77) == [(0, 1)]  # one text always fits
    lengths = sorted(np.random.default_rng(0).integers(3, 77, size=500).tolist())
    spans = _token_budget_spans(lengths, 256 * 77)
    assert spans[0][0] == 0 and spans[-1][1] == 500
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert all((stop - start) * lengths[stop - 1] <= 256 * 77 for start, stop in spans)


def test_reference_code_names_and_ambiguity():
    assert get_encoder("clip:ViT-B/32", device="cpu").identity == "open_clip/ViT-B-32/openai"
    assert get_encoder("clip:RN50", device="cpu").identity == "open_clip/RN50/openai"
    assert get_encoder("open_clip:ViT-B-32", device="cpu").identity == (
        "open_clip/ViT-B-32/laion2b_s34b_b79k")
    # OpenAI's spelling without a tag must not silently pick the LAION weights
    with pytest.raises(ValueError, match="ambiguous") as info:
        get_encoder("ViT-B/32", device="cpu")
    assert "'ViT-B-32:openai'" in str(info.value) and "'ViT-B-32:laion2b_s34b_b79k'" in str(
        info.value)
    with pytest.raises(ValueError, match=r"reference code's names \['clip:ViT-B/32'"):
        get_encoder("clip:ViT-L/14", device="cpu")
    with pytest.raises(ValueError, match="too long"):
        get_encoder("ViT-B-32:" + "x" * 100_000)


def test_errors_never_embed_a_long_repr():
    class Huge:
        def __repr__(self):
            return "Huge(" + "layer, " * 1000 + ")"

    with pytest.raises(ValueError, match="is not an encoder") as info:
        get_encoder(Huge())
    assert len(str(info.value)) < 400 and "layer, layer" not in str(info.value)


def test_decompression_bomb_names_the_file(tiny_model, tmp_path, monkeypatch):
    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64 * 64 > 2 * 100: a "bomb"
    enc = Encoder.from_model(tiny_model, device="cpu")
    with pytest.raises(ValueError, match=r"image 0 \(.*bomb\.png'\) is too large"):
        enc.encode_images([path])


def test_one_meaning_of_looks_like_path():
    from sksplice.encoders import looks_like_path

    for s in ("a/b", "w.pt", "v.txt", "img.JPG", "~/x", "./x"):
        assert looks_like_path(s), s
    for s in ("laion", "openai", "laion2b_s34b_b79k", "mscoco"):
        assert not looks_like_path(s), s
