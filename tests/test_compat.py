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
