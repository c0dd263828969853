"""Shared fixtures for the encoder/vocabulary/dictionary tests (issue 3).

* ``offline_sandbox`` (import it as an autouse fixture): a per-test cache
  directory, the data URL pointed at a closed local port, and a socket guard
  that refuses every connection except to 127.0.0.1, so no test can reach
  the network by accident.
* ``tiny_config``: a tiny open_clip architecture ("sksplice-tiny": ViT with
  width 64 and 2 layers, a causal CLIP text tower of width 64, embed_dim 32)
  registered with open_clip, plus a second one ("sksplice-tiny-b",
  embed_dim 48) for wrong-architecture checks.
* ``tiny_checkpoint``: random weights of "sksplice-tiny" saved with
  ``torch.save(model.state_dict())``: loaded through the real checkpoint path.
* ``data_server``: a ``http.server`` on 127.0.0.1 serving the SpLiCE data
  (``../shared/data/splice``) laid out as ``vocab/`` and ``means/``.
* ``image_files``: a few small PNG files (and a corrupt one).
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

TINY = "sksplice-tiny"
TINY_B = "sksplice-tiny-b"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
TINY_B_CFG = {
    "embed_dim": 48,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
VOCAB_FILES = ("laion.txt", "laion_bigrams.txt", "mscoco.txt")
MEAN_FILES = ("clip_ViT-B-32_image.pt", "clip_ViT-B-16_image.pt", "clip_RN50_image.pt",
              "open_clip_ViT-B-32_image.pt")

_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1"):
        raise OSError(f"test tried to reach the network ({address!r}); tests must stay offline")
    return _real_connect(self, address)


@pytest.fixture(autouse=False)
def offline_sandbox(tmp_path, monkeypatch):
    """Isolated cache, unreachable data URL, loopback-only sockets."""
    monkeypatch.setenv("SKSPLICE_CACHE", str(tmp_path / "sksplice-cache"))
    monkeypatch.setenv("SKSPLICE_DATA_URL", "http://127.0.0.1:9/")
    monkeypatch.delenv("SKSPLICE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
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


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        self.server.requests.append(self.path)
        status = self.server.fail.get(self.path.lstrip("/"))
        if status is not None:
            self.send_error(status)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


class DataServer:
    """A local HTTP server over a folder; ``requests`` logs paths, ``fail`` maps path -> status."""

    def __init__(self, root):
        self.root = Path(root)
        handler = lambda *a, **kw: _Handler(*a, directory=str(self.root), **kw)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.requests = []
        self.httpd.fail = {}
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self):
        return self.httpd.requests

    @property
    def fail(self):
        return self.httpd.fail

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def splice_layout(src, dst):
    """Copy ``../shared/data/splice`` into ``dst`` as ``vocab/`` and ``means/``."""
    (dst / "vocab").mkdir(parents=True, exist_ok=True)
    (dst / "means").mkdir(parents=True, exist_ok=True)
    for name in VOCAB_FILES:
        shutil.copyfile(src / name, dst / "vocab" / name)
    for name in MEAN_FILES:
        shutil.copyfile(src / name, dst / "means" / name)
    return dst


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


def count_calls(monkeypatch, cls, name):
    """Wrap ``cls.name`` so calls are counted; returns the list of call sizes."""
    calls = []
    original = getattr(cls, name)

    def wrapper(self, items, *args, **kwargs):
        calls.append(len(items) if hasattr(items, "__len__") else 1)
        return original(self, items, *args, **kwargs)

    monkeypatch.setattr(cls, name, wrapper)
    return calls
