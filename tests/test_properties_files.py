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


# ------------------------------------------------------------------ the folder's boundary
PLANT_NAMES = ["shards", "plots", "manifest.json", "concepts.json", "summary.json",
               "summary.csv", ".sksplice.lock", "shards/shard-000000.npz",
               "shards/shard-000001.npz", "plots/a.png"]
PLANT_KINDS = ["link-outside-file", "link-outside-folder", "link-inside", "fifo", "directory"]
BOUNDARY_CASES = 100 if LONG else 12
plantings = st.lists(st.tuples(st.sampled_from(PLANT_NAMES), st.sampled_from(PLANT_KINDS)),
                     min_size=1, max_size=3, unique_by=lambda t: t[0])
_BOUNDARY_COUNTS = {"cases": 0, "planted": 0, "refused": 0, "completed": 0}


def _plant(out, victim, name, kind):
    path = out / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    if kind == "link-outside-file":
        path.symlink_to(victim / "keep.npz")
    elif kind == "link-outside-folder":
        path.symlink_to(victim)
    elif kind == "link-inside":
        (out / "elsewhere").mkdir(exist_ok=True)
        path.symlink_to(out / "elsewhere")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()


@settings(max_examples=BOUNDARY_CASES, **SETTINGS)
@given(planted=plantings, existing=st.booleans(), overwrite=st.booleans())
def test_planted_links_and_special_files_never_reach_outside(est, reference, planted, existing,
                                                             overwrite):
    from _hostile_helpers import call_without_hanging

    from sksplice.shards import decompose_to_shards, load_decomposition

    root, ref_out, images, classes = reference
    ref = load_decomposition(ref_out)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        victim = tmp / "victim"
        (victim / "shards").mkdir(parents=True)
        for name in ("keep.npz", "manifest.json", "shard-000000.npz", "shards/shard-000000.npz"):
            (victim / name).write_text(f"the user's {name}")
        before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in victim.rglob("*")
                  if p.is_file()}
        out = tmp / "out"
        if existing:
            shutil.copytree(ref_out, out)
        out.mkdir(exist_ok=True)
        for name, kind in planted:
            _plant(out, victim, name, kind)
        fifos = [out / n for n, k in planted if k == "fifo"]

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                decompose_to_shards(images, out, est, labels=classes, root=root, shard_size=2,
                                    plots=False, overwrite=overwrite)

        error = call_without_hanging(run, fifos)
        after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in victim.rglob("*")
                 if p.is_file()}
        assert after == before  # nothing outside was written, renamed or deleted
        if error is None:
            assert _rows(load_decomposition(out)) == _rows(ref)
        else:
            assert isinstance(error, (ValueError, OSError)), repr(error)
        _BOUNDARY_COUNTS["cases"] += 1
        _BOUNDARY_COUNTS["planted"] += len(planted)
        _BOUNDARY_COUNTS["refused" if error is not None else "completed"] += 1


def test_zz_boundary_counts():
    print(f"\n[properties] output-folder boundary: {_BOUNDARY_COUNTS['cases']} cases, "
          f"{_BOUNDARY_COUNTS['planted']} links/special files planted, "
          f"{_BOUNDARY_COUNTS['refused']} refused, {_BOUNDARY_COUNTS['completed']} completed, "
          "0 files outside touched")


# ------------------------------------------------------------------ paths that are not files
SPECIAL_CASES = 200 if LONG else 20
_SPECIAL_COUNTS = {"cases": 0}


@settings(max_examples=SPECIAL_CASES, **SETTINGS)
@given(entry=st.sampled_from(sorted(__import__("test_io").ENTRY_POINTS)),
       kind=st.sampled_from(__import__("test_io").KINDS), hops=st.integers(0, 2))
def test_special_files_behind_links_are_refused_at_every_entry_point(entry, kind, hops):
    from _hostile_helpers import call_without_hanging
    from test_io import ENTRY_POINTS, _special

    name, call = ENTRY_POINTS[entry]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        keep = []
        target = tmp / ("real-" + name if hops else name)
        fifos = _special(target, kind, keep)
        path = target
        for hop in range(hops):  # a chain of links ending at the special file
            link = tmp / (name if hop == hops - 1 else f"hop{hop}-{name}")
            link.symlink_to(path)
            path = link
        error = call_without_hanging(lambda: call(path), fifos)
        for sock in keep:
            sock.close()
    assert error is not None
    message = str(error)
    assert "not a regular file" in message or "outside the folder" in message, message
    _SPECIAL_COUNTS["cases"] += 1


def test_zz_special_counts():
    print(f"\n[properties] special files (pipes, folders, sockets, devices, behind 0-2 links) "
          f"at {len(__import__('test_io').ENTRY_POINTS)} entry points: "
          f"{_SPECIAL_COUNTS['cases']} cases, all refused by name, none waited on")
