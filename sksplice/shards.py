"""Decompose image collections into sparse code shards on disk, resumably.

This is the code path behind ``sksplice decompose-dir`` and behind
:func:`sksplice.decompose_to_shards` on a Dask cluster.  A decomposition
folder ``OUT`` holds::

    OUT/manifest.json        what was decomposed, with which settings, where
    OUT/concepts.json        the concept names, one per code column
    OUT/shards/shard-000000.npz, shard-000001.npz, ...
    OUT/summary.json         per-class concept summary (and summary.csv)
    OUT/plots/<class>.png    top concepts of each class

Each shard is a compressed ``.npz`` readable with
:func:`scipy.sparse.load_npz` (a CSR matrix of shape (n_rows, n_concepts))
that also records which images its rows are (``images``), their labels
(``labels``), the reconstruction cosine of each row (``cosine``) and the
image files of the shard that could not be read (``bad_images``,
``bad_errors``).  Shards are written atomically (a temporary file in the same
folder, then :func:`os.replace`), so an interrupted run never leaves a corrupt
shard; a rerun with the same settings keeps every finished shard and computes
only the missing ones.  :func:`load_decomposition` reads a folder back.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ._io import atomic_write as _atomic_write

__all__ = [
    "IMAGE_EXTENSIONS",
    "BadImageError",
    "Decomposition",
    "decompose_to_shards",
    "list_image_files",
    "load_decomposition",
    "read_shard",
    "write_shard",
    "write_summary",
]

#: Format name and version written into every manifest.
FORMAT = "sksplice-shards"
FORMAT_VERSION = 1

#: File name extensions treated as images when walking a folder (case-insensitive).
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
)

_SHARD_KEYS = ("images", "labels", "cosine", "bad_images", "bad_errors")


class BadImageError(ValueError):
    """An image file could not be read (raised only when ``strict=True``)."""


# ----------------------------------------------------------------- listing
def list_image_files(root):
    """Every image file under ``root``, with its class from the sub-folder name.

    Folders and files whose names start with ``"."`` are skipped; files are
    recognised by their extension (:data:`IMAGE_EXTENSIONS`).  The class of an
    image is the name of the first-level sub-folder it lies in (as
    torchvision's ``ImageFolder``), ``""`` for images directly in ``root``.

    Parameters
    ----------
    root : str or path
        The folder to walk (recursively, in sorted order).

    Returns
    -------
    images : list of str
        Paths relative to ``root``, with ``/`` separators, sorted.
    classes : list of str
        The class of each image (``""`` when it is not in a sub-folder).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "cat").mkdir(); (d / "cat" / "a.jpg").touch(); (d / "b.PNG").touch()
    >>> (d / "notes.txt").touch()
    >>> list_image_files(d)
    (['b.PNG', 'cat/a.jpg'], ['', 'cat'])
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {str(root)!r} does not exist or is not a folder; pass a "
            "folder of images (sub-folders name the classes)."
        )
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            rel = (rel_dir / name).as_posix()
            found.append(rel)
    found.sort()
    classes = [rel.split("/", 1)[0] if "/" in rel else "" for rel in found]
    return found, classes


# ------------------------------------------------------------ atomic writes
def _atomic_write_json(path, obj):
    data = json.dumps(obj, indent=1, ensure_ascii=False).encode("utf-8")
    _atomic_write(path, lambda f: f.write(data))


def _remove_stale_temporaries(folder):
    """Delete temporary files an interrupted writer left behind."""
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


