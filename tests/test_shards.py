"""Decomposition folders: format, resumption, what is never read, written or deleted.

A toy encoder (colour statistics, no open_clip) keeps every test here fast.
"""

from __future__ import annotations

import json
import os
import stat
import warnings

import numpy as np
import pytest
from _shard_helpers import (
    WORDS,
    image_tree,
    same_decomposition,
    toy_estimator,
    write_png,
)

from sksplice.exceptions import FolderInUseError
from sksplice.shards import (
    decompose_to_shards,
    list_image_files,
    load_decomposition,
    read_manifest,
    read_shard,
)

LAYOUT = ["cats/0.png", "cats/1.png", "cats/2.png", "dogs/0.png", "dogs/1.png", "top.png"]


@pytest.fixture(scope="module")
def est():
    return toy_estimator()


def _run(tmp, est, out="out", root=None, **kw):
    root = root or tmp / "images"
    images, classes = list_image_files(root, exclude=[tmp / out])
    kw.setdefault("plots", False)
    kw.setdefault("shard_size", 2)
    return decompose_to_shards(images, tmp / out, est, labels=classes, root=root, **kw)


@pytest.fixture
def tree(tmp_path):
    image_tree(tmp_path / "images", LAYOUT)
    return tmp_path


# ------------------------------------------------------------------ atomic writes
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_keep_the_users_umask(tmp_path, umask):
    from sksplice._io import atomic_write

    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "new.bin", lambda f: f.write(b"x"))
        (tmp_path / "plain.bin").write_bytes(b"x")  # what open() gives under this umask
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "new.bin").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode) == 0o666 & ~umask
    # a replaced file keeps the permissions its owner gave it
    os.chmod(tmp_path / "new.bin", 0o640)
    atomic_write(tmp_path / "new.bin", lambda f: f.write(b"y"))
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o640
    assert (tmp_path / "new.bin").read_bytes() == b"y"


@pytest.mark.slow  # writes plots (matplotlib)
def test_decomposition_files_keep_the_users_umask(tree, est):
    old = os.umask(0o002)
    try:
        _run(tree, est, summary=True)
    finally:
        os.umask(old)
    for p in (tree / "out").rglob("*"):
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) == 0o664, p


def test_failed_write_leaves_nothing(tmp_path):
    from sksplice._io import atomic_write

    (tmp_path / "keep.txt").write_text("old")

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "keep.txt", boom)
    assert (tmp_path / "keep.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


# ------------------------------------------------------------------ file trees
def test_link_loops_list_each_image_once(tmp_path):
    root = image_tree(tmp_path / "images", ["a/x.png", "a/b/y.png", "c/z.png"])
    os.symlink("..", root / "a" / "b" / "up")            # a loop back to a/
    os.symlink(root, root / "c" / "root")                # a loop to the root
    os.symlink(root / "a", root / "a_again")             # the same folder twice
    os.symlink(root / "c" / "z.png", root / "a" / "z_link.png")  # the same file twice
    os.symlink(root / "missing.png", root / "dangling.png")
    os.mkfifo(root / "pipe.png")                         # reading it would block forever
    images, classes = list_image_files(root)
    assert images == ["a/b/y.png", "a/x.png", "a/z_link.png"]
    assert classes == ["a", "a", "a"]
    real = {os.path.realpath(root / p) for p in images}
    assert len(real) == len(images)


def test_deep_trees_are_bounded(tmp_path):
    folder = tmp_path / "images"
    deep = folder.joinpath(*["d"] * 12)
    write_png(deep / "deep.png", 0)
    write_png(folder / "d" / "shallow.png", 1)
    assert list_image_files(folder, max_depth=3)[0] == ["d/shallow.png"]
    assert len(list_image_files(folder)[0]) == 2


@pytest.mark.slow  # writes plots (matplotlib)
def test_output_folder_inside_the_input_is_never_read(tree, est):
    root = tree / "images"
    out = root / "decomposed"
    images, classes = list_image_files(root, exclude=[out])
    first = decompose_to_shards(images, out, est, labels=classes, root=root, plots=True)
    assert list((out / "plots").glob("*.png"))  # images the package wrote inside root
    again_images, _ = list_image_files(root, exclude=[out])
    assert again_images == images
    second = decompose_to_shards(again_images, out, est, labels=classes, root=root)
    assert second["n_resumed_shards"] == len(first["shards"])


def test_an_excluded_folder_is_not_listed(tmp_path):
    root = image_tree(tmp_path / "images", ["a/0.png", "b/0.png"])
    write_png(root / "out" / "plots" / "a.png", 5)  # what a run writes inside its input
    os.symlink(root / "out", root / "a" / "link-to-out")
    assert list_image_files(root, exclude=[root / "out"])[0] == ["a/0.png", "b/0.png"]
    assert "out/plots/a.png" in list_image_files(root)[0]


# ------------------------------------------------------------------ manifest paths
@pytest.mark.parametrize("field,value", [
    ("shard", "../../outside.npz"), ("shard", "/etc/passwd"), ("shard", "shards/../../x.npz"),
    ("shard", "summary.json"), ("concepts", "../concepts.json"), ("plots", "../../x.png"),
])
def test_manifest_names_outside_the_folder_are_refused(tree, est, field, value):
    _run(tree, est)
    out = tree / "out"
    # a file outside the folder the manifest points at
    (tree / "concepts.json").write_text(json.dumps(["stolen"] * len(WORDS)))
    manifest = json.loads((out / "manifest.json").read_text())
    if field == "shard":
        manifest["shards"][0]["file"] = value
    elif field == "concepts":
        manifest["concepts_file"] = value
    else:
        manifest["plots"] = [value]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="not a file of a decomposition folder"):
        load_decomposition(out)
    with pytest.raises(ValueError, match="not a file of a decomposition folder"):
        read_manifest(out)


