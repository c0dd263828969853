"""The installed ``sksplice`` console script, end to end and offline.

A tiny open_clip architecture with random weights (config JSON + checkpoint
written here), a small vocabulary file and a few PNGs made with PIL stand in
for a real model and dataset; nothing touches the network
(``SKSPLICE_OFFLINE=1``, ``SKSPLICE_CACHE`` in a temporary folder).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SKSPLICE = Path(sys.executable).with_name("sksplice")
# every test here loads a model or starts the console script
pytestmark = [pytest.mark.skipif(
    not SKSPLICE.exists(), reason="the sksplice console script is not installed "
    "(pip install -e .)"
), pytest.mark.slow]

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                   "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}
WORDS = (
    "dog cat car tree house beach sky water road bird flower grass mountain snow city "
    "person boat train bus bicycle chair table food fruit apple banana red blue green "
    "yellow black white night sun cloud river forest street window door"
).split()
GOOD = ["cats/0.png", "cats/1.png", "cats/2.png", "cats/3.png", "dogs/0.png", "dogs/1.png",
        "dogs/2.png", "top.png"]
BROKEN = "dogs/broken.jpg"

# Injected into the child process through PYTHONPATH (test-only): after the first
# shard is written, it signals the test and waits to be killed.
PAUSE_HOOK = '''
import os, time
_marker = os.environ.get("SKSPLICE_TEST_PAUSE_MARKER")
if _marker:
    import sksplice.shards._jobs as _shards  # where shard jobs write their shard
    _write = _shards.write_shard
    def write_shard(*args, **kwargs):
        _write(*args, **kwargs)
        if not os.path.exists(_marker):
            open(_marker, "w").close()
            time.sleep(300)
    _shards.write_shard = write_shard
'''


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Model config + random checkpoint, vocabulary, images, and the child environment."""
    import open_clip
    import torch
    from PIL import Image

    root = tmp_path_factory.mktemp("cli")
    config = root / "sksplice-cli-tiny.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("sksplice-cli-tiny")
    checkpoint = root / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    images = root / "images"
    rng = np.random.default_rng(0)
    for rel in GOOD:
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(images / rel)
    (images / BROKEN).write_bytes(b"this is not a JPEG")
    (images / "notes.txt").write_text("not an image, ignored")
    env = dict(os.environ, SKSPLICE_CACHE=str(root / "cache"), SKSPLICE_OFFLINE="1",
               HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    env.pop("SKSPLICE_TEST_PAUSE_MARKER", None)
    model_args = ["--model-config", str(config), "--checkpoint", str(checkpoint),
                  "--device", "cpu"]
    return {"root": root, "config": config, "checkpoint": checkpoint, "vocab": vocab,
            "images": images, "env": env, "model_args": model_args}


def run(work, *args, env=None, input=None):
    return subprocess.run([str(SKSPLICE), *map(str, args)], env=env or work["env"],
                          capture_output=True, text=True, input=input, timeout=300)


def decomp_args(work, mean):
    return [*work["model_args"], "--vocabulary", work["vocab"], "--mean", mean]


@pytest.fixture(scope="module")
def mean_file(work):
    out = work["root"] / "mean.npy"
    r = run(work, "estimate-mean", work["images"], *work["model_args"], "--out", out,
            "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "mean of 8 image embeddings" in r.stdout
    assert "skipped 'dogs/broken.jpg'" in r.stderr and "1 unreadable" in r.stdout
    return out


def _library_transformer(work, mean_path):
    """The same transformer the CLI builds, made in this process through the library."""
    from sksplice import build_dictionary, get_encoder
    from sksplice.shards import image_transformer

    enc = get_encoder(("sksplice-cli-tiny", str(work["checkpoint"])), device="cpu")
    dictionary = build_dictionary(enc, str(work["vocab"]), vocabulary_size=None,
                                  cache_dir=work["root"] / "cache")
    return image_transformer(enc, dictionary, np.load(mean_path), l1=0.25, device="cpu"), enc


# ------------------------------------------------------------------ fast paths
def test_usage_errors_exit_2(work):
    for args in ([], ["frobnicate"], ["decompose"], ["decompose", "a.png", "--l1", "-1"],
                 ["decompose", "a.png", "--json", "--csv"],
                 ["decompose", "a.png", "--l1", "0.2", "--n-nonzero", "3"],
                 ["decompose-dir", "d"], ["decompose-dir", "d", "--out", "o",
                                          "--shard-size", "0"]):
        r = run(work, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert "usage: sksplice" in r.stderr
    r = run(work, "--help")
    assert r.returncode == 0 and "decompose-dir" in r.stdout


def test_list_commands(work):
    r = run(work, "list-models")
    assert r.returncode == 0, r.stderr
    assert "ViT-B-32:laion2b_s34b_b79k" in r.stdout and "RN50:openai" in r.stdout
    r = run(work, "list-vocabularies")
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.strip()}
    assert lines["laion"][1:3] == ["10000", "no"]
    assert str(work["root"] / "cache") in r.stdout


def test_build_vocabulary(work, tmp_path):
    from sksplice import build_vocabulary

    lines = ["A red car on the road", "red car, parked", "", "a dog in a red car", "Dog 2024!"]
    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(lines) + "\n")
    out = tmp_path / "vocab.txt"
    r = run(work, "build-vocabulary", captions, "--n-words", "3", "--n-bigrams", "1",
            "--out", out)
    assert r.returncode == 0, r.stderr
    expected = build_vocabulary([c for c in lines if c], n_words=3, n_bigrams=1)
    assert out.read_text().splitlines() == expected and "red car" in expected
    assert f"wrote {len(expected)} concepts" in r.stderr
    r = run(work, "build-vocabulary", "-", "--n-words", "2", "--n-bigrams", "0",
            input="red car\nred bus\n")
    assert r.returncode == 0
    assert r.stdout.splitlines() == build_vocabulary(["red car", "red bus"], 2, 0)
    r = run(work, "build-vocabulary", tmp_path / "missing.txt")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"sksplice: error: caption file '{tmp_path / 'missing.txt'}' does not exist; pass a "
        "text file with one caption a line."
    ]


