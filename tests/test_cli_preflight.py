"""A first run that lacks several files lists them all at once, offline or with no network.

Nothing is downloaded and no model is loaded: the command stops before.  The
Hugging Face cache is pointed at an empty folder, so the default model's
weights are missing wherever the tests run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MODEL = "ViT-B-32:laion2b_s34b_b79k"


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def first_run(offline_sandbox, tmp_path, monkeypatch):
    """An empty sksplice cache and an empty Hugging Face cache; an image to decompose."""
    from huggingface_hub import constants
    from PIL import Image

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    image = tmp_path / "photo.png"
    Image.new("RGB", (24, 24), (200, 30, 30)).save(image)
    return {"cache": offline_sandbox, "hf": tmp_path / "hf", "image": str(image)}


def _run(argv, capsys):
    from sksplice.cli import main

    status = main(argv)
    return status, capsys.readouterr().err


def test_offline_first_run_lists_every_missing_file(first_run, capsys):
    status, err = _run(["decompose", first_run["image"], "--offline"], capsys)
    assert status == 1
    cache = first_run["cache"]
    assert "3 file(s) this run needs are not on this machine and downloads are off" in err
    assert f"(1) the vocabulary 'laion': put it at {cache / 'vocab' / 'laion.txt'}" in err
    assert (f"(2) the reference image mean of {MODEL}: put it at "
            f"{cache / 'means' / 'open_clip_ViT-B-32_image.pt'}") in err
    assert f"(3) the weights of {MODEL}: put it at the Hugging Face cache {first_run['hf']}" in err
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in err and "--checkpoint PATH" in err
    assert err.count("\n") == 1  # one line
    assert not cache.exists() or not any(cache.rglob("*.txt"))  # nothing was fetched


def test_only_what_is_missing_is_listed(first_run, capsys, monkeypatch):
    (first_run["cache"] / "vocab").mkdir(parents=True)
    (first_run["cache"] / "vocab" / "laion.txt").write_text("cat\ndog\n")
    monkeypatch.setenv("SKSPLICE_OFFLINE", "1")
    status, err = _run(["decompose", first_run["image"]], capsys)
    assert status == 1 and "2 file(s)" in err and "vocabulary" not in err
    assert "image mean" in err and "weights" in err
    status, err = _run(["decompose", first_run["image"], "--mean", "none"], capsys)
    assert status == 1 and "1 file(s)" in err and f"(1) the weights of {MODEL}" in err
    status, err = _run(["estimate-mean", str(Path(first_run["image"]).parent), "--out",
                        str(Path(first_run["image"]).parent / "m.npy")], capsys)
    assert status == 1 and "1 file(s)" in err and "the weights of" in err


def test_unreachable_network_fails_at_once_listing_everything(first_run, capsys, monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("SKSPLICE_DATA_URL", f"http://127.0.0.1:{port}/")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    status, err = _run(["decompose", first_run["image"]], capsys)
    assert status == 1
    assert (f"3 file(s) this run needs are not on this machine and the network is "
            f"unreachable: no connection to 127.0.0.1:{port}") in err
    assert f"from http://127.0.0.1:{port}/vocab/laion.txt" in err


def test_nothing_missing_with_a_local_checkpoint(tiny_checkpoint, tiny_config, first_run,
                                                 tmp_path):
    from _clip_helpers import TINY

    from sksplice.cli import build_parser
    from sksplice.cli._preflight import missing_files
    from sksplice.encoders import get_encoder

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("cat\ndog\ncar\n")
    np.save(tmp_path / "mean.npy", np.zeros(32))
    args = build_parser().parse_args(
        ["decompose", first_run["image"], "--model", TINY, "--checkpoint", str(tiny_checkpoint),
         "--vocabulary", str(vocab), "--mean", str(tmp_path / "mean.npy")])
    enc = get_encoder((TINY, str(tiny_checkpoint)), device="cpu")
    assert missing_files(args, enc, vocabulary=True, mean=True, images=True) == []


@pytest.mark.slow
def test_console_script_with_an_unreachable_hub_is_bounded(tmp_path):
    """SKSPLICE_OFFLINE unset, every endpoint a closed local port: exit 1, no retries."""
    from PIL import Image

    Image.new("RGB", (24, 24)).save(tmp_path / "a.png")
    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if k not in ("SKSPLICE_OFFLINE", "HF_HUB_OFFLINE")}
    env.update(SKSPLICE_CACHE=str(tmp_path / "cache"), HF_HOME=str(tmp_path / "hf"),
               SKSPLICE_DATA_URL=f"http://127.0.0.1:{port}/",
               HF_ENDPOINT=f"http://127.0.0.1:{port}", PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, "-m", "sksplice", "decompose", str(tmp_path / "a.png")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "network is unreachable" in r.stderr and "3 file(s)" in r.stderr
    assert not (tmp_path / "cache" / "vocab").exists()