# ------------------------------------------------------------------ shards
def write_shard(path, codes, images, labels=None, cosine=None, bad=()):
    """Write one shard atomically.

    Parameters
    ----------
    path : str or path
        Destination ``.npz`` file.
    codes : sparse matrix or ndarray of shape (n_rows, n_concepts)
        The concept codes (stored as CSR).
    images : sequence of str of length n_rows
        The image each row belongs to.
    labels : sequence of int of length n_rows, default=None
        Class index of each row (``-1`` when unlabelled; ``None``: all ``-1``).
    cosine : ndarray of shape (n_rows,), default=None
        Cosine between each image's embedding and its reconstruction.
    bad : sequence of (image, error) pairs, default=()
        Image files of this shard that could not be read.

    Examples
    --------
    >>> import tempfile, os, numpy as np, scipy.sparse as sp
    >>> path = os.path.join(tempfile.mkdtemp(), "shard-000000.npz")
    >>> write_shard(path, sp.csr_matrix(np.eye(2, 3)), ["a.jpg", "b.jpg"], [0, 1])
    >>> sp.load_npz(path).shape
    (2, 3)
    >>> read_shard(path)["images"]
    ['a.jpg', 'b.jpg']
    """
    codes = sp.csr_matrix(codes)
    codes.sort_indices()
    n = codes.shape[0]
    images = [str(i) for i in images]
    if len(images) != n:
        raise ValueError(f"a shard of {n} rows needs {n} image names; got {len(images)}.")
    labels = np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels, np.int64)
    cosine = np.full(n, np.nan) if cosine is None else np.asarray(cosine, dtype=np.float64)
    if labels.shape != (n,) or cosine.shape != (n,):
        raise ValueError(f"labels and cosine must have one entry per row ({n}).")
    bad = list(bad)
    arrays = {
        # the keys scipy.sparse.save_npz writes, so scipy.sparse.load_npz reads the codes
        "format": np.array(b"csr"),
        "shape": np.array(codes.shape),
        "data": codes.data,
        "indices": codes.indices,
        "indptr": codes.indptr,
        # what the rows are
        "images": np.array(images, dtype=str) if images else np.zeros(0, dtype="<U1"),
        "labels": labels,
        "cosine": cosine,
        "bad_images": np.array([str(b[0]) for b in bad] or [""], dtype=str)[: len(bad)],
        "bad_errors": np.array([str(b[1]) for b in bad] or [""], dtype=str)[: len(bad)],
        "sksplice_shard_version": np.array(FORMAT_VERSION),
    }
    _atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def read_shard(path):
    """Read a shard written by :func:`write_shard`.

    Parameters
    ----------
    path : str or path

    Returns
    -------
    shard : dict
        ``codes`` (CSR matrix), ``images`` (list of str), ``labels``
        (int ndarray), ``cosine`` (float ndarray), ``bad`` (list of
        (image, error) pairs).

    Raises
    ------
    ValueError
        If the file is not a readable shard (truncated, corrupt or foreign).
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("data", "indices", "indptr", "shape", *_SHARD_KEYS)
                       if k not in z.files]
            if missing:
                raise ValueError(f"missing arrays {missing}")
            codes = sp.csr_matrix(
                (z["data"], z["indices"], z["indptr"]), shape=tuple(int(s) for s in z["shape"])
            )
            shard = {
                "codes": codes,
                "images": [str(s) for s in z["images"]],
                "labels": np.asarray(z["labels"], dtype=np.int64),
                "cosine": np.asarray(z["cosine"], dtype=np.float64),
                "bad": list(zip((str(s) for s in z["bad_images"]),
                                (str(s) for s in z["bad_errors"]))),
            }
    except FileNotFoundError:
        raise
    except Exception as exc:  # zipfile, zlib, numpy and scipy all raise their own
        raise ValueError(f"{path} is not a readable sksplice shard ({exc}).") from exc
    n = codes.shape[0]
    if len(shard["images"]) != n or shard["labels"].shape != (n,):
        raise ValueError(f"{path} is not a consistent sksplice shard (row counts differ).")
    return shard


def _shard_is_complete(path, images, n_concepts):
    """Whether ``path`` is a finished shard for exactly these planned images."""
    try:
        shard = read_shard(path)
    except (ValueError, FileNotFoundError):
        return None
    done = shard["images"] + [b[0] for b in shard["bad"]]
    if sorted(done) != sorted(str(i) for i in images) or shard["codes"].shape[1] != n_concepts:
        return None
    return shard


# ------------------------------------------------------------ decomposition
def _load_image(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")  # forces the full decode, so truncation shows here


def _read_images(paths, strict):
    """Open the images; returns (PIL images, positions that loaded, [(position, error)])."""
    images, ok, bad = [], [], []
    for i, p in enumerate(paths):
        try:
            images.append(_load_image(p))
        except MemoryError:
            raise
        except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, ...
            msg = f"{type(exc).__name__}: {exc}".strip()
            if strict:
                raise BadImageError(
                    f"cannot read image {str(p)!r} ({msg}); remove or fix the file, or "
                    "drop --strict/strict=True to skip unreadable images."
                ) from exc
            bad.append((i, msg))
            continue
        ok.append(i)
    return images, ok, bad


def embedding_transformer(estimator):
    """A view of a fitted ``SpliceTransformer`` that takes embeddings as input.

    Shares every fitted attribute (dictionary, mean, solver) with
    ``estimator``; only ``input`` differs.
    """
    import copy

    if getattr(estimator, "input", "embedding") in ("embedding", "auto"):
        return estimator
    view = copy.copy(estimator)
    view.input = "embedding"
    return view


def image_transformer(encoder, dictionary, image_mean, **params):
    """A fitted ``SpliceTransformer`` for images embedded by ``encoder``.

    Nothing is encoded: the dictionary and the mean are given, so fitting
    only validates them.  The transformer takes embeddings (``input=
    "embedding"``); :func:`decompose_image_files` and
    :func:`decompose_to_shards` embed image files with its ``encoder``.

    Parameters
    ----------
    encoder : Encoder
        The image encoder (kept as the transformer's ``encoder``).
    dictionary : ConceptDictionary
        Built with the same encoder (:func:`sksplice.build_dictionary`).
    image_mean : ndarray of shape (n_features,) or None
        The image mean subtracted before decomposing.
    **params
        Other ``SpliceTransformer`` parameters (``l1``, ``solver``, ...).

    Returns
    -------
    transformer : SpliceTransformer
    """
    from .transformer import SpliceTransformer

    est = SpliceTransformer(dictionary=dictionary, encoder=encoder, image_mean=image_mean,
                            input="embedding", **params)
    return est.fit(dictionary.embeddings[:1])


def encoder_of(estimator):
    """The image encoder of a fitted ``SpliceTransformer`` (loaded once, then reused)."""
    return estimator._get_encoder()


def decompose_image_files(estimator, paths, *, encoder=None, batch_size=64, strict=False,
                          progress=None):
    """Embed and decompose image files, skipping (and reporting) unreadable ones.

    The shared per-batch path of ``sksplice decompose``, ``decompose-dir`` and
    :func:`decompose_to_shards`: at most ``batch_size`` decoded images are in
    memory at once.

    Parameters
    ----------
    estimator : SpliceTransformer
        Fitted; its encoder embeds the images (or pass ``encoder``).
    paths : sequence of str or path
        Image files.
    encoder : Encoder, default=None
        Overrides the estimator's encoder.
    batch_size : int, default=64
        Images decoded and embedded at once.
    strict : bool, default=False
        Raise :class:`BadImageError` on the first unreadable file instead of
        skipping it.
    progress : callable, default=None
        Called with the number of files handled after each batch.

    Returns
    -------
    codes : scipy.sparse.csr_matrix of shape (n_ok, n_concepts)
        Codes of the images that could be read, in input order.
    cosine : ndarray of shape (n_ok,)
        Cosine between each image embedding and its SpLiCE reconstruction.
    ok : ndarray of shape (n_ok,)
        Positions in ``paths`` of the rows of ``codes``.
    bad : list of (int, str)
        Positions in ``paths`` of the files that could not be read, with the
        error.
    """
    encoder = encoder_of(estimator) if encoder is None else encoder
    est = embedding_transformer(estimator)
    paths = list(paths)
    embs, ok, bad = [], [], []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images, ok_chunk, bad_chunk = _read_images(chunk, strict)
        if images:
            embs.append(np.asarray(encoder.encode_images(images, batch_size=batch_size)))
        ok.extend(start + i for i in ok_chunk)
        bad.extend((start + i, msg) for i, msg in bad_chunk)
        del images
        if progress is not None:
            progress(len(chunk))
    k = est.dictionary_.n_concepts
    if not embs:
        return sp.csr_matrix((0, k), dtype=np.float32), np.zeros(0), np.zeros(0, int), bad
    from .analysis import reconstruction_cosine

    E = np.concatenate(embs)
    codes = sp.csr_matrix(est.transform(E))
    cosine = reconstruction_cosine(est, E, codes)
    return codes, cosine, np.asarray(ok, dtype=int), bad


def _names_digest(names):
    h = hashlib.sha256()
    for n in names:
        h.update(str(n).encode("utf-8") + b"\0")
    return h.hexdigest()


def run_config(estimator, encoder, shard_size):
    """The settings that determine a decomposition's codes (compared on resume)."""
    mean = estimator.image_mean_
    return {
        "encoder": str(getattr(encoder, "identity", encoder)),
        "n_concepts": int(estimator.dictionary_.n_concepts),
        "concepts_sha256": _names_digest(estimator.dictionary_.names),
        "dictionary_sha256": hashlib.sha256(
            np.ascontiguousarray(estimator.dictionary_.embeddings).tobytes()
        ).hexdigest(),
        "image_mean_sha256": None if mean is None else hashlib.sha256(
            np.ascontiguousarray(mean, dtype=np.float64).tobytes()
        ).hexdigest(),
        "l1": float(estimator.l1),
        "n_nonzero": getattr(estimator, "n_nonzero", None),
        "solver": str(estimator.solver),
        "tol": float(estimator.tol),
        "max_iter": estimator.max_iter,
        "shard_size": int(shard_size),
    }


@dataclass
class Decomposition:
    """A decomposition folder read back by :func:`load_decomposition`.

    Attributes
    ----------
    codes : scipy.sparse.csr_matrix of shape (n_images, n_concepts)
        All shards' codes, in manifest order.
    concept_names : ndarray of shape (n_concepts,)
    images : list of str
        The image of each row.
    labels : ndarray of shape (n_images,)
        Class index of each row (``-1``: no class).
    classes : list of str
        Class names (``labels`` index into it).
    cosine : ndarray of shape (n_images,)
        Reconstruction cosine of each row.
    bad_files : list of dict
        ``{"image": ..., "error": ...}`` for every file that could not be read.
    manifest : dict
        The parsed ``manifest.json``.
    """

    codes: sp.csr_matrix
    concept_names: np.ndarray
    images: list
    labels: np.ndarray
    classes: list
    cosine: np.ndarray
    bad_files: list = field(default_factory=list)
    manifest: dict = field(default_factory=dict)

    def class_names_of_rows(self):
        """The class name of every row (``""`` for unlabelled rows)."""
        names = np.asarray(list(self.classes) + [""], dtype=object)
        return names[self.labels]


def _read_manifest(out):
    path = Path(out) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{str(path)!r} does not exist: {str(out)!r} is not a decomposition folder "
            "(create one with `sksplice decompose-dir DIR --out OUT` or "
            "sksplice.decompose_to_shards)."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON ({exc}); rerun the decomposition "
                         "with a new output folder.") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not an sksplice manifest (format "
                         f"{manifest.get('format')!r}, expected {FORMAT!r}).")
    return manifest