def test_one_line_errors_and_verbose_traces(work):
    missing = work["root"] / "nope.pt"
    r = run(work, "decompose", "x.png", "--checkpoint", missing)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"sksplice: error: checkpoint '{missing}' does not exist; pass the path of the "
        "model's weights file."
    ]
    r = run(work, "decompose", "x.png", "--checkpoint", missing, "--verbose")
    assert r.returncode == 1 and "Traceback" in r.stderr
    r = run(work, "decompose-dir", work["root"] / "no-such-dir", "--out", work["root"] / "o")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "does not exist or is not a folder" in r.stderr


# ------------------------------------------------------------ with the model
def test_estimate_mean_matches_library(work, mean_file):
    from sksplice import estimate_mean, get_encoder

    mean = np.load(mean_file)
    enc = get_encoder(("sksplice-cli-tiny", str(work["checkpoint"])), device="cpu")
    expected = estimate_mean(enc, [work["images"] / p for p in GOOD])
    assert mean.shape == (32,)
    np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-6)


def test_decompose_table_in_process(work, mean_file, capsys):
    from sksplice.cli import main

    imgs = work["images"]
    status = main(["decompose", str(imgs / "cats/0.png"), str(imgs / BROKEN),
                   str(imgs / "dogs/1.png"), *map(str, decomp_args(work, mean_file)),
                   "--top-k", "3"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert f"skipped '{imgs / BROKEN}'" in captured.err
    out = captured.out
    assert out.count("Concept decomposition of") == 2
    assert f"Concept decomposition of {imgs / 'cats/0.png'}" in out
    assert out.count("L0 norm (nonzero concepts):") == 2
    assert out.count("cosine(CLIP, SpLiCE):") == 2
    ranks = [ln.split()[0] for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert set(ranks) <= {"1", "2", "3"} and ranks.count("1") == 2


def test_decompose_json_equals_library(work, mean_file):
    from sksplice.shards import decompose_image_files

    imgs = [work["images"] / p for p in ("cats/1.png", "top.png")]
    broken = work["images"] / BROKEN
    r = run(work, "decompose", imgs[0], broken, imgs[1], *decomp_args(work, mean_file),
            "--json", "--top-k", "0")
    assert r.returncode == 0, r.stderr
    assert f"skipped '{broken}'" in r.stderr
    doc = json.loads(r.stdout)
    assert [s["image"] for s in doc.pop("skipped")] == [str(broken)]
    assert doc["n_concepts"] == len(WORDS) and doc["l1"] == 0.25 and doc["n_nonzero"] is None
    est, enc = _library_transformer(work, mean_file)
    codes, cosine, ok, bad = decompose_image_files(est, imgs, encoder=enc)
    names = est.get_feature_names_out()
    for row, res in enumerate(doc["results"]):
        assert res["image"] == str(imgs[row])
        dense = codes[row].toarray().ravel()
        got = {c["concept"]: c["weight"] for c in res["concepts"]}
        assert res["l0_norm"] == np.count_nonzero(dense) == len(got) > 0
        assert set(got) == set(names[dense > 0])
        for name, w in got.items():
            assert w == pytest.approx(dense[list(names).index(name)], abs=1e-6)
        weights = [c["weight"] for c in res["concepts"]]
        assert weights == sorted(weights, reverse=True)
        assert res["cosine"] == pytest.approx(cosine[row], abs=1e-6)


def test_decompose_csv_in_process(work, mean_file, capsys):
    # the console script's entry point, called in this process (the model is loaded)
    from sksplice.cli import main

    img = work["images"] / "dogs/2.png"
    status = main(["decompose", str(img), *map(str, decomp_args(work, mean_file)), "--csv",
                   "--top-k", "2", "--l1", "0.1"])
    out = capsys.readouterr().out
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "image,rank,concept,weight,l0_norm,cosine"
    assert 1 <= len(lines) - 1 <= 2
    fields = lines[1].split(",")
    assert fields[0] == str(img) and fields[1] == "1" and fields[2] in WORDS
    assert float(fields[3]) > 0 and int(fields[4]) >= len(lines) - 1


# ------------------------------------------------------------ decompose-dir
def _shard_state(out):
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted((out / "shards").glob("shard-*.npz"))}


def test_decompose_dir_resumes_after_kill(work, mean_file, tmp_path, capsys):
    from sksplice import load_decomposition

    args = [*decomp_args(work, mean_file), "--shard-size", "2", "--no-progress"]

    # two runs side by side: an uninterrupted one (the reference), and the same run
    # killed (SIGKILL) right after its first shard is written
    full, out = tmp_path / "full", tmp_path / "resumed"
    reference_run = subprocess.Popen(
        [str(SKSPLICE), "decompose-dir", str(work["images"]), "--out", str(full),
         *map(str, args)], env=work["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PAUSE_HOOK)
    marker = tmp_path / "first-shard-written"
    env = dict(work["env"], SKSPLICE_TEST_PAUSE_MARKER=str(marker),
               PYTHONPATH=os.pathsep.join(filter(None, [str(hook),
                                                         os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([str(SKSPLICE), "decompose-dir", str(work["images"]), "--out",
                             str(out), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the first shard was never written"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=60)
        stdout, stderr = reference_run.communicate(timeout=240)

    assert reference_run.returncode == 0, stderr
    assert "decomposed 8 of 9 images into 5 shard(s)" in stdout
    assert "skipped 'dogs/broken.jpg'" in stderr
    manifest = json.loads((full / "manifest.json").read_text())
    assert manifest["complete"] and manifest["classes"] == ["cats", "dogs"]
    assert [b["image"] for b in manifest["bad_files"]] == [BROKEN]
    assert [s["file"] for s in manifest["shards"]] == [
        f"shards/shard-{i:06d}.npz" for i in range(5)]
    assert sum((s["images"] for s in manifest["shards"]), []) == GOOD[:7] + [BROKEN, "top.png"]
    assert json.loads((full / "concepts.json").read_text()) == WORDS
    summary = json.loads((full / "summary.json").read_text())
    assert [(s["class"], s["n_images"]) for s in summary] == [
        ("cats", 4), ("dogs", 3), ("(unlabelled)", 1)]
    assert all(s["top_concepts"] for s in summary)
    assert (full / "summary.csv").read_text().startswith("class,rank,concept,mean_weight")
    for name in ("cats", "dogs", "unlabelled"):
        png = full / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    reference = load_decomposition(full)
    assert reference.codes.shape == (8, len(WORDS))
    assert reference.images == GOOD[:7] + ["top.png"]
    assert list(reference.class_names_of_rows()) == ["cats"] * 4 + ["dogs"] * 3 + [""]

    assert proc.returncode == -signal.SIGKILL
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    before = _shard_state(out)
    assert list(before) == ["shard-000000.npz"]
    # debris a crash could leave: a temporary file, and a damaged file where a shard goes
    (out / "shards" / ".shard-000001.npz.x1y2.tmp").write_bytes(b"partial")
    (out / "shards" / "shard-000003.npz").write_bytes(b"PK\x03\x04 truncated")

    r = run(work, "decompose-dir", work["images"], "--out", out, *args)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "(1 shard(s) kept from an earlier run)" in r.stdout
    after = _shard_state(out)
    assert after["shard-000000.npz"] == before["shard-000000.npz"]  # not redone
    assert len(after) == 5 and not list((out / "shards").glob(".*.tmp"))
    resumed = load_decomposition(out)
    assert resumed.images == reference.images
    np.testing.assert_array_equal(resumed.labels, reference.labels)
    assert (resumed.codes != reference.codes).nnz == 0
    np.testing.assert_array_equal(resumed.cosine, reference.cosine)
    assert resumed.manifest["bad_files"] == reference.manifest["bad_files"]
    assert (out / "summary.json").read_text() == (full / "summary.json").read_text()

    # a finished folder is not mixed with other settings (entry point called in-process)
    from sksplice.cli import main

    status = main(["decompose-dir", str(work["images"]), "--out", str(out),
                   *map(str, args), "--l1", "0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1
    assert "already holds a decomposition made with other settings" in err[0]
    assert "--overwrite" in err[0] and _shard_state(out) == after


def test_decompose_dir_strict_in_process(work, mean_file, tmp_path, capsys):
    from sksplice.cli import main

    status = main(["decompose-dir", str(work["images"]), "--out", str(tmp_path / "strict"),
                   *map(str, decomp_args(work, mean_file)), "--strict", "--no-plots",
                   "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err[-1].startswith("sksplice: error: cannot read image")
    assert BROKEN in err[-1] and "Traceback" not in "\n".join(err)


def test_decompose_n_nonzero_in_process(work, mean_file, capsys):
    from sksplice.cli import main

    imgs = [str(work["images"] / p) for p in ("cats/2.png", "dogs/0.png")]
    status = main(["decompose", *imgs, *map(str, decomp_args(work, mean_file)),
                   "--n-nonzero", "3", "--json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    doc = json.loads(captured.out)
    assert doc["n_nonzero"] == 3 and doc["l1"] is None
    assert [r["l0_norm"] for r in doc["results"]] == [3, 3]
    assert all(len(r["concepts"]) == 3 for r in doc["results"])


def test_decompose_sklearn_sample_photo_in_process(work, mean_file, capsys):
    # the README's main job: scikit-learn's own photo, no image file to download
    import sklearn.datasets

    from sksplice.cli import main

    status = main(["decompose", "sklearn:china.jpg", *map(str, decomp_args(work, mean_file)),
                   "--top-k", "3"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    china = Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"
    assert f"Concept decomposition of {china}" in captured.out
    status = main(["decompose", "sklearn:nope.jpg", *map(str, decomp_args(work, mean_file))])
    err = capsys.readouterr().err
    assert status == 1
    assert "'sklearn:nope.jpg' is not a scikit-learn sample image" in err
    assert "sklearn:china.jpg, sklearn:flower.jpg" in err


# ------------------------------------------------------ embeddings files and texts
def test_decompose_embeddings_files_and_texts(work, mean_file, tmp_path, capsys):
    import torch
    from safetensors.numpy import save_file

    from sksplice.cli import main
    from sksplice.shards import image_transformer

    est, enc = _library_transformer(work, mean_file)
    E = enc.encode_images([work["images"] / p for p in ("cats/0.png", "dogs/0.png")])
    np.save(tmp_path / "emb.npy", E)
    torch.save(torch.from_numpy(np.asarray(E[:1])), tmp_path / "emb.pt")
    save_file({"embeddings": np.asarray(E[1])}, str(tmp_path / "emb.safetensors"))
    (tmp_path / "texts.txt").write_text("\ufeffa red car\n\n  a dog on the beach \n")
    status = main(["decompose", str(tmp_path / "emb.npy"), str(tmp_path / "emb.pt"),
                   str(tmp_path / "emb.safetensors"), "--text", "snow", "--texts",
                   str(tmp_path / "texts.txt"), *map(str, decomp_args(work, mean_file)),
                   "--json", "--top-k", "0", "--no-progress"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    results = json.loads(captured.out)["results"]
    assert [r["image"] for r in results] == [
        f"{tmp_path / 'emb.npy'}[0]", f"{tmp_path / 'emb.npy'}[1]", f"{tmp_path / 'emb.pt'}[0]",
        f"{tmp_path / 'emb.safetensors'}[0]", "snow", "a red car", "a dog on the beach"]
    assert [r["kind"] for r in results] == ["embedding"] * 4 + ["text"] * 3
    names = list(est.get_feature_names_out())
    codes, _ = est.decompose_embeddings(np.vstack([E, E[:1], E[1:]]))
    texts = ["snow", "a red car", "a dog on the beach"]
    text_est = image_transformer(enc, est.dictionary_, est.dictionary_.text_mean, device="cpu")
    text_codes, _ = text_est.decompose_embeddings(enc.encode_texts(texts))
    import scipy.sparse as sp

    expected = sp.vstack([sp.csr_matrix(codes), sp.csr_matrix(text_codes)]).toarray()
    for res, row in zip(results, expected, strict=False):
        got = np.zeros(len(names))
        for c in res["concepts"]:
            got[names.index(c["concept"])] = c["weight"]
        np.testing.assert_allclose(got, row, atol=1e-6)
        assert res["l0_norm"] == np.count_nonzero(row)

    # a wrong dimension and a file of several tensors name the problem
    np.save(tmp_path / "bad.npy", np.zeros((2, 7)))
    status = main(["decompose", str(tmp_path / "bad.npy"), *map(str, decomp_args(work, mean_file)),
                   "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1 and "rows of 7 values but the model embeds into 32" in err


def test_decompose_shows_progress_while_encoding_a_vocabulary(work, mean_file, tmp_path,
                                                              capsys):
    from sksplice.cli import main

    img = str(work["images"] / "top.png")
    argv = ["decompose", img, *map(str, decomp_args(work, mean_file)), "--cache-dir",
            str(tmp_path / "cold")]
    assert main(argv) == 0
    cold = capsys.readouterr().err
    assert "%|" in cold, cold  # a tqdm bar on stderr while the vocabulary is encoded
    assert main([*argv, "--no-progress"]) == 0
    assert "%|" not in capsys.readouterr().err


# ------------------------------------------------------ decompose-dir bookkeeping
def test_decompose_dir_with_every_image_unreadable_fails(work, mean_file, tmp_path, capsys):
    from sksplice.cli import main

    (tmp_path / "imgs").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "imgs" / name).write_bytes(b"junk")
    status = main(["decompose-dir", str(tmp_path / "imgs"), "--out", str(tmp_path / "out"),
                   *map(str, decomp_args(work, mean_file)), "--no-progress", "--no-plots"])
    err = capsys.readouterr().err
    assert status == 1
    assert "none of the 2 image(s)" in err and "they are retried" in err


def test_decompose_dir_output_inside_its_input(work, mean_file, tmp_path, capsys):
    import shutil

    from sksplice.cli import main

    images = tmp_path / "imgs"
    shutil.copytree(work["images"], images)
    argv = ["decompose-dir", str(images), "--out", str(images / "decomposed"),
            *map(str, decomp_args(work, mean_file)), "--no-progress", "--shard-size", "4"]
    assert main(argv) == 0
    assert list((images / "decomposed" / "plots").glob("*.png"))
    capsys.readouterr()
    assert main(argv) == 0  # its own plots are not read as new input images
    out = capsys.readouterr().out
    assert "decomposed 8 of 9 images" in out and "kept from an earlier run" in out


RELEASE_HOOK = '''
import os, time
_marker = os.environ.get("SKSPLICE_TEST_PAUSE_MARKER")
if _marker:
    import sksplice.shards._jobs as _jobs
    _write = _jobs.write_shard
    def write_shard(*args, **kwargs):
        _write(*args, **kwargs)
        if not os.path.exists(_marker):
            open(_marker, "w").close()
            while not os.path.exists(_marker + ".release"):
                time.sleep(0.05)
    _jobs.write_shard = write_shard
'''


@pytest.mark.slow
def test_a_second_run_on_the_same_folder_leaves_the_first_alone(work, mean_file, tmp_path):
    from sksplice import load_decomposition

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(RELEASE_HOOK)
    marker = tmp_path / "first-shard-written"
    out = tmp_path / "out"
    args = ["decompose-dir", work["images"], "--out", out, *decomp_args(work, mean_file),
            "--shard-size", "2", "--no-progress"]
    env = dict(work["env"], SKSPLICE_TEST_PAUSE_MARKER=str(marker),
               PYTHONPATH=os.pathsep.join(filter(None, [str(hook),
                                                         os.environ.get("PYTHONPATH")])))
    first = subprocess.Popen([str(SKSPLICE), *map(str, args)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first shard was never written"
            time.sleep(0.05)
        second = run(work, *args, "--overwrite")
        assert second.returncode == 1
        assert "another sksplice run is writing to" in second.stderr
        Path(str(marker) + ".release").touch()
        stdout, stderr = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    assert "decomposed 8 of 9 images" in stdout
    assert load_decomposition(out).codes.shape[0] == 8


def test_python_m_sksplice_is_the_same_command(work):
    r = subprocess.run([sys.executable, "-m", "sksplice", "decompose", "--solver", "nope"],
                       env=work["env"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "usage: sksplice decompose" in r.stderr
    r = subprocess.run([sys.executable, "-m", "sksplice", "--version"], env=work["env"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("sksplice ")


def test_vocabulary_size_minus_one_and_a_saved_dictionary_with_images(work, mean_file, tmp_path,
                                                                       capsys):
    from sksplice import build_dictionary
    from sksplice.cli import main

    img = str(work["images"] / "cats/0.png")
    # --vocabulary-size -1 keeps the whole vocabulary (as vocabulary_size=-1 in Python)
    status = main(["decompose", img, *map(str, decomp_args(work, mean_file)),
                   "--vocabulary-size", "-1", "--json", "--top-k", "0", "--no-progress"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    whole = json.loads(captured.out)
    assert whole["n_concepts"] == len(WORDS)
    # the same dictionary saved, then given with --dictionary and the model: same codes
    est, enc = _library_transformer(work, mean_file)
    cd = build_dictionary(enc, str(work["vocab"]), vocabulary_size=-1, cache=False)
    path = cd.save(tmp_path / "tiny.npz")
    status = main(["decompose", img, *map(str, work["model_args"]), "--dictionary", str(path),
                   "--mean", str(mean_file), "--json", "--top-k", "0"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert json.loads(captured.out)["results"] == whole["results"]


def test_decompose_dir_with_a_saved_dictionary_equals_the_vocabulary_run(work, mean_file,
                                                                          tmp_path, capsys):
    from sksplice import build_dictionary
    from sksplice.cli import main
    from sksplice.shards import load_decomposition

    _, enc = _library_transformer(work, mean_file)
    path = build_dictionary(enc, str(work["vocab"]), cache=False).save(tmp_path / "d.npz")
    common = ["--mean", str(mean_file), "--no-plots", "--no-progress", "--shard-size", "4"]
    runs = {"vocabulary": ["--vocabulary", str(work["vocab"])], "dictionary": ["--dictionary",
                                                                              str(path)]}
    loaded = {}
    for name, extra in runs.items():
        out = tmp_path / name
        status = main(["decompose-dir", str(work["images"]), "--out", str(out),
                       *map(str, work["model_args"]), *common, *extra])
        assert status == 0, capsys.readouterr().err
        loaded[name] = load_decomposition(out)
    a, b = loaded["vocabulary"], loaded["dictionary"]
    assert list(a.concept_names) == list(b.concept_names) == WORDS
    assert (a.codes != b.codes).nnz == 0 and a.codes.nnz > 0
