"""Downloads of vocabularies and means: the real download code against a local HTTP server."""

from __future__ import annotations

import time

import numpy as np
import pytest
from _clip_helpers import DataServer, splice_layout

from sksplice import get_reference_mean, list_means, list_vocabularies, load_vocabulary
from sksplice._download import (
    DEFAULT_DATA_URL,
    DownloadError,
    data_url,
    fetch,
    file_sha256,
    get_cache_dir,
    is_offline,
)
from sksplice.means import MEANS
from sksplice.vocabularies import VOCABULARIES


def _reference_lines(path, n):
    lines = [ln.strip().split(", ")[0] for ln in path.read_text().splitlines()]
    return [ln for ln in lines if ln][-n:]


def test_pinned_digests_match_the_reference_files(splice_data_dir):
    for entry in VOCABULARIES.values():
        name = entry["path"].split("/")[-1]
        assert file_sha256(splice_data_dir / name) == entry["sha256"]
        assert entry["url"] == DEFAULT_DATA_URL + entry["path"]
    for entry in MEANS.values():
        name = entry["path"].split("/")[-1]
        assert file_sha256(splice_data_dir / name) == entry["sha256"]
    assert DEFAULT_DATA_URL == "https://raw.githubusercontent.com/AI4LIFE-GROUP/SpLiCE/main/data/"


def test_data_url_and_cache_dir_settings(monkeypatch, tmp_path):
    monkeypatch.delenv("SKSPLICE_DATA_URL", raising=False)
    assert data_url() == DEFAULT_DATA_URL
    monkeypatch.setenv("SKSPLICE_DATA_URL", "http://mirror.example/data")
    assert data_url() == "http://mirror.example/data/"
    monkeypatch.setenv("SKSPLICE_CACHE", str(tmp_path))
    assert get_cache_dir() == tmp_path
    assert get_cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("SKSPLICE_CACHE")
    assert get_cache_dir().name == "sksplice"