def load_decomposition(out):
    """Read a decomposition folder (``decompose-dir`` or :func:`decompose_to_shards`).

    Parameters
    ----------
    out : str or path
        The output folder.

    Returns
    -------
    decomposition : Decomposition

    Raises
    ------
    ValueError
        If the run is not complete (resume it first) or a shard is unreadable.
    """
    out = Path(out)
    manifest = _read_manifest(out)
    if not manifest.get("complete"):
        raise ValueError(
            f"the decomposition in {str(out)!r} is not complete; rerun the same "
            "command (it resumes where it stopped) before loading it."
        )
    names = np.asarray(json.loads((out / manifest["concepts_file"]).read_text("utf-8")),
                       dtype=object)
    blocks, images, labels, cosine = [], [], [], []
    for entry in manifest["shards"]:
        shard = read_shard(out / entry["file"])
        blocks.append(shard["codes"])
        images.extend(shard["images"])
        labels.append(shard["labels"])
        cosine.append(shard["cosine"])
    k = len(names)
    codes = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, k))
    return Decomposition(
        codes=codes, concept_names=names, images=images,
        labels=np.concatenate(labels) if labels else np.zeros(0, np.int64),
        classes=list(manifest.get("classes", [])),
        cosine=np.concatenate(cosine) if cosine else np.zeros(0),
        bad_files=list(manifest.get("bad_files", [])), manifest=manifest,
    )


