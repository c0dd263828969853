"""The output folder's boundary, and manifests that list a shard twice.

Everything a run writes, deletes or reads under its output folder must have
its real path inside that folder: a symbolic link planted in the folder
(``shards/``, ``plots/``, ``manifest.json``, the lock, one shard) that points
elsewhere is refused before anything is touched, and the files it points at
stay exactly as they were.  ``load_decomposition`` reads each shard once and
counts rows against the manifest.
"""

from __future__ import annotations

import json

import pytest
from _shard_helpers import image_tree, same_decomposition, toy_estimator

from sksplice.shards import decompose_to_shards, list_image_files, load_decomposition

LAYOUT = ["cats/0.png", "cats/1.png", "cats/2.png", "dogs/0.png", "dogs/1.png", "top.png"]


@pytest.fixture(scope="module")
def est():
    return toy_estimator()


@pytest.fixture
def tree(tmp_path):
    image_tree(tmp_path / "images", LAYOUT)
    return tmp_path


def _run(tmp, est, out="out", **kw):
    root = tmp / "images"
    images, classes = list_image_files(root, exclude=[tmp / out])
    kw.setdefault("plots", False)
    kw.setdefault("shard_size", 2)
    return decompose_to_shards(images, tmp / out, est, labels=classes, root=root, **kw)


def _victim(tmp):
    """A folder of someone else's files, named like the files a run writes."""
    victim = tmp / "victim"
    (victim / "plots").mkdir(parents=True)
    for name in ("shard-000000.npz", "shard-000001.npz", "manifest.json", "concepts.json",
                 "summary.json", "keep.txt", "plots/cats.png"):
        (victim / name).write_text(f"the user's {name}")
    return victim


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


# link name in the output folder -> what in the victim folder it points at
LINKS = {
    "shards": "",
    "plots": "plots",
    "manifest.json": "manifest.json",
    "concepts.json": "concepts.json",
    "summary.json": "summary.json",
    "summary.csv": "keep.txt",
    ".sksplice.lock": "keep.txt",
    "shards/shard-000000.npz": "shard-000000.npz",
    "plots/cats.png": "plots/cats.png",
}


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "after-a-run"])
@pytest.mark.parametrize("link", list(LINKS))
def test_a_link_out_of_the_folder_is_refused_before_anything_is_touched(
        tree, est, link, existing, overwrite):
    out = tree / "out"
    if existing:
        _run(tree, est, summary=True)
    victim = _victim(tree)
    before = _snapshot(victim)
    planted = out / link
    planted.parent.mkdir(parents=True, exist_ok=True)
    if planted.is_dir():
        for p in planted.iterdir():
            p.unlink()
        planted.rmdir()
    elif planted.exists():
        planted.unlink()
    planted.symlink_to(victim / LINKS[link])
    listing = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    with pytest.raises(ValueError, match="outside the folder"):
        _run(tree, toy_estimator(l1=0.3), overwrite=overwrite, summary=True)
    assert _snapshot(victim) == before  # nothing outside was written, renamed or deleted
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == listing


@pytest.mark.parametrize("what", ["shard", "manifest", "shards folder"])
def test_a_link_to_another_runs_codes_is_not_loaded(tree, est, what):
    _run(tree, est, out="other")
    _run(tree, toy_estimator(l1=0.3))
    out, other = tree / "out", tree / "other"
    name = {"shard": "shards/shard-000000.npz", "manifest": "manifest.json",
            "shards folder": "shards"}[what]
    target = out / name
    if target.is_dir():
        for p in target.iterdir():
            p.unlink()
        target.rmdir()
    else:
        target.unlink()
    target.symlink_to(other / name)
    with pytest.raises(ValueError, match="outside the folder"):
        load_decomposition(out)


def test_links_inside_the_folder_are_followed(tree, est):
    reference = _run(tree, est) and load_decomposition(tree / "out")
    out = tree / "out"
    (out / "shards").rename(out / "real-shards")
    (out / "shards").symlink_to(out / "real-shards")
    assert same_decomposition(load_decomposition(out), reference)


# ------------------------------------------------------------------ manifests
def test_a_shard_listed_twice_is_refused_and_a_rerun_repairs_it(tree, est):
    _run(tree, est)
    out = tree / "out"
    reference = load_decomposition(out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"].append(dict(manifest["shards"][0]))  # 8 rows for 6 images
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="lists the shard 'shards/shard-000000.npz' twice"):
        load_decomposition(out)
    with pytest.warns(UserWarning, match="twice.*Resuming"):
        _run(tree, est)  # the same command rebuilds the manifest from the shards
    assert same_decomposition(load_decomposition(out), reference)
    assert len(load_decomposition(out).images) == len(LAYOUT)


def test_two_names_of_one_shard_are_refused(tree, est):
    _run(tree, est)
    out = tree / "out"
    (out / "shards" / "shard-000001.npz").unlink()
    (out / "shards" / "shard-000001.npz").symlink_to(out / "shards" / "shard-000000.npz")
    with pytest.raises(ValueError, match="twice .or two names of one file"):
        load_decomposition(out)


def test_rows_are_counted_against_the_manifest(tree, est):
    _run(tree, est)
    out = tree / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["n_decomposed"] += 2
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="hold 6 rows, but its manifest counts 8"):
        load_decomposition(out)
    manifest["n_decomposed"] -= 2
    manifest["shards"][1]["n_rows"] = 5
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="holds 2 rows, but the manifest .* counts 5"):
        load_decomposition(out)
