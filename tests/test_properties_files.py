"""Property-based tests (hypothesis) of what decompose-dir reads and writes.

* Random file trees -- folders with odd names, images valid, corrupt and empty,
  named pipes, links to files, to folders, back to an ancestor (loops), and
  dangling links -- are listed once per real file and decomposed with every
  image accounted for.
* Random corruptions of a finished decomposition folder -- truncated or
  bit-flipped shards, manifests replaced by garbage or edited to point
  elsewhere, files deleted -- are either refused with a clear error or read
  back as exactly what was written, and a rerun restores the uninterrupted
  result (or asks for ``--overwrite``).

CI runs a bounded number of examples; ``SKSPLICE_LONG_TESTS=1`` runs more.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from _shard_helpers import image_tree, same_decomposition, toy_estimator, write_png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LONG = os.environ.get("SKSPLICE_LONG_TESTS") == "1"
TREES = 200 if LONG else 12
CORRUPTIONS = 300 if LONG else 25
SETTINGS = {"deadline": None, "derandomize": not LONG,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]}

pytestmark = pytest.mark.slow

NAMES = ["a", "b c", "ü", "-x", "日本", "x.png", "CAPS", "' quote", "#1", "long" * 20]
EXTS = [".png", ".PNG", ".jpg", ".txt", ".gif", ""]
IMAGE_EXTS = {".png", ".jpg", ".gif"}


@pytest.fixture(scope="module")
def est():
    return toy_estimator()


# ------------------------------------------------------------------ file trees
folders = st.lists(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3), max_size=5)
files = st.lists(st.tuples(st.integers(0, 5), st.sampled_from(NAMES), st.sampled_from(EXTS),
                           st.sampled_from(["png", "png", "corrupt", "empty", "fifo"])),
                 max_size=10)
links = st.lists(st.tuples(st.integers(0, 5), st.sampled_from(NAMES), st.sampled_from(EXTS),
                           st.sampled_from(["ancestor", "root", "folder", "file", "dangling"]),
                           st.integers(0, 20)), max_size=5)


def _build(root, folder_paths, file_specs, link_specs):
    dirs = [root]
    for parts in folder_paths:
        d = root.joinpath(*parts)
        d.mkdir(parents=True, exist_ok=True)
        dirs.append(d)
    made = []
    for i, (at, name, ext, kind) in enumerate(file_specs):
        d = dirs[at % len(dirs)]
        path = d / f"{name}{i}{ext}"
        if path.exists() or path.is_symlink():
            continue
        if kind == "png":
            write_png(path, i)
        elif kind == "corrupt":
            path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        elif kind == "empty":
            path.write_bytes(b"")
        else:
            os.mkfifo(path)
        made.append(path)
    for i, (at, name, ext, kind, pick) in enumerate(link_specs):
        d = dirs[at % len(dirs)]
        path = d / f"link-{name}{i}{ext}"
        if path.exists() or path.is_symlink():
            continue
        if kind == "ancestor":
            target = d.parent if d != root else root
        elif kind == "root":
            target = root
        elif kind == "folder":
            target = dirs[pick % len(dirs)]
        elif kind == "file" and made:
            target = made[pick % len(made)]
        else:
            target = root / f"missing{i}.png"
        os.symlink(target, path)


def _expected(root):
    """Reference walk (depth-first, independent of the library's): inodes of image files."""
    seen_dirs, found = set(), set()

    def visit(folder):
        st_ = os.stat(folder)
        if (st_.st_dev, st_.st_ino) in seen_dirs:
            return
        seen_dirs.add((st_.st_dev, st_.st_ino))
        for entry in os.scandir(folder):
            if entry.name.startswith("."):
                continue
            try:
                s = os.stat(entry.path)
            except OSError:
                continue
            if os.path.isdir(entry.path):
                visit(entry.path)
            elif (os.path.isfile(entry.path) and entry.name.lower().endswith(
                    (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff",
                     ".ppm", ".pgm"))):
                found.add((s.st_dev, s.st_ino))

    visit(root)
    return found


@settings(max_examples=TREES, **SETTINGS)
@given(folder_paths=folders, file_specs=files, link_specs=links,
       shard_size=st.integers(1, 4))
def test_random_trees_are_listed_once_and_fully_accounted_for(est, folder_paths, file_specs,
                                                               link_specs, shard_size):
    from sksplice.shards import (
        decompose_to_shards,
        list_image_files,
        load_decomposition,
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        root.mkdir()
        _build(root, folder_paths, file_specs, link_specs)
        images, classes = list_image_files(root)
        inodes = [(os.stat(root / p).st_dev, os.stat(root / p).st_ino) for p in images]
        assert len(set(inodes)) == len(images)  # each real file once
        assert set(inodes) == _expected(root)  # and every one of them
        assert images == sorted(images)
        for p in images:
            assert (root / p).is_file() and not any(part.startswith(".")
                                                     for part in p.split("/"))
        if not images:
            return
        out = Path(tmp) / "out"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            manifest = decompose_to_shards(images, out, est, labels=classes, root=root,
                                           shard_size=shard_size, plots=False)
        bad = {b["image"] for b in manifest["bad_files"]}
        assert manifest["n_decomposed"] + len(bad) == len(images)
        loaded = load_decomposition(out)
        assert sorted(loaded.images + sorted(bad)) == images
        for p in bad:  # only files that are no image are skipped
            assert (root / p).stat().st_size == 0 or (root / p).read_bytes().endswith(
                b"garbage")


# ------------------------------------------------------------------ corruptions
LAYOUT = [f"{c}/{i}.png" for c in ("a", "b") for i in range(3)] + ["top.png"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, est):
    from sksplice.shards import decompose_to_shards, list_image_files

    tmp = tmp_path_factory.mktemp("corrupt")
    root = image_tree(tmp / "images", LAYOUT, broken={"b/1.png"})
    images, classes = list_image_files(root)
    decompose_to_shards(images, tmp / "ref", est, labels=classes, root=root, shard_size=2,
                        plots=False)
    # a valid shard outside the folder: reading it would be reading outside
    shutil.copy(tmp / "ref" / "shards" / "shard-000000.npz", tmp / "outside.npz")
    return root, tmp / "ref", images, classes


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids,
                                                              max_size=3), max_leaves=8)
