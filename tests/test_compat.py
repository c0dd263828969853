"""sksplice.compat against the SpLiCE reference code's semantics, on real CLIP embeddings.

The reference (AI4LIFE-GROUP/SpLiCE, ``splice/model.py``) is transcribed below
in numpy/torch: normalise, subtract the image mean, normalise; one
``sklearn.linear_model.Lasso(alpha=l1 / (2 d), positive=True,
fit_intercept=False, max_iter=10000, tol=1e-6)`` per image; reconstruct
``normalize(normalize(w @ C) + mean)``; the cosine is
``diag(recon @ image.T).sum()`` over the batch.  The data: real OpenAI
ViT-B/32 micrograph image embeddings, a dictionary from the real LVIS text
embeddings of the same model, and the reference's ViT-B/32 MSCOCO image mean.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sksplice import ConceptDictionary  # noqa: E402
from sksplice.compat import SPLICE, available_models, get_vocabulary, load  # noqa: E402

L1 = 0.25
N_IMAGES = 24


def _normalize(t):
    return torch.nn.functional.normalize(t, dim=1)


def reference_dictionary(E):
    """The reference ``load``: normalise, subtract the mean, normalise."""
    concepts = _normalize(torch.as_tensor(E, dtype=torch.float64))
    return _normalize(concepts - torch.mean(concepts, dim=0))


def reference_encode_image(image, C, mean, l1, *, intervention=()):
    """The reference ``SPLICE.encode_image`` with ``clip=None`` and solver 'skl'."""
    from sklearn import linear_model

    image = _normalize(torch.as_tensor(image, dtype=torch.float64))
    centered = _normalize(image - mean)
    clf = linear_model.Lasso(alpha=l1 / (2 * mean.shape[0]), fit_intercept=False,
                             positive=True, max_iter=10000, tol=1e-6)
    rows = []
    for i in range(centered.shape[0]):
        clf.fit(C.T.numpy(), centered[i].numpy())
        rows.append(torch.tensor(clf.coef_))
    weights = torch.stack(rows)
    for w in intervention:
        weights[:, w] *= 0
    recon = _normalize(_normalize(weights @ C) + mean)
    return weights, recon, torch.diag(recon @ image.T).sum()


@pytest.fixture(scope="module")
def real(lvis, micrographs, clip_image_mean):
    names, E = lvis
    X, _ = micrographs
    mean = torch.as_tensor(clip_image_mean)
    C_ref = reference_dictionary(E)
    ref = reference_encode_image(X[:N_IMAGES], C_ref, mean, L1)
    cd = ConceptDictionary(names, E)
    return names, E, X[:N_IMAGES], mean, C_ref, ref, cd


def _jaccard(a, b):
    sa, sb = set(np.flatnonzero(a)), set(np.flatnonzero(b))
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0  # two empty supports agree


def test_encode_image_matches_the_reference(real):
    names, _E, X, mean, C_ref, (w_ref, recon_ref, cos_ref), cd = real
    model = SPLICE(mean, cd, l1_penalty=L1, device="cpu")
    # preprocessing: the same dictionary as the reference builds
    dict_diff = np.abs(model.concept_dictionary.embeddings - C_ref.numpy()).max()
    recon = model.encode_image(torch.as_tensor(X, dtype=torch.float32))
    model.return_weights = True
    weights = model.encode_image(X)
    model.return_cosine = True
    w2, cos = model.encode_image(X)
    model.return_weights = False
    recon2, cos2 = model.encode_image(X)
    w_ref, recon_ref = w_ref.numpy(), recon_ref.numpy()
    jac = [_jaccard(a, b) for a, b in zip(weights.numpy(), w_ref, strict=False)]
    print(f"compat vs reference on {len(X)} micrographs x {len(names)} LVIS concepts, l1={L1}: "
          f"dictionary {dict_diff:.1e}, weights {np.abs(weights.numpy() - w_ref).max():.1e}, "
          f"reconstruction {np.abs(recon.numpy() - recon_ref).max():.1e}, cosine sum "
          f"{abs(float(cos) - float(cos_ref)):.1e} ({float(cos_ref):.4f}), Jaccard min "
          f"{min(jac):.3f} mean {np.mean(jac):.3f}")
    assert dict_diff < 1e-6
    assert np.abs(weights.numpy() - w_ref).max() < 1e-6
    assert min(jac) == 1.0
    assert np.abs(recon.numpy() - recon_ref).max() < 1e-6
    assert abs(float(cos) - float(cos_ref)) < 1e-5
    np.testing.assert_array_equal(w2.numpy(), weights.numpy())
    np.testing.assert_array_equal(recon2.numpy(), recon.numpy())
    assert float(cos2) == pytest.approx(float(cos))


def test_recompose_intervene_and_decompose_follow_the_reference(real):
    _names, _E, X, mean, C_ref, _, _cd = real
    model = SPLICE(mean, C_ref, l1_penalty=L1, device="cpu")  # a prepared tensor, as the reference
    model.return_weights = True
    weights = model.encode_image(X[:6]).double()
    # recompose_image: exactly the reference's formula on the same weights
    ref = _normalize(_normalize(weights @ C_ref) + mean)
    assert np.abs(model.recompose_image(weights).numpy() - ref.numpy()).max() < 1e-6
    # intervene_image: the weights with the chosen concepts zeroed
    top = int(weights.sum(0).argmax())
    edited = model.intervene_image(X[:6], [top]).double()
    expected = weights.clone()
    expected[:, top] = 0
    np.testing.assert_allclose(edited.numpy(), expected.numpy(), atol=1e-7)
    model.return_weights = False
    recon = model.intervene_image(X[:6], [top]).double()
    ref = _normalize(_normalize(expected @ C_ref) + mean)
    assert np.abs(recon.numpy() - ref.numpy()).max() < 1e-6
    # decompose takes centred embeddings, as the reference's
    z = _normalize(_normalize(torch.as_tensor(X[:6])) - mean)
    np.testing.assert_allclose(model.decompose(z).numpy(), weights.numpy(), atol=1e-6)


def test_text_path_centres_on_the_vocabulary_mean(real):
    names, E, _X, mean, _C_ref, _, cd = real
    model = SPLICE(mean, cd, l1_penalty=L1, decomp_text=True, return_weights=True, device="cpu")
    w = model.encode_text(E[:3]).numpy()
    assert w.shape == (3, len(names)) and (w >= 0).all()
    assert all(w[i].argmax() == i for i in range(3))  # a concept's own text decomposes to itself
    model.decomp_text = False
    np.testing.assert_allclose(np.linalg.norm(model.encode_text(E[:3]).numpy(), axis=1), 1,
                               atol=1e-6)


def test_names_sizes_and_helpers(splice_data_dir, offline_sandbox, monkeypatch):
    assert available_models() == {"clip": ["ViT-B/32", "ViT-B/16", "RN50"],
                                  "open_clip": ["ViT-B-32"]}
    with pytest.raises(ValueError, match="ambiguous"):
        load("ViT-B/32", "laion")
    with pytest.raises(ValueError, match="reference code's names"):
        load("clip:ViT-L/14", "laion")
    (offline_sandbox / "vocab").mkdir(parents=True)
    (offline_sandbox / "vocab" / "mscoco.txt").write_bytes(
        (splice_data_dir / "mscoco.txt").read_bytes())
    monkeypatch.setenv("SKSPLICE_OFFLINE", "1")
    whole = get_vocabulary("mscoco", -1)
    lines = [ln.strip() for ln in (splice_data_dir / "mscoco.txt").read_text().splitlines()]
    assert "" in lines and "" not in whole            # the reference keeps the blank line
    assert whole == [ln for ln in lines if ln]        # sksplice skips it (documented)
    top = get_vocabulary("mscoco", 10000)
    assert top == whole[-10000:] and "" in lines[-10000:]  # the reference's top 10,000 has it
    shifted = sum(a != b for a, b in zip(top, lines[-10000:], strict=False))
    assert shifted == 9992  # so 9,992 of its top-10,000 indices are one off from sksplice's


def test_load_end_to_end_with_a_local_checkpoint(tiny_checkpoint, tiny_config, offline_sandbox,
                                                 image_files):
    from _clip_helpers import TINY

    vocab = ["dog", "cat", "red car", "sunset", "mountain", "beach"]
    model = load((TINY, str(tiny_checkpoint)), vocab, image_mean=np.zeros(32), l1_penalty=0.1,
                 device="cpu")
    paths, _ = image_files
    recon = model.encode_image([str(p) for p in paths])
    assert recon.shape == (5, 32)
    np.testing.assert_allclose(recon.norm(dim=1).numpy(), 1, atol=1e-5)
    model.return_weights, model.return_cosine = True, True
    weights, cos = model.encode_image([str(p) for p in paths])
    assert weights.shape == (5, len(vocab)) and cos.ndim == 0
    assert model.concepts == vocab
    with pytest.raises(ValueError, match="no reference image mean"):
        load((TINY, str(tiny_checkpoint)), vocab, device="cpu")


# ------------------------------------------- the reference's module-level helpers
def reference_decompose_dataset(batches, C, mean, l1):
    """The reference ``decompose_dataset`` loop over (image, label) batches of embeddings."""
    ret, l0, cosine, total = None, 0, 0, 0
    for image, _ in batches:
        weights, _, batch_cosine = reference_encode_image(image, C, mean, l1)
        ret = weights.sum(0) if ret is None else ret + weights.sum(0)
        l0 += torch.linalg.vector_norm(weights, dim=1, ord=0).sum().item()
        cosine += batch_cosine.item()
        total += image.shape[0]
    return ret / total, l0 / total, cosine / total


def reference_decompose_classes(batches, target_label, C, mean, l1):
    """The reference ``decompose_classes`` loop (its per-label sums and counts)."""
    class_weights, class_totals, l0, cosine, total = {}, {}, 0, 0, 0
    for image, label in batches:
        if target_label is not None:
            idx = torch.argwhere(label == target_label).squeeze()
            if idx.nelement() == 0:
                continue
            image, label = image[idx], label[idx]
            if idx.nelement() == 1:
                image, label = image.unsqueeze(0), label.unsqueeze(0)
        weights, _, batch_cosine = reference_encode_image(image, C, mean, l1)
        for i in range(image.shape[0]):
            key = label[i].item()
            class_weights[key] = class_weights.get(key, 0) + weights[i]
            class_totals[key] = class_totals.get(key, 0) + 1
        l0 += torch.linalg.vector_norm(weights, dim=1, ord=0).sum().item()
        cosine += batch_cosine.item()
        total += image.shape[0]
    return ({k: v / class_totals[k] for k, v in class_weights.items()}, l0 / total,
            cosine / total)


@pytest.fixture(scope="module")
def loader(real, micrographs):
    """A DataLoader of (micrograph embedding, technique label) batches of 5, in file order."""
    from torch.utils.data import DataLoader, TensorDataset

    _names, _E, X, _mean, _C_ref, _, _cd = real
    _, labels = micrographs
    techniques = sorted({row["technique"] for row in labels})
    y = torch.tensor([techniques.index(row["technique"]) for row in labels[: len(X)]])
    return DataLoader(TensorDataset(torch.as_tensor(X), y), batch_size=5, shuffle=False)


def test_decompose_image_matches_the_reference(real):
    from sksplice.compat import decompose_image

    _names, _E, X, mean, C_ref, _, cd = real
    model = SPLICE(mean, cd, l1_penalty=L1, device="cpu")
    for i in (0, 5, 17):
        w_ref, _, cos_ref = reference_encode_image(X[i : i + 1], C_ref, mean, L1)
        weights, l0, cosine = decompose_image(torch.as_tensor(X[i : i + 1]), model, "cpu")
        assert weights.shape == (1, len(cd))
        assert np.abs(weights.numpy() - w_ref.numpy()).max() < 1e-6
        assert l0 == torch.linalg.vector_norm(w_ref.squeeze(), ord=0).item() > 0
        assert isinstance(l0, float) and isinstance(cosine, float)
        assert cosine == pytest.approx(cos_ref.item(), abs=1e-5)
    # the model's flags are left as they were (the reference sets both to True)
    assert model.return_weights is False and model.return_cosine is False


def test_decompose_dataset_matches_the_reference(real, loader):
    from sksplice.compat import decompose_dataset

    _names, _E, X, mean, C_ref, _, cd = real
    model = SPLICE(mean, cd, l1_penalty=L1, device="cpu")
    weights, l0, cosine = decompose_dataset(loader, model, "cpu")
    w_ref, l0_ref, cos_ref = reference_decompose_dataset(loader, C_ref, mean, L1)
    assert weights.shape == (len(cd),)
    assert np.abs(weights.numpy() - w_ref.numpy()).max() < 1e-6
    assert l0 == pytest.approx(l0_ref) and l0 > 1
    assert cosine == pytest.approx(cos_ref, abs=1e-6) and 0.2 < cosine < 1
    # batches of images alone (no labels) give the same averages
    alone = [images for images, _ in loader]
    w2, l02, cos2 = decompose_dataset(alone, model)
    np.testing.assert_allclose(w2.numpy(), weights.numpy(), atol=1e-7)
    assert (l02, cos2) == pytest.approx((l0, cosine))
    with pytest.raises(ValueError, match="no images"):
        decompose_dataset([], model)


def test_decompose_classes_matches_the_reference(real, loader):
    from sksplice.compat import decompose_classes

    _names, _E, X, mean, C_ref, _, cd = real
    model = SPLICE(mean, cd, l1_penalty=L1, device="cpu")
    labels = torch.cat([y for _, y in loader])
    assert len(set(labels.tolist())) > 1  # several classes in the sample
    for target in (None, int(labels[0]), int(labels[-1])):
        got, l0, cosine = decompose_classes(loader, target, model, "cpu")
        ref, l0_ref, cos_ref = reference_decompose_classes(loader, target, C_ref, mean, L1)
        assert sorted(got) == sorted(ref)
        for key in ref:
            assert isinstance(key, int)
            assert np.abs(got[key].numpy() - ref[key].numpy()).max() < 1e-6
        assert l0 == pytest.approx(l0_ref)
        assert cosine == pytest.approx(cos_ref, abs=1e-6)
    with pytest.raises(ValueError, match="no image of label 999"):
        decompose_classes(loader, 999, model)


def test_dataloader_of_preprocessed_images_through_a_backbone(tiny_checkpoint, tiny_config,
                                                             offline_sandbox, image_files):
    from _clip_helpers import TINY
    from PIL import Image
    from torch.utils.data import DataLoader

    from sksplice.compat import decompose_classes, decompose_dataset, decompose_image

    vocab = ["dog", "cat", "red car", "sunset", "mountain", "beach"]
    model = load((TINY, str(tiny_checkpoint)), vocab, image_mean=np.zeros(32), l1_penalty=0.05,
                 device="cpu")
    preprocess = model.clip.preprocess
    paths, _ = image_files
    images = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])
    labels = torch.tensor([0, 1, 0, 1, 1])
    dataset = list(zip(images, labels, strict=True))
    loader = DataLoader(dataset, batch_size=2, shuffle=False)
    model.return_weights = True
    each = model.encode_image(images)  # the weights of each image, one batch
    weights, l0, _ = decompose_dataset(loader, model)
    np.testing.assert_allclose(weights.numpy(), each.numpy().mean(0), atol=1e-6)
    assert l0 == pytest.approx(float((each != 0).sum()) / 5)
    classes, _, _ = decompose_classes(loader, None, model)
    for key in (0, 1):
        np.testing.assert_allclose(classes[key].numpy(),
                                   each.numpy()[labels.numpy() == key].mean(0), atol=1e-6)
    w1, _, _ = decompose_image(images[:1], model)
    np.testing.assert_allclose(w1.numpy(), each.numpy()[:1], atol=1e-6)


def test_tokenizer_and_preprocess_follow_the_reference():
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from PIL import Image

    from sksplice.compat import get_preprocess, get_tokenizer

    texts = ["a photo of a cat", "motorbike", "a police officer in britain"]
    for name in ("clip:ViT-B/32", "clip:RN50", "open_clip:ViT-B-32", "ViT-B-16:openai"):
        tokens = get_tokenizer(name)(texts)
        # clip.tokenize: <start> BPE ids <end>, zero-padded to 77 (open_clip's tokenize)
        assert torch.equal(tokens, open_clip.tokenize(texts))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    # the reference: clip.load(...)[1], and open_clip.create_model_and_transforms(model)[2]:
    # resize (bicubic), centre crop, RGB, to tensor, normalise with OpenAI's statistics
    clip_preprocess = open_clip.image_transform(224, is_train=False, mean=OPENAI_DATASET_MEAN,
                                                std=OPENAI_DATASET_STD)
    expected = clip_preprocess(image)
    for name in ("clip:ViT-B/32", "clip:ViT-B/16", "open_clip:ViT-B-32"):
        got = get_preprocess(name)(image)
        assert got.shape == (3, 224, 224)
        torch.testing.assert_close(got, expected)
    for bad in ("clip:ViT-L/14", "ViT-B/32", "hf:openai/clip-vit-base-patch32"):
        with pytest.raises(ValueError, match="reference code's names|not an open_clip|ambig"):
            get_tokenizer(bad)