# --------------------------------------------------------------- the driver
def _plan(images, labels, shard_size):
    return [
        {
            "file": f"shards/shard-{i // shard_size:06d}.npz",
            "images": list(images[i : i + shard_size]),
            "labels": [int(v) for v in labels[i : i + shard_size]],
        }
        for i in range(0, len(images), shard_size)
    ]


def _label_indices(labels, classes):
    """Class names per image -> (class indices, class list)."""
    if labels is None:
        return None, list(classes or [])
    labels = ["" if v is None else str(v) for v in labels]
    if classes is None:
        classes = sorted({v for v in labels if v != ""})
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({v for v in labels if v != "" and v not in index})
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not in classes; pass classes that "
                         "include every label.")
    return [index.get(v, -1) for v in labels], list(classes)


def decompose_to_shards(images, out, estimator, *, labels=None, classes=None, root=None,
                        shard_size=1024, batch_size=64, strict=False, overwrite=False,
                        summary=True, plots=True, top_k=10, progress=False, dask=None):
    """Embed and decompose image files into sparse code shards in ``out``.

    Runs shard by shard with bounded memory, resumably: rerunning with the same
    settings keeps every finished shard and computes only the missing ones.
    With a Dask bag of paths (or ``dask=True``) each shard is a task on the
    active Dask scheduler (e.g. a ``dask.distributed`` cluster; the workers
    must see ``out``, e.g. on a shared filesystem), and the estimator is sent
    to the workers once.

    Parameters
    ----------
    images : list of str or path, or dask.bag.Bag
        Image files.  A bag's elements are paths or ``(path, label)`` pairs;
        each partition becomes one shard.
    out : str or path
        Output folder (created).
    estimator : SpliceTransformer
        Fitted transformer whose encoder embeds the images; its settings
        (``l1``, dictionary, mean, solver) decide the codes.
    labels : sequence of str, default=None
        Class name of each image (``""`` or None: no class).
    classes : sequence of str, default=None
        All class names, in label-index order (default: the sorted labels).
    root : str or path, default=None
        Folder the image paths are relative to; the manifest stores paths
        relative to it.
    shard_size : int, default=1024
        Images per shard (lists only; a bag's partitions are its shards).
    batch_size : int, default=64
        Images decoded and embedded at once.
    strict : bool, default=False
        Raise :class:`BadImageError` on an unreadable image instead of skipping
        it (skipped files are listed in the manifest's ``bad_files``).
    overwrite : bool, default=False
        Discard an existing decomposition in ``out`` made with other settings
        (without it, such a folder is an error, so nothing is mixed).
    summary : bool, default=True
        Write the per-class concept summary (``summary.json``, ``summary.csv``).
    plots : bool, default=True
        Write a PNG of the top concepts per class (needs matplotlib).
    top_k : int, default=10
        Concepts per class in the summary and plots.
    progress : bool, default=False
        Show a progress bar (tqdm, on stderr).
    dask : bool, default=None
        Run the shards as Dask tasks.  ``None``: only when ``images`` is a
        Dask bag.

    Returns
    -------
    manifest : dict
        The manifest written to ``out/manifest.json``.

    See Also
    --------
    load_decomposition : Read the folder back.
    """
    from ._dask import is_dask_collection

    out = Path(out)
    if shard_size < 1 or batch_size < 1:
        raise ValueError("shard_size and batch_size must be positive integers.")
    encoder = encoder_of(estimator)
    config = run_config(estimator, encoder, shard_size)
    names = [str(n) for n in estimator.dictionary_.names]
    use_dask = is_dask_collection(images) if dask is None else bool(dask)
    if is_dask_collection(images):
        from ._dask import decompose_bag_to_shards

        _prepare_out(out, config, None, overwrite, names)
        # what an interrupted run leaves: enough for a rerun to recognise the folder
        _atomic_write_json(out / "manifest.json",
                           _new_manifest(config, [], root, None, [], 0))
        manifest = decompose_bag_to_shards(
            images, out, estimator, config=config, classes=classes, root=root,
            batch_size=batch_size, strict=strict,
        )
    else:
        images = [os.fspath(p) for p in images]
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"got {len(labels)} labels for {len(images)} images; pass one "
                             "label per image.")
        label_idx, classes = _label_indices(labels, classes)
        if label_idx is None:
            label_idx = [-1] * len(images)
        plan = _plan(images, label_idx, int(shard_size))
        manifest = _new_manifest(config, classes, root, shard_size, plan, len(images))
        _prepare_out(out, config, plan, overwrite, names)
        _atomic_write_json(out / "manifest.json", manifest)
        if use_dask:
            from ._dask import run_shard_plan

            results = run_shard_plan(plan, out, estimator, root=root, batch_size=batch_size,
                                     strict=strict, n_concepts=len(names))
        else:
            results = _run_plan_locally(plan, out, estimator, encoder, root=root,
                                        batch_size=batch_size, strict=strict,
                                        n_concepts=len(names), progress=progress)
        manifest = _finish_manifest(manifest, plan, results)
    _atomic_write_json(out / "manifest.json", manifest)
    if summary:
        write_summary(out, top_k=top_k, plots=plots)
        manifest["summary"] = "summary.json"
        manifest["plots"] = sorted(
            p.relative_to(out).as_posix() for p in (out / "plots").glob("*.png")
        ) if plots else []
        _atomic_write_json(out / "manifest.json", manifest)
    return manifest


