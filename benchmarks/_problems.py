"""Benchmark problems: a synthetic CLIP-like dictionary and the real LVIS / ImageNet data.

No real 10,000-concept CLIP vocabulary embeddings are available offline, so
:func:`clip_like_dictionary` synthesises one with the statistics of CLIP
ViT-B/32 text embeddings (measured on the 1,203 LVIS categories after
``ConceptDictionary`` centring: off-diagonal cosine std 0.09, median
nearest-neighbour cosine 0.53, effective rank about 110, and a dominant
shared direction before centring).  Concepts are clustered (synonyms and
near-synonyms, as in a real vocabulary) around centres drawn from a
power-law covariance, plus a shared mean direction.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("SKSPLICE_SHARED_DATA",
                             Path(__file__).resolve().parents[1].parent / "shared" / "data"))
CLIP_DIR = SHARED / "clip-vit-b32"


def _power_law_sampler(rng, d, decay=1.0, offset=8.0):
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    spec = (np.arange(d) + offset) ** (-decay / 2)

    def draw(n):
        X = (rng.standard_normal((n, d)) * spec) @ Q.T
        return X / np.linalg.norm(X, axis=1, keepdims=True)

    return draw


def clip_like_dictionary(n_concepts=10000, n_features=512, *, seed=0, cluster_size=8,
                         spread=1.0, mean_weight=2.5):
    """A synthetic, coherent, CLIP-like ``ConceptDictionary``.

    Parameters
    ----------
    n_concepts, n_features : int
        Shape of the dictionary.
    seed : int
        Random seed.
    cluster_size : int
        Average number of concepts per cluster of near-synonyms.
    spread : float
        Within-cluster spread (larger: less similar neighbours).
    mean_weight : float
        Weight of the direction shared by all raw embeddings (CLIP's "cone").

    Returns
    -------
    dictionary : ConceptDictionary
    """
    from sksplice import ConceptDictionary

    rng = np.random.default_rng(seed)
    draw = _power_law_sampler(rng, n_features)
    centres = draw(max(1, n_concepts // cluster_size))
    labels = rng.integers(0, len(centres), n_concepts)
    raw = centres[labels] + spread * draw(n_concepts)
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    mu = rng.standard_normal(n_features)
    raw += mean_weight * mu / np.linalg.norm(mu)
    names = [f"concept_{i:05d}" for i in range(n_concepts)]
    return ConceptDictionary(names, raw)


def image_like_inputs(C, n_samples, *, seed=1, n_parts=(10, 40), residual=0.5):
    """Centred, unit-norm inputs that look like CLIP image embeddings to SpLiCE.

    Each row mixes 10-40 concepts with exponential nonnegative weights and
    adds a structured residual that no concept explains, tuned so that
    ``l1 = 0.25`` gives what it gives on real CLIP data (median 12-16
    nonzeros, 4-31 overall; largest concept correlation about 0.5, as for the
    ImageNet rows on the LVIS dictionary).

    Parameters
    ----------
    C : ndarray of shape (n_concepts, n_features)
        Prepared dictionary (unit rows).
    n_samples : int
    seed : int
    n_parts : tuple of int
        Range of the number of concepts mixed per row.
    residual : float
        Relative size of the unexplained part.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_features)
    """
    rng = np.random.default_rng(seed)
    k, d = C.shape
    draw = _power_law_sampler(np.random.default_rng(seed + 1000), d)
    Z = np.empty((n_samples, d))
    for i in range(n_samples):
        m = rng.integers(n_parts[0], n_parts[1] + 1)
        idx = rng.choice(k, m, replace=False)
        z = rng.exponential(size=m) @ C[idx]
        z /= np.linalg.norm(z)
        z += residual * (draw(1)[0] + 0.5 * rng.standard_normal(d) / np.sqrt(d))
        Z[i] = z / np.linalg.norm(z)
    return Z


def lvis_problem():
    """The real LVIS dictionary (1,203 concepts) and the 1,000 ImageNet zero-shot rows.

    Returns ``None`` when ``../shared/data`` is absent.  The ImageNet rows are
    text embeddings, so they are centred with the dictionary's own text mean.

    Returns
    -------
    C : ndarray of shape (1203, 512)
    Z : ndarray of shape (1000, 512)
    """
    from sksplice import ConceptDictionary

    if not (CLIP_DIR / "lvis_text.npy").exists():
        return None
    cats = sorted(json.loads((CLIP_DIR / "lvis_categories.json").read_text()),
                  key=lambda c: c["id"])
    E = np.load(CLIP_DIR / "lvis_text.npy").astype(np.float64)
    cd = ConceptDictionary([c["name"] for c in cats], E)
    X = np.load(CLIP_DIR / "imagenet_zeroshot_head.npy").astype(np.float64).T
    Z = X / np.linalg.norm(X, axis=1, keepdims=True) - cd.text_mean
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    return cd.embeddings, Z


def real_dictionary():
    """All real CLIP ViT-B/32 text embeddings offline: 2,281 concepts.

    The LVIS categories (1,203), the ImageNet classes (1,000 minus the two
    repeated names "missile" and "sunglasses", first occurrence kept) and
    the COCO classes (80), each name prefixed by its source (``lvis:``,
    ``imagenet:``, ``coco:``) so that names shared between sources stay
    distinct concepts.  Returns ``None`` when ``../shared/data`` is absent.

    Returns
    -------
    dictionary : ConceptDictionary
        2,281 concepts, normalised and centred with their own text mean.
    """
    from sksplice import ConceptDictionary

    if not (CLIP_DIR / "lvis_text.npy").exists():
        return None
    cats = sorted(json.loads((CLIP_DIR / "lvis_categories.json").read_text()),
                  key=lambda c: c["id"])
    names = [f"lvis:{c['name']}" for c in cats]
    rows = [np.load(CLIP_DIR / "lvis_text.npy").astype(np.float64)]
    inet = json.loads((CLIP_DIR / "imagenet_classes.json").read_text())
    first = sorted({name: i for i, name in reversed(list(enumerate(inet)))}.values())
    names += [f"imagenet:{inet[i]}" for i in first]
    rows.append(np.load(CLIP_DIR / "imagenet_zeroshot_head.npy").astype(np.float64).T[first])
    coco = [line for line in (CLIP_DIR / "coco_names.txt").read_text().splitlines() if line]
    names += [f"coco:{c}" for c in coco]
    rows.append(np.load(CLIP_DIR / "coco_text.npy").astype(np.float64))
    return ConceptDictionary(names, np.vstack(rows))


def micrograph_problem():
    """The 867 real micrograph image embeddings over the 2,281 real concepts.

    The images are centred with the OpenAI ViT-B/32 MSCOCO image mean
    (``splice/clip_ViT-B-32_image.pt``), as SpLiCE does, and renormalised.
    Returns ``None`` when ``../shared/data`` is absent.

    Returns
    -------
    C : ndarray of shape (2281, 512)
        The prepared dictionary (:func:`real_dictionary`).
    Z : ndarray of shape (867, 512)
        Centred, unit-norm inputs.
    """
    import torch

    mean_path = SHARED / "splice" / "clip_ViT-B-32_image.pt"
    cd = real_dictionary()
    if cd is None or not mean_path.exists():
        return None
    X = np.load(CLIP_DIR / "micrographs_image.npy").astype(np.float64)
    mu = torch.load(mean_path, map_location="cpu").numpy().astype(np.float64)
    Z = X / np.linalg.norm(X, axis=1, keepdims=True) - mu
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    return cd.embeddings, Z
