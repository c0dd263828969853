"""One shard's job (compute it unless a finished copy is on disk) and the manifest's life."""

from __future__ import annotations

import os

from .._version import __version__
from ._decompose import decompose_image_files
from ._files import read_images
from ._format import FORMAT, FORMAT_VERSION, SHARD_RE, inside, read_shard, write_shard

__all__ = ["finish_manifest", "new_manifest", "shard_is_complete", "shard_job"]


def new_manifest(config, classes, root, shard_size, plan, n_images):
    """A manifest of an unfinished run (``complete: false``).

    Parameters
    ----------
    config : dict
        The run's settings (:func:`~sksplice.shards._decompose.run_config`).
    classes : list of str
        Class names.
    root : str, path or None
        Folder the image paths are relative to.
    shard_size : int or None
        Images per shard.
    plan : list of dict
        The planned shards (``file``, ``images``, ``labels``).
    n_images : int
        Images planned.

    Returns
    -------
    manifest : dict
        Plain JSON values.
    """
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sksplice_version": __version__,
        "complete": False,
        "root": None if root is None else os.path.abspath(root),
        "config": config,
        "concepts_file": "concepts.json",
        "classes": list(classes),
        "shard_size": None if shard_size is None else int(shard_size),
        "n_images": int(n_images),
        "shards": plan,
        "bad_files": [],
    }


def shard_is_complete(path, images, n_concepts, digest):
    """The finished shard at ``path`` for exactly these planned images, or None."""
    try:
        shard = read_shard(path)
    except (ValueError, FileNotFoundError):
        return None
    if shard["config_sha256"] and shard["config_sha256"] != digest:
        return None
    done = shard["images"] + [b[0] for b in shard["bad"]]
    if sorted(done) != sorted(str(i) for i in images) or shard["codes"].shape[1] != n_concepts:
        return None
    return shard


def shard_job(entry, out, estimator, root, batch_size, strict, n_concepts, digest,
              progress=None):
    """Compute one planned shard unless a finished copy is already on disk.

    A finished shard is redone when one of its unreadable images can now be
    read (the user fixed it).

    Parameters
    ----------
    entry : dict
        The planned shard (``file``, ``images``, ``labels``).
    out : str or path
        The output folder.
    estimator : SpliceTransformer
        Fitted.
    root : str, path or None
        Folder the image paths are relative to.
    batch_size : int
        Images decoded and embedded at once.
    strict : bool
        Raise on an unreadable image instead of skipping it.
    n_concepts : int
        Columns of the codes.
    digest : str
        :func:`~sksplice.shards._decompose.config_digest` of the run.
    progress : callable, default=None
        Called with the number of images handled.

    Returns
    -------
    result : dict
        ``n_rows``, ``bad`` (list of (image, error)) and ``resumed`` (bool).
    """
    path = inside(out, entry["file"], SHARD_RE)
    files = [os.path.join(root, p) if root is not None else p for p in entry["images"]]
    done = shard_is_complete(path, entry["images"], n_concepts, digest)
    if done is not None and done["bad"]:
        where = {img: f for img, f in zip(entry["images"], files, strict=False)}
        _, fixed, _ = read_images([where[b[0]] for b in done["bad"] if b[0] in where])
        if fixed:
            done = None  # an unreadable image was fixed: redo the shard
    if done is not None:
        if progress is not None:
            progress(len(entry["images"]))
        return {"n_rows": done["codes"].shape[0], "bad": done["bad"], "resumed": True}
    codes, cosine, ok, bad = decompose_image_files(
        estimator, files, batch_size=batch_size, strict=strict, progress=progress,
    )
    bad = [(entry["images"][i], msg) for i, msg in bad]
    write_shard(
        path, codes, [entry["images"][i] for i in ok],
        [entry["labels"][i] for i in ok], cosine, bad, config_sha256=digest,
    )
    return {"n_rows": codes.shape[0], "bad": bad, "resumed": False}


def finish_manifest(manifest, plan, results):
    """The manifest of a finished run: per-shard rows and the unreadable files.

    Parameters
    ----------
    manifest : dict
        From :func:`new_manifest`.
    plan : list of dict
        The shards, in order.
    results : list of dict
        :func:`shard_job`'s result for each shard.

    Returns
    -------
    manifest : dict
        Updated in place, with ``complete: true``.
    """
    bad_files = []
    for entry, res in zip(plan, results, strict=False):
        entry["n_rows"] = int(res["n_rows"])
        entry["bad"] = [b[0] for b in res["bad"]]
        bad_files.extend({"image": b[0], "error": b[1]} for b in res["bad"])
    manifest["shards"] = plan
    manifest["bad_files"] = bad_files
    manifest["n_decomposed"] = int(sum(r["n_rows"] for r in results))
    manifest["n_resumed_shards"] = int(sum(bool(r.get("resumed")) for r in results))
    manifest["complete"] = True
    return manifest