# ------------------------------------------------------------------ bookkeeping
def test_fixed_images_are_retried(tree, est):
    root = tree / "images"
    (root / "dogs" / "1.png").write_bytes(b"broken for now")
    first = _run(tree, est)
    assert [b["image"] for b in first["bad_files"]] == ["dogs/1.png"]
    assert first["n_decomposed"] == len(LAYOUT) - 1
    write_png(root / "dogs" / "1.png", 99)  # the user fixes the file
    second = _run(tree, est)
    assert second["bad_files"] == [] and second["n_decomposed"] == len(LAYOUT)
    assert second["n_resumed_shards"] == len(second["shards"]) - 1  # only its shard redone
    assert "dogs/1.png" in load_decomposition(tree / "out").images


def test_damaged_manifest_is_recovered(tree, est):
    _run(tree, est, out="reference")
    reference = load_decomposition(tree / "reference")
    _run(tree, est)
    shard0 = tree / "out" / "shards" / "shard-000000.npz"
    state = shard0.stat().st_mtime_ns
    (tree / "out" / "manifest.json").write_text('{"format": "sksplice-shards", "comp')
    with pytest.warns(UserWarning, match="damaged .not valid JSON.*Resuming"):
        manifest = _run(tree, est)
    assert manifest["complete"] and manifest["n_resumed_shards"] == len(manifest["shards"])
    assert shard0.stat().st_mtime_ns == state  # kept, not recomputed
    assert same_decomposition(load_decomposition(tree / "out"), reference)


def test_damaged_manifest_with_shards_of_other_settings_is_refused(tree, est):
    _run(tree, est)
    (tree / "out" / "manifest.json").write_text("not json")
    other = toy_estimator(l1=0.2)
    with pytest.raises(ValueError, match="shards made with other settings.*--overwrite"):
        _run(tree, other)
    manifest = _run(tree, other, overwrite=True)
    assert manifest["complete"] and manifest["n_resumed_shards"] == 0