def _new_manifest(config, classes, root, shard_size, plan, n_images):
    from . import __version__

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


def _prepare_out(out, config, plan, overwrite, names):
    """Create ``out`` or check that it holds a run with the same settings."""
    import shutil

    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        try:
            old = _read_manifest(out)
        except ValueError:
            old = None
        same = (
            old is not None and old.get("config") == config
            and (plan is None or [(s["file"], s["images"], s["labels"]) for s in old["shards"]]
                 == [(s["file"], s["images"], s["labels"]) for s in plan])
        )
        if not same:
            if not overwrite:
                what = ("other settings" if old is None or old.get("config") != config
                        else "another list of images")
                raise ValueError(
                    f"{str(out)!r} already holds a decomposition made with {what}; "
                    "pass --overwrite (overwrite=True) to replace it, or choose another "
                    "output folder."
                )
            for sub in ("shards", "plots"):
                shutil.rmtree(out / sub, ignore_errors=True)
            for f in ("manifest.json", "summary.json", "summary.csv", "concepts.json"):
                (out / f).unlink(missing_ok=True)
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(
            f"{str(out)!r} exists and is not empty; choose an empty or new output folder "
            "(or pass --overwrite / overwrite=True)."
        )
    (out / "shards").mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out / "shards")
    _remove_stale_temporaries(out)
    if not (out / "concepts.json").exists():
        _atomic_write_json(out / "concepts.json", names)


