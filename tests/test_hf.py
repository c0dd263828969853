"""Hugging Face ``transformers`` models: a tiny random-weight CLIPModel and SigLIP, offline."""

from __future__ import annotations

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from sksplice import Encoder, SpliceTransformer, get_encoder  # noqa: E402

# importing transformers and building the models takes ~5 s on a 2-core machine
pytestmark = pytest.mark.slow

TEXTS = ["dog", "a photo of a cat", "x", "hot dog stand at night", "the", "",
         "an extremely long caption " * 20]


@pytest.fixture(autouse=True)
def _sandbox(offline_sandbox, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return offline_sandbox


def _byte_vocab():
    """A CLIP BPE vocabulary of single bytes (every text tokenizes, nothing is unknown)."""
    from tokenizers import pre_tokenizers

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    """(CLIPModel with random weights, CLIPProcessor) built without any download."""
    vocab = _byte_vocab()
    n_vocab = len(vocab)
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=[])
    image_processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = transformers.CLIPConfig(
        text_config={"vocab_size": n_vocab, "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 4,
                     "max_position_embeddings": 77, "bos_token_id": n_vocab - 2,
                     "eos_token_id": n_vocab - 1, "pad_token_id": n_vocab - 1},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32,
                       "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
        projection_dim=24,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(config).eval()
    return model, processor


def _normalize(t):
    t = t.pooler_output if hasattr(t, "pooler_output") else t
    return torch.nn.functional.normalize(t.float(), dim=-1).detach().numpy()


def test_image_and_text_embeddings_equal_get_features(tiny_hf, image_files):
    from PIL import Image

    model, processor = tiny_hf
    enc = get_encoder((model, processor), device="cpu")
    assert enc.truncates_text  # CLIP's text tower is causal: per-batch padding is exact
    paths, _ = image_files
    with torch.inference_mode():
        ref_img = _normalize(model.get_image_features(
            **processor(images=[Image.open(p).convert("RGB") for p in paths], return_tensors="pt")))
        ref_txt = _normalize(model.get_text_features(**processor.tokenizer(
            TEXTS, padding="max_length", truncation=True, max_length=77, return_tensors="pt")))
    img = enc.encode_images(paths, batch_size=2)
    txt = enc.encode_texts(TEXTS, batch_size=3)
    assert img.shape == (5, 24) and txt.shape == (len(TEXTS), 24)
    print(f"HF CLIP max |diff|: images {np.abs(img - ref_img).max():.2e}, "
          f"texts {np.abs(txt - ref_txt).max():.2e}")
    assert np.abs(img - ref_img).max() <= 1e-5
    assert np.abs(txt - ref_txt).max() <= 1e-5
    # a bare model finds no processor offline: a short error saying what to pass
    with pytest.raises(ValueError, match="pass it") as info:
        Encoder.from_model(model)
    assert len(str(info.value)) < 300


def test_spellings_of_a_model_object(tiny_hf):
    model, processor = tiny_hf
    a = Encoder.from_model(model, processor, device="cpu")
    b = get_encoder((model, processor), device="cpu")
    np.testing.assert_array_equal(a.encode_texts(["dog"]), b.encode_texts(["dog"]))
    assert a.identity.startswith("hf/CLIPModel/sha256:") or a.identity.startswith("hf/")
    assert a.embed_dim == 24


def test_pipeline_runs_on_a_model_object(tiny_hf, image_files):
    model, processor = tiny_hf
    enc = get_encoder((model, processor), device="cpu")
    vocab = ["dog", "cat", "red car", "sunset", "mountain", "beach", "city street", "forest"]
    st = SpliceTransformer(l1=0.05, encoder=enc, vocabulary=vocab, image_mean="fit",
                           device="cpu", input="image")
    paths, _ = image_files
    codes = st.fit_transform([str(p) for p in paths])
    assert codes.shape == (5, len(vocab))
    assert list(st.get_feature_names_out()) == vocab


def test_name_loads_from_a_folder_and_the_hf_cache(tiny_hf, tmp_path, monkeypatch):
    model, processor = tiny_hf
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    ref = get_encoder((model, processor), device="cpu").encode_texts(TEXTS)
    enc = get_encoder(f"hf:{folder}", device="cpu")
    np.testing.assert_allclose(enc.encode_texts(TEXTS), ref, atol=1e-6)
    assert enc.identity.startswith("hf/")
    # a model loaded by from_pretrained finds its processor by name_or_path: pass it as is
    loaded = transformers.CLIPModel.from_pretrained(folder)
    np.testing.assert_allclose(get_encoder(loaded, device="cpu").encode_texts(TEXTS), ref,
                               atol=1e-6)
    st = SpliceTransformer(encoder=loaded, vocabulary=["dog", "cat", "car"], image_mean=None,
                           device="cpu", input="text").fit(["a dog"])
    assert st.transform(["a dog", "a car"]).shape == (2, 3)
    from sksplice import CLIPEmbedder

    emb = CLIPEmbedder(encoder=loaded, input="text", device="cpu").fit().transform(TEXTS)
    np.testing.assert_allclose(emb, ref, atol=1e-6)
    # the same files laid out as a Hugging Face cache entry, found offline by repo id
    repo = tmp_path / "hub" / "models--someone--tiny-clip"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    enc = get_encoder("hf:someone/tiny-clip", device="cpu", cache_dir=tmp_path / "hub")
    np.testing.assert_allclose(enc.encode_texts(TEXTS), ref, atol=1e-6)
    # missing: offline-safe, short, names the model and how to provide it
    with pytest.raises(FileNotFoundError, match="someone/absent") as info:
        get_encoder("hf:someone/absent", device="cpu",
                    cache_dir=tmp_path / "hub").encode_texts(["dog"])
    assert "save_pretrained" in str(info.value) and len(str(info.value)) < 600
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_encoder(f"hf:{tmp_path / 'nope'}", device="cpu").encode_texts(["dog"])


def test_bad_objects_give_short_errors(tiny_hf):
    model, _ = tiny_hf
    with pytest.raises(ValueError) as info:
        get_encoder(model.text_model, device="cpu")  # a transformers module, not a CLIP model
    assert len(str(info.value)) < 400 and "CLIPTextModel" in str(info.value)
    with pytest.raises(ValueError, match="hf:org/repo"):
        get_encoder("hf:", device="cpu")


def test_missing_transformers_names_the_extra(monkeypatch):
    import sys

    from sksplice.encoders._hf import require_transformers

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"sksplice\[hf\]"):
        require_transformers()


