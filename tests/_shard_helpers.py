"""Plain helpers for the shard, fault-injection and file-tree tests: a toy encoder
(no open_clip: images -> colour statistics), a fitted estimator, images on disk,
and a comparison of two decomposition folders."""

from __future__ import annotations

import numpy as np

N_FEATURES = 16
WORDS = [f"concept_{i}" for i in range(24)]


class ToyModel:
    """``encode_image`` gets PIL images, ``encode_text`` strings; 16-d numpy features."""

    def encode_image(self, images):
        out = []
        for im in images:
            a = np.asarray(im.convert("RGB").resize((4, 4)), dtype=np.float64) / 255.0
            out.append(np.concatenate([a.mean(axis=(0, 1)), a[..., 0].ravel()[:13]]) + 0.05)
        return np.asarray(out)

    def encode_text(self, texts):
        letters = "abcdefghijklmnop"
        return np.asarray([[t.count(c) + 0.1 for c in letters] for t in texts], dtype=float)


def toy_encoder():
    from sksplice import Encoder

    return Encoder.from_model(ToyModel(), name="sksplice-test-toy", embed_dim=N_FEATURES,
                              device="cpu")


def toy_estimator(l1=0.05, seed=0, **params):
    """A fitted SpliceTransformer over a random 24-concept dictionary and the toy encoder."""
    from sksplice import ConceptDictionary
    from sksplice.shards import image_transformer

    rng = np.random.default_rng(seed)
    E = rng.normal(size=(len(WORDS), N_FEATURES)) + 0.5
    mean = np.full(N_FEATURES, 0.2)
    params.setdefault("device", "cpu")
    return image_transformer(toy_encoder(), ConceptDictionary(WORDS, E), mean, l1=l1,
                             **params)


def write_png(path, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(path, format="PNG")
    return path


def image_tree(root, layout, broken=()):
    """Images at the relative paths of ``layout`` (distinct content); ``broken`` ones are junk."""
    for i, rel in enumerate(layout):
        if rel in broken:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"not an image")
        else:
            write_png(root / rel, i)
    return root


def same_decomposition(a, b):
    """Whether two loaded decompositions hold the same rows, codes, labels and cosines."""
    return (a.images == b.images and a.classes == b.classes
            and np.array_equal(a.labels, b.labels)
            and a.codes.shape == b.codes.shape and (a.codes != b.codes).nnz == 0
            and np.allclose(a.cosine, b.cosine, rtol=0, atol=1e-12, equal_nan=True)
            and a.bad_files == b.bad_files
            and list(a.concept_names) == list(b.concept_names))


def toy_words(n, seed=0):
    """``n`` distinct concept names whose toy text embeddings differ."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnop"))
    return ["".join(rng.choice(letters, 10)) + str(i) for i in range(n)]