paths = st.sampled_from(["../outside.npz", "../../outside.npz", "/etc/passwd", "shards/../x",
                         "shards/shard-000009.npz", "concepts.json", "shards\\x.npz", "", ".",
                         "shards/shard-000001.npz"])
corruptions = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 3), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.integers(0, 3), st.floats(0, 1)),
    st.tuples(st.just("delete"), st.sampled_from(["manifest.json", "concepts.json",
                                                  "summary.json", "shards/shard-000002.npz"]),
              st.just(0)),
    st.tuples(st.just("manifest-bytes"), st.binary(max_size=40), st.just(0)),
    st.tuples(st.just("manifest-json"), json_values, st.just(0)),
    st.tuples(st.just("manifest-field"), st.sampled_from(
        ["file", "concepts_file", "complete", "shards", "classes", "images", "plots"]),
        st.one_of(paths, json_values)),
    st.tuples(st.just("concepts"), json_values, st.just(0)),
)


def _corrupt(out, kind, a, b):
    shards = sorted((out / "shards").glob("shard-*.npz"))
    if kind in ("truncate", "flip"):
        path = shards[a % len(shards)]
        data = bytearray(path.read_bytes())
        pos = min(int(b * len(data)), len(data) - 1)
        if kind == "truncate":
            data = data[:pos]
        else:
            data[pos] ^= 0xFF
        path.write_bytes(bytes(data))
    elif kind == "delete":
        (out / a).unlink(missing_ok=True)
    elif kind == "manifest-bytes":
        (out / "manifest.json").write_bytes(a)
    elif kind == "manifest-json":
        (out / "manifest.json").write_text(json.dumps(a))
    elif kind == "concepts":
        (out / "concepts.json").write_text(json.dumps(a))
    else:
        m = json.loads((out / "manifest.json").read_text())
        if a == "file":
            m["shards"][0]["file"] = b
        elif a == "images":
            m["shards"][0]["images"] = b
        elif a == "concepts_file":
            m["concepts_file"] = b
        else:
            m[a] = b
        (out / "manifest.json").write_text(json.dumps(m))


def _rows(dec):
    return {(img, tuple(np.round(dec.codes[i].toarray().ravel(), 12)))
            for i, img in enumerate(dec.images)}


@settings(max_examples=CORRUPTIONS, **SETTINGS)
@given(corruption=corruptions)
def test_corrupt_folders_are_refused_or_restored(est, reference, corruption):
    from sksplice.shards import decompose_to_shards, load_decomposition

    root, ref_out, images, classes = reference
    ref = load_decomposition(ref_out)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        shutil.copytree(ref_out, out)
        _corrupt(out, *corruption)
        try:
            seen = load_decomposition(out)
        except (ValueError, FileNotFoundError):
            seen = None
        if seen is not None:  # whatever is read back was written by this run
            assert _rows(seen) <= _rows(ref)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                decompose_to_shards(images, out, est, labels=classes, root=root,
                                    shard_size=2, plots=False)
            except ValueError as exc:
                assert "--overwrite" in str(exc) or "overwrite=True" in str(exc), exc
                decompose_to_shards(images, out, est, labels=classes, root=root,
                                    shard_size=2, plots=False, overwrite=True)
        assert same_decomposition(load_decomposition(out), ref)
        assert not list(out.rglob("*.tmp"))