def test_siglip_is_encoded_at_full_length(tmp_path):
    """SigLIP's text tower is bidirectional: padded to max_length, never truncated."""
    config = transformers.SiglipConfig(
        text_config={"vocab_size": len(_byte_vocab()), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 4,
                     "max_position_embeddings": 16},
        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32,
                       "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
    )
    torch.manual_seed(0)
    model = transformers.SiglipModel(config).eval()
    tokenizer = transformers.CLIPTokenizer(vocab=_byte_vocab(), merges=[])
    tokenizer.model_max_length = 16
    image_processor = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    processor = transformers.SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    enc = Encoder.from_model(model, processor, device="cpu")
    assert not enc.truncates_text
    texts = ["dog", "a cat", "hot dog stand"]
    with torch.inference_mode():
        batch = tokenizer(texts, padding="max_length", max_length=16, truncation=True,
                          return_tensors="pt")
        ref = _normalize(model.get_text_features(input_ids=batch["input_ids"],
                                                 attention_mask=batch["attention_mask"]))
    print(f"HF SigLIP max |diff|: texts {np.abs(enc.encode_texts(texts) - ref).max():.2e}")
    assert np.abs(enc.encode_texts(texts) - ref).max() <= 1e-5
    img = enc.encode_images([np.zeros((40, 40, 3), np.uint8)])
    assert img.shape == (1, model.config.vision_config.hidden_size)