@pytest.mark.parametrize("var", ["SKSPLICE_OFFLINE", "HF_HUB_OFFLINE"])
def test_is_offline_reads_both_variables(monkeypatch, var):
    monkeypatch.delenv("SKSPLICE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert not is_offline()
    monkeypatch.setenv(var, "1")
    assert is_offline()
    assert not is_offline(False)


def test_vocabulary_download_and_cache(data_server, splice_data_dir, offline_sandbox):
    concepts = load_vocabulary("laion")
    assert data_server.requests == ["/vocab/laion.txt"]
    assert len(concepts) == 10000
    assert concepts == _reference_lines(splice_data_dir / "laion.txt", 10000)
    assert concepts[-3:] == ["the", "of", "-"]  # most frequent last
    cached = offline_sandbox / "vocab" / "laion.txt"
    assert file_sha256(cached) == VOCABULARIES["laion"]["sha256"]
    # second use: from the cache, no request
    assert load_vocabulary("laion", 500) == concepts[-500:]
    assert data_server.requests == ["/vocab/laion.txt"]
    assert not list(cached.parent.glob("*.part"))


def test_every_registered_vocabulary_downloads(data_server, splice_data_dir):
    assert list_vocabularies() == ["laion", "laion_bigrams", "mscoco"]
    bigrams = load_vocabulary("laion_bigrams")
    assert len(bigrams) == 15000 and sum(" " in c for c in bigrams) >= 5000
    coco = load_vocabulary("mscoco", None)
    assert len(coco) == 10000 and "" not in coco  # the blank line of mscoco.txt is skipped
    assert coco[-1] == "a"


def test_means_download(data_server, splice_data_dir):
    import torch

    assert list_means() == list(MEANS)
    for name, entry in MEANS.items():
        mean = get_reference_mean(name)
        ref = torch.load(splice_data_dir / entry["path"].split("/")[-1], map_location="cpu")
        assert mean.dtype == np.float64 and mean.shape == (entry["dim"],)
        np.testing.assert_array_equal(mean, ref.numpy().astype(np.float64))
    assert len(data_server.requests) == len(MEANS)
    # aliases and tuples resolve to the same file; unknown encoders have none
    np.testing.assert_array_equal(get_reference_mean(("ViT-B-32", "openai")),
                                  get_reference_mean("ViT-B-32-quickgelu:openai"))
    assert get_reference_mean("ViT-L-14:openai") is None
    assert len(data_server.requests) == len(MEANS)
    # the reference code's names, and Hugging Face names of the same weights
    np.testing.assert_array_equal(get_reference_mean("clip:ViT-B/32"),
                                  get_reference_mean("ViT-B-32:openai"))
    np.testing.assert_array_equal(get_reference_mean("open_clip:ViT-B-32"),
                                  get_reference_mean("ViT-B-32:laion2b_s34b_b79k"))
    np.testing.assert_array_equal(get_reference_mean("hf:openai/clip-vit-base-patch16"),
                                  get_reference_mean("ViT-B-16:openai"))
    assert get_reference_mean("hf:someone/else") is None


def test_reference_mean_of_a_tagged_encoder(data_server, tiny_config):
    from sksplice import get_encoder

    enc = get_encoder("RN50:openai", device="cpu")
    assert get_reference_mean(enc).shape == (1024,)
    assert get_reference_mean(get_encoder((tiny_config[0], None), device="cpu")) is None


def test_digest_mismatch_deletes_the_file(splice_data_dir, tmp_path, offline_sandbox,
                                          monkeypatch):
    root = splice_layout(splice_data_dir, tmp_path / "tampered")
    vocab = root / "vocab" / "laion.txt"
    vocab.write_text(vocab.read_text().replace("\ndog\n", "\ndgo\n"))
    server = DataServer(root)
    try:
        monkeypatch.setenv("SKSPLICE_DATA_URL", server.url)
        with pytest.raises(DownloadError, match="digest") as info:
            load_vocabulary("laion")
        msg = str(info.value)
        assert "laion" in msg and VOCABULARIES["laion"]["sha256"] in msg and "deleted" in msg
        folder = offline_sandbox / "vocab"
        assert not (folder / "laion.txt").exists()
        assert not list(folder.glob("*"))  # no partial file either
    finally:
        server.close()


def test_corrupt_cached_copy_is_replaced(data_server, offline_sandbox):
    cached = offline_sandbox / "vocab" / "laion.txt"
    cached.parent.mkdir(parents=True)
    cached.write_text("truncated\n")
    concepts = load_vocabulary("laion")
    assert len(concepts) == 10000
    assert file_sha256(cached) == VOCABULARIES["laion"]["sha256"]
    assert data_server.requests == ["/vocab/laion.txt"]


@pytest.mark.parametrize("status", [404, 500])
def test_server_error(data_server, offline_sandbox, status):
    data_server.fail["means/clip_RN50_image.pt"] = status
    with pytest.raises(DownloadError, match=f"HTTP {status}") as info:
        get_reference_mean("RN50:openai")
    assert "clip_RN50_image.pt" in str(info.value)
    assert str(offline_sandbox / "means" / "clip_RN50_image.pt") in str(info.value)
    assert not (offline_sandbox / "means" / "clip_RN50_image.pt").exists()
    assert not list((offline_sandbox / "means").glob("*"))


def test_unreachable_server(offline_sandbox):
    # SKSPLICE_DATA_URL points at a closed local port
    with pytest.raises(DownloadError, match="could not download"):
        fetch("vocab/laion.txt", VOCABULARIES["laion"]["sha256"])


@pytest.mark.parametrize("var", ["SKSPLICE_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_mode_never_downloads(data_server, offline_sandbox, monkeypatch, var):
    monkeypatch.setenv(var, "1")
    with pytest.raises(FileNotFoundError) as info:
        load_vocabulary("laion")
    msg = str(info.value)
    assert "vocab/laion.txt" in msg                                   # which file
    assert str(offline_sandbox / "vocab" / "laion.txt") in msg        # where it was looked for
    assert "copy the file" in msg and var in msg                      # how to provide it
    assert VOCABULARIES["laion"]["path"] in msg
    with pytest.raises(FileNotFoundError, match="open_clip_ViT-B-32_image.pt"):
        get_reference_mean("ViT-B-32:laion2b_s34b_b79k")
    assert data_server.requests == []
    # once provided in the cache, offline use works
    monkeypatch.delenv(var)
    load_vocabulary("laion")
    monkeypatch.setenv(var, "1")
    assert len(load_vocabulary("laion")) == 10000
    assert data_server.requests == ["/vocab/laion.txt"]


def test_offline_explicit_argument(data_server):
    with pytest.raises(FileNotFoundError, match="offline=True"):
        load_vocabulary("mscoco", offline=True)
    assert data_server.requests == []


def test_offline_missing_weights_error(offline_sandbox, monkeypatch, tmp_path):
    from sksplice import get_encoder

    monkeypatch.setenv("SKSPLICE_OFFLINE", "1")
    enc = get_encoder("ViT-B-32:laion2b_s34b_b79k", device="cpu", cache_dir=tmp_path / "hf")
    assert enc.embed_dim == 512  # metadata needs no weights
    with pytest.raises(FileNotFoundError) as info:
        enc.encode_texts(["dog"])
    msg = str(info.value)
    assert "ViT-B-32:laion2b_s34b_b79k" in msg
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in msg and str(tmp_path / "hf") in msg
    assert "encoder=('ViT-B-32', '/path/to/checkpoint')" in msg


def test_offline_finds_weights_in_a_copied_hugging_face_cache(tmp_path):
    """Copying a Hugging Face cache folder to an offline machine is enough for tag names."""
    import open_clip

    from sksplice.encoders._weights import cached_weights as _cached_weights

    cfg = open_clip.get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")
    repo = tmp_path / "hub" / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    path, looked = _cached_weights(cfg, str(tmp_path / "hub"))
    assert path == str(snap / "open_clip_pytorch_model.bin")
    (snap / "open_clip_model.safetensors").write_bytes(b"weights")  # preferred, as open_clip does
    assert _cached_weights(cfg, str(tmp_path / "hub"))[0].endswith("open_clip_model.safetensors")
    path, looked = _cached_weights(cfg, str(tmp_path / "empty"))
    assert path is None and "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in looked[0]


def test_a_users_file_with_another_digest_is_kept(splice_data_dir, offline_sandbox, monkeypatch):
    """A laion.txt placed in the cache by the user is never deleted, offline or online."""
    mine = offline_sandbox / "vocab" / "laion.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("my own\nconcepts\n")
    monkeypatch.setenv("SKSPLICE_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as info:
        load_vocabulary("laion")
    msg = str(info.value)
    assert mine.read_text() == "my own\nconcepts\n"                   # kept, unchanged
    assert "digest" in msg and VOCABULARIES["laion"]["sha256"][:12] in msg  # what differs
    assert "kept" in msg and "pass its path" in msg and "move yours aside" in msg  # how to proceed
    assert load_vocabulary(mine) == ["my own", "concepts"]          # the way out it names


def test_online_a_users_file_is_moved_aside_not_deleted(data_server, offline_sandbox):
    mine = offline_sandbox / "vocab" / "laion.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("my own\n")
    with pytest.warns(UserWarning, match="kept as"):
        assert len(load_vocabulary("laion")) == 10000
    (aside,) = mine.parent.glob("laion.txt.*.orig")
    assert aside.read_text() == "my own\n"


def test_downloads_are_capped_in_size(splice_data_dir, tmp_path, offline_sandbox, monkeypatch):
    root = splice_layout(splice_data_dir, tmp_path / "big")
    (root / "means" / "clip_RN50_image.pt").write_bytes(b"x" * (2 * 1024 * 1024))
    server = DataServer(root)
    try:
        monkeypatch.setenv("SKSPLICE_DATA_URL", server.url)
        with pytest.raises(DownloadError, match="larger than the 4885 bytes"):
            get_reference_mean("RN50:openai")
        assert not list((offline_sandbox / "means").glob("*"))  # nothing half-written
        with pytest.raises(DownloadError, match="larger than the 10 bytes"):
            fetch("vocab/laion.txt", VOCABULARIES["laion"]["sha256"], size=10)
    finally:
        server.close()


@pytest.mark.parametrize("umask", [0o077, 0o002])
def test_downloaded_files_follow_the_umask(data_server, offline_sandbox, umask):
    import os
    import stat

    old = os.umask(umask)
    try:
        load_vocabulary("mscoco")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((offline_sandbox / "vocab" / "mscoco.txt").stat().st_mode)
    assert mode == 0o666 & ~umask


class _TrickleHandler(__import__("http.server").server.BaseHTTPRequestHandler):
    """Sends a 1,000-byte body one byte every 0.1 s: never silent long enough to time out."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:  # the client gave up
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def trickle_server(offline_sandbox, monkeypatch):
    import http.server
    import threading

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TrickleHandler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    monkeypatch.setenv("SKSPLICE_DATA_URL", f"http://127.0.0.1:{httpd.server_address[1]}/")
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_a_trickling_server_fails_within_the_deadline_with_progress(trickle_server,
                                                                    offline_sandbox,
                                                                    monkeypatch, capsys):
    import sksplice._download as download

    monkeypatch.setattr(download, "DEADLINE", 2, raising=False)
    # the body takes 100 s; without an overall deadline the download would finish (and
    # fail its digest) instead of stopping with fewer than its 1,000 bytes
    with pytest.raises(DownloadError, match=r"did not finish within its 2 s deadline") as info:
        fetch("vocab/slow.txt", "0" * 64, offline=False, what="vocabulary 'slow'",
              progress=True, size=1000)
    received = int(str(info.value).split("(")[1].split(" bytes")[0])
    assert 0 < received < 1000
    assert "downloading vocabulary 'slow'" in capsys.readouterr().err  # the progress bar
    assert not list((offline_sandbox / "vocab").glob("*"))  # nothing left behind