def _shard_job(entry, out, estimator, encoder, root, batch_size, strict, n_concepts,
               progress=None):
    """Compute one planned shard unless a finished copy is already on disk."""
    path = Path(out) / entry["file"]
    done = _shard_is_complete(path, entry["images"], n_concepts)
    if done is not None:
        if progress is not None:
            progress(len(entry["images"]))
        return {"n_rows": done["codes"].shape[0], "bad": done["bad"], "resumed": True}
    files = [os.path.join(root, p) if root is not None else p for p in entry["images"]]
    codes, cosine, ok, bad = decompose_image_files(
        estimator, files, encoder=encoder, batch_size=batch_size, strict=strict,
        progress=progress,
    )
    bad = [(entry["images"][i], msg) for i, msg in bad]
    write_shard(
        path, codes, [entry["images"][i] for i in ok],
        [entry["labels"][i] for i in ok], cosine, bad,
    )
    return {"n_rows": codes.shape[0], "bad": bad, "resumed": False}


def _run_plan_locally(plan, out, estimator, encoder, *, root, batch_size, strict, n_concepts,
                      progress):
    from tqdm.auto import tqdm

    total = sum(len(e["images"]) for e in plan)
    bar = tqdm(total=total, unit="img", disable=not progress, desc="decomposing",
               dynamic_ncols=True)
    try:
        results = []
        for entry in plan:
            results.append(_shard_job(entry, out, estimator, encoder, root, batch_size,
                                      strict, n_concepts, progress=bar.update))
    finally:
        bar.close()
    return results


def _finish_manifest(manifest, plan, results):
    bad_files = []
    for entry, res in zip(plan, results):
        entry["n_rows"] = int(res["n_rows"])
        entry["bad"] = [b[0] for b in res["bad"]]
        bad_files.extend({"image": b[0], "error": b[1]} for b in res["bad"])
    manifest["shards"] = plan
    manifest["bad_files"] = bad_files
    manifest["n_decomposed"] = int(sum(r["n_rows"] for r in results))
    manifest["n_resumed_shards"] = int(sum(bool(r.get("resumed")) for r in results))
    manifest["complete"] = True
    return manifest


# ------------------------------------------------------------------ summary
def _safe_filename(name):
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "class"
    return safe[:100]