@pytest.mark.slow  # writes plots (matplotlib)
def test_overwrite_deletes_only_the_packages_files(tree, est):
    _run(tree, est, summary=True, plots=True)
    out = tree / "out"
    old_plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    mine = [out / "notes.txt", out / "shards" / "mine.npz", out / "plots" / "mine.png",
            out / ".backup.tmp", out / "shards" / ".keep.tmp", out / "extra" / "x.txt"]
    for p in mine:
        p.parent.mkdir(exist_ok=True)
        p.write_text("the user's")
    manifest = _run(tree, toy_estimator(l1=0.3), overwrite=True, summary=True, plots=False)
    assert manifest["complete"]
    for p in mine:
        assert p.read_text() == "the user's", p
    left = sorted(p.name for p in (out / "plots").iterdir())
    assert old_plots and left == ["mine.png"]  # the package's plots went, the user's stayed


def test_a_second_writer_is_refused_at_once(tree, est):
    from sksplice.shards._lock import folder_lock

    _run(tree, est)
    before = {p: p.stat().st_mtime_ns for p in (tree / "out").rglob("*") if p.is_file()}
    with folder_lock(tree / "out"), pytest.raises(FolderInUseError,
                                                  match="another sksplice run is writing"):
        _run(tree, toy_estimator(l1=0.3), overwrite=True)  # as if decompose-dir held it
    after = {p: p.stat().st_mtime_ns for p in (tree / "out").rglob("*") if p.is_file()}
    assert after == before
    _run(tree, est)  # the lock is released with its holder


def test_a_foreign_folder_is_not_written(tmp_path, est):
    image_tree(tmp_path / "images", LAYOUT)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not empty"):
        _run(tmp_path, est)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["thesis.tex"]


@pytest.mark.slow  # writes plots (matplotlib)
def test_reserved_group_names_never_merge(tmp_path, est):
    root = image_tree(tmp_path / "images",
                      ["(unlabelled)/0.png", "(unlabelled)/1.png", "Cat/0.png", "cat/0.png",
                       "loose.png"])
    manifest = _run(tmp_path, est, summary=True, plots=True)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    groups = {s["class"]: s["n_images"] for s in summary}
    assert groups == {"(unlabelled)": 2, "Cat": 1, "cat": 1, "(unlabelled 2)": 1}
    plots = [s["plot"] for s in summary]
    assert len({p.lower() for p in plots}) == len(plots) == 4  # distinct, even ignoring case
    assert sorted(manifest["plots"]) == sorted(plots)
    assert root.exists()


def test_shard_round_trip_and_corruption_is_an_error(tmp_path):
    import scipy.sparse as sp

    from sksplice.shards import write_shard

    path = tmp_path / "shard-000000.npz"
    codes = sp.random(5, 7, density=0.4, random_state=0, format="csr")
    write_shard(path, codes, list("abcde"), [0, 1, -1, 0, 1], np.linspace(0, 1, 5),
                [("f", "broken")], config_sha256="abc")
    shard = read_shard(path)
    assert (shard["codes"] != codes).nnz == 0 and shard["bad"] == [("f", "broken")]
    assert shard["config_sha256"] == "abc"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable sksplice shard"):
        read_shard(path)


def test_labels_outside_the_classes_are_refused(tree, est):
    import scipy.sparse as sp

    from sksplice.shards import write_shard

    _run(tree, est)
    out = tree / "out"
    shard = read_shard(out / "shards" / "shard-000000.npz")
    write_shard(out / "shards" / "shard-000000.npz", shard["codes"], shard["images"],
                [7] * len(shard["images"]), shard["cosine"], shard["bad"],
                config_sha256=shard["config_sha256"])
    with pytest.raises(ValueError, match="class indices outside"):
        load_decomposition(out)
    assert sp.issparse(shard["codes"])


def test_resumed_run_equals_an_uninterrupted_one(tree, est):
    _run(tree, est, out="reference")
    reference = load_decomposition(tree / "reference")
    _run(tree, est)
    out = tree / "out"
    (out / "shards" / "shard-000001.npz").unlink()
    (out / "shards" / "shard-000002.npz").write_bytes(b"PK\x03\x04 truncated")
    (out / "shards" / ".shard-000002.npz.0123abcd.tmp").write_bytes(b"partial")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["complete"] = False
    (out / "manifest.json").write_text(json.dumps(manifest))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = _run(tree, est)
    assert again["n_resumed_shards"] == 1
    assert not list((out / "shards").glob(".*.tmp"))
    assert same_decomposition(load_decomposition(out), reference)
