"""Shared fixtures: fixed seeds and the real-data files of ../shared/data (skipped when absent)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from _clip_helpers import (
    TINY,
    TINY_B,
    TINY_B_CFG,
    TINY_CFG,
    DataServer,
    guarded_connect,
    splice_layout,
)

#: ../shared/data relative to the project root (override with SKSPLICE_SHARED_DATA).
SHARED_DATA = Path(
    os.environ.get("SKSPLICE_SHARED_DATA",
                   Path(__file__).resolve().parents[1].parent / "shared" / "data")
)
CLIP_DIR = SHARED_DATA / "clip-vit-b32"
SPLICE_DIR = SHARED_DATA / "splice"


# scikit-learn's estimator checks: a dictionary fixes the embedding dimension, and
# each check below fits data of one particular n_features, so it is run against an
# estimator whose dictionary has that dimension (tests/test_common.py,
# tests/test_editing.py); every other check runs at DEFAULT_DIM.
#: n_features of the data each dimension-dependent check fits on.
CHECK_DIMS = {
    "check_fit2d_1feature": 1,
    "check_estimators_overwrite_params": 2,
    "check_estimators_fit_returns_self": 2,
    "check_readonly_memmap_input": 2,
    "check_fit_idempotent": 2,
    "check_fit_check_is_fitted": 2,
    "check_n_features_in": 2,
    "check_n_features_in_after_fitting": 4,
    "check_positive_only_tag_during_fit": 4,
    "check_estimators_dtypes": 5,
    "check_dtype_object": 10,
    "check_fit2d_1sample": 10,
}
DEFAULT_DIM = 3


def _require(path):
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing")
    return path


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture(scope="session")
def shared_data_dir():
    """The ``../shared/data`` folder (skips when absent)."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def splice_data_dir():
    """``../shared/data/splice``: the reference vocabularies and image means."""
    return _require(SPLICE_DIR)


@pytest.fixture(scope="session")
def lvis():
    """LVIS category names and their (unnormalised) CLIP ViT-B/32 text embeddings."""
    _require(CLIP_DIR / "lvis_text.npy")
    cats = json.loads((CLIP_DIR / "lvis_categories.json").read_text())
    cats = sorted(cats, key=lambda c: c["id"])
    names = [c["name"] for c in cats]
    E = np.load(CLIP_DIR / "lvis_text.npy").astype(np.float64)
    return names, E


@pytest.fixture(scope="session")
def imagenet_text():
    """ImageNet class names and their unit-norm zero-shot text embeddings (1000, 512)."""
    _require(CLIP_DIR / "imagenet_zeroshot_head.npy")
    names = json.loads((CLIP_DIR / "imagenet_classes.json").read_text())
    X = np.load(CLIP_DIR / "imagenet_zeroshot_head.npy").astype(np.float64).T
    return names, X


@pytest.fixture(scope="session")
def micrographs():
    """Micrograph image embeddings (867, 512) and their label table (a list of dicts)."""
    import csv

    _require(CLIP_DIR / "micrographs_image.npy")
    X = np.load(CLIP_DIR / "micrographs_image.npy").astype(np.float64)
    with open(CLIP_DIR / "micrographs_labels.csv", newline="") as f:
        labels = list(csv.DictReader(f))
    return X, labels


@pytest.fixture(scope="session")
def clip_image_mean():
    """The OpenAI ViT-B/32 MSCOCO image mean, shape (512,)."""
    import torch

    path = _require(SPLICE_DIR / "clip_ViT-B-32_image.pt")
    return torch.load(path, map_location="cpu").numpy().astype(np.float64)


def coherent_problem(n_concepts=300, n_features=48, n_samples=30, n_active=6, noise=0.02,
                     coherence=2.0, seed=0):
    """A synthetic CLIP-like problem: a coherent dictionary, sparse nonnegative codes, noise.

    Returns ``(names, E, X, W_true)`` where ``E`` is the raw dictionary (a shared
    direction plus low-rank structure plus noise, so concepts are strongly
    correlated as CLIP's are), ``X`` the inputs built from the centred
    dictionary and ``W_true`` the planted codes.
    """
    from sksplice import ConceptDictionary

    rng = np.random.default_rng(seed)
    shared = rng.normal(size=n_features)
    basis = rng.normal(size=(8, n_features))
    E = coherence * shared + rng.normal(size=(n_concepts, 8)) @ basis * 0.5 + rng.normal(
        size=(n_concepts, n_features)
    )
    names = [f"concept_{i}" for i in range(n_concepts)]
    C = ConceptDictionary(names, E).embeddings
    W = np.zeros((n_samples, n_concepts))
    for i in range(n_samples):
        idx = rng.choice(n_concepts, n_active, replace=False)
        W[i, idx] = rng.uniform(0.5, 1.5, n_active)
    X = W @ C + noise * rng.normal(size=(n_samples, n_features))
    return names, E, X, W


@pytest.fixture
def synthetic():
    """A small coherent synthetic problem (see :func:`coherent_problem`)."""
    return coherent_problem()


# --- open_clip models, an offline cache sandbox, a local data server, image files ---

@pytest.fixture(autouse=False)
def offline_sandbox(tmp_path, monkeypatch):
    """Isolated cache, unreachable data URL, loopback-only sockets."""
    monkeypatch.setenv("SKSPLICE_CACHE", str(tmp_path / "sksplice-cache"))
    monkeypatch.setenv("SKSPLICE_DATA_URL", "http://127.0.0.1:9/")
    monkeypatch.delenv("SKSPLICE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    return tmp_path / "sksplice-cache"


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory):
    """Register the tiny open_clip architectures; returns their names."""
    import open_clip

    folder = tmp_path_factory.mktemp("open_clip_configs")
    for name, cfg in ((TINY, TINY_CFG), (TINY_B, TINY_B_CFG)):
        if open_clip.get_model_config(name) is None:
            path = folder / f"{name}.json"
            path.write_text(json.dumps(cfg))
            open_clip.add_model_config(path)
    return TINY, TINY_B


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    """A random-weight tiny open_clip CLIP model (fixed seed), in eval mode."""
    import open_clip
    import torch

    torch.manual_seed(1234)
    return open_clip.create_model(TINY, pretrained=None).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory):
    """``torch.save(tiny_model.state_dict())`` in a file: the offline checkpoint route."""
    import torch

    path = tmp_path_factory.mktemp("ckpt") / "tiny_weights.pt"
    torch.save(tiny_model.state_dict(), path)
    return path


@pytest.fixture
def data_server(splice_data_dir, tmp_path, offline_sandbox, monkeypatch):
    """A local server with the SpLiCE data; SKSPLICE_DATA_URL points at it."""
    root = splice_layout(splice_data_dir, tmp_path / "served")
    server = DataServer(root)
    monkeypatch.setenv("SKSPLICE_DATA_URL", server.url)
    yield server
    server.close()


@pytest.fixture
def image_files(tmp_path):
    """Five small RGB PNG files with distinct content, and their uint8 arrays."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    paths, arrays = [], []
    for i in range(5):
        arr = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
        arr[:, : 8 * (i + 1)] = (40 * i) % 256  # distinct, structured content
        path = folder / f"img_{i}.png"
        Image.fromarray(arr).save(path)
        paths.append(path)
        arrays.append(arr)
    return paths, arrays