def write_summary(out, *, top_k=10, plots=True):
    """Per-class concept summary of a decomposition folder, streamed shard by shard.

    Writes ``summary.json`` (per class: images, mean L0, mean reconstruction
    cosine and the ``top_k`` concepts by mean weight, with the fraction of
    images using each) and ``summary.csv`` (one row per class and concept),
    and with ``plots=True`` a bar chart per class in ``plots/``.  Images
    without a class are summarised as one group named ``"(all)"`` when no
    image has a class, and as ``"(unlabelled)"`` otherwise.

    Parameters
    ----------
    out : str or path
        A complete decomposition folder.
    top_k : int, default=10
        Concepts listed per class.
    plots : bool, default=True
        Also write ``plots/<class>.png`` (needs matplotlib).

    Returns
    -------
    summary : list of dict
        One entry per class, as written to ``summary.json``.
    """
    out = Path(out)
    manifest = _read_manifest(out)
    names = np.asarray(json.loads((out / manifest["concepts_file"]).read_text("utf-8")),
                       dtype=object)
    classes = list(manifest.get("classes", []))
    n_groups = len(classes) + 1  # the last group: images without a class
    k = len(names)
    weight_sum = np.zeros((n_groups, k))
    used = np.zeros((n_groups, k))
    count = np.zeros(n_groups)
    l0_sum = np.zeros(n_groups)
    cos_sum = np.zeros(n_groups)
    for entry in manifest["shards"]:
        shard = read_shard(out / entry["file"])
        codes, lab = shard["codes"], shard["labels"].copy()
        lab[lab < 0] = n_groups - 1
        onehot = sp.csr_matrix(
            (np.ones(len(lab)), (lab, np.arange(len(lab)))), shape=(n_groups, len(lab))
        )
        weight_sum += np.asarray((onehot @ codes).todense())
        used += np.asarray((onehot @ (codes > 0).astype(np.float64)).todense())
        count += np.bincount(lab, minlength=n_groups)
        l0_sum += np.bincount(lab, weights=np.diff(codes.indptr), minlength=n_groups)
        cos_sum += np.bincount(lab, weights=np.nan_to_num(shard["cosine"]), minlength=n_groups)
    from .analysis import ClassConcepts

    group_names = classes + ["(all)" if not classes else "(unlabelled)"]
    keep = np.flatnonzero(count > 0)
    dist = ClassConcepts(
        classes=np.asarray([group_names[g] for g in keep], dtype=object),
        concept_names=names,
        n_samples=count[keep].astype(int),
        mean_weight=weight_sum[keep] / count[keep, None],
        frequency=used[keep] / count[keep, None],
    )
    summary, rows = [], []
    for g in keep:
        gname = group_names[g]
        top = dist.top(gname, top_k)
        summary.append({
            "class": gname, "n_images": int(count[g]),
            "mean_l0": float(l0_sum[g] / count[g]),
            "mean_cosine": float(cos_sum[g] / count[g]),
            "top_concepts": top,
        })
        rows.extend((gname, r + 1, t["concept"], t["mean_weight"], t["frequency"])
                    for r, t in enumerate(top))
    _atomic_write_json(out / "summary.json", summary)

    def _csv(f):
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["class", "rank", "concept", "mean_weight", "frequency"])
        w.writerows(rows)
        f.write(buf.getvalue().encode("utf-8"))

    _atomic_write(out / "summary.csv", _csv)
    if plots:
        _plot_summary(out, summary, dist, top_k)
    return summary


def _plot_summary(out, summary, dist, top_k):
    """One bar chart per class (``sksplice.plotting.plot_top_concepts``)."""
    from .plotting import _import_pyplot, plot_top_concepts

    plt = _import_pyplot()
    plots_dir = Path(out) / "plots"
    plots_dir.mkdir(exist_ok=True)
    used_names = set()
    for entry in summary:
        entry["plot"] = None
        if not entry["top_concepts"]:
            continue  # every code of the class is zero: nothing to draw
        fname = _safe_filename(entry["class"])
        while fname in used_names:
            fname += "_"
        used_names.add(fname)
        title = (f"{entry['class']}: top concepts ({entry['n_images']} images, "
                 f"mean L0 {entry['mean_l0']:.1f})")
        fig = plot_top_concepts(dist, entry["class"], top_k=top_k, title=title)
        try:
            _atomic_write(plots_dir / f"{fname}.png",
                          lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
        finally:
            plt.close(fig)
        entry["plot"] = f"plots/{fname}.png"
    _atomic_write_json(Path(out) / "summary.json", summary)
