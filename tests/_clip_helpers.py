"""Constants and plain helpers shared by the tests: the tiny open_clip
architectures, a local HTTP data server, the SpLiCE data layout and a call
counter. The fixtures built on them live in ``conftest.py``.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
from pathlib import Path

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


def guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1"):
        raise OSError(f"test tried to reach the network ({address!r}); tests must stay offline")
    return _real_connect(self, address)


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
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
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


def count_calls(monkeypatch, cls, name):
    """Wrap ``cls.name`` so calls are counted; returns the list of call sizes."""
    calls = []
    original = getattr(cls, name)

    def wrapper(self, items, *args, **kwargs):
        calls.append(len(items) if hasattr(items, "__len__") else 1)
        return original(self, items, *args, **kwargs)

    monkeypatch.setattr(cls, name, wrapper)
    return calls
