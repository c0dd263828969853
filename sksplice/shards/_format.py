"""The on-disk format: shards, the manifest, and the paths a folder may hold.

A decomposition folder ``OUT`` holds::

    OUT/manifest.json        what was decomposed, with which settings, where
    OUT/concepts.json        the concept names, one per code column
    OUT/shards/shard-000000.npz, shard-000001.npz, ...
    OUT/summary.json         per-class concept summary (and summary.csv)
    OUT/plots/<class>.png    top concepts of each class
    OUT/.sksplice.lock       held while a run writes the folder

Every name the package reads or writes in ``OUT`` is one of these; a manifest
entry naming anything else (``../x``, an absolute path) is refused, and so is
any of these names whose real path leaves ``OUT`` (a symbolic link in the
folder pointing elsewhere): :func:`inside`, :func:`check_folder`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .._io import (
    MAX_ARRAY_BYTES,
    MAX_JSON_BYTES,
    atomic_write,
    check_inside,
    open_regular,
    read_json,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Decomposition",
    "check_folder",
    "inside",
    "load_decomposition",
    "read_concepts",
    "read_manifest",
    "read_shard",
    "shard_file",
    "write_json",
    "write_shard",
]

#: Format name and version written into every manifest.
FORMAT = "sksplice-shards"
FORMAT_VERSION = 2

#: Shard files, relative to the output folder.
SHARD_RE = re.compile(r"shards/shard-[0-9]{6,}\.npz")
#: Plot files, relative to the output folder.
PLOT_RE = re.compile(r"plots/[A-Za-z0-9_-][A-Za-z0-9._-]{0,120}\.png")
#: Files at the top of the output folder the package writes.
TOP_FILES = ("manifest.json", "concepts.json", "summary.json", "summary.csv")
LOCK_FILE = ".sksplice.lock"

_SHARD_KEYS = ("images", "labels", "cosine", "bad_images", "bad_errors")


def shard_file(index):
    """The path, relative to the output folder, of shard number ``index``.

    Parameters
    ----------
    index : int
        Shard number (0, 1, ...).

    Returns
    -------
    name : str
        ``"shards/shard-000012.npz"`` for ``index=12``.
    """
    return f"shards/shard-{int(index):06d}.npz"


def inside(out, rel, pattern=None):
    """``out / rel`` after checking that ``rel`` names a file the package keeps in ``out``.

    Parameters
    ----------
    out : str or path
        The output folder.
    rel : str
        A path relative to ``out``, as stored in a manifest.
    pattern : re.Pattern, default=None
        The form ``rel`` must have (default: any plain relative path without
        ``..``).

    Returns
    -------
    path : Path
        The file, inside ``out``.

    Raises
    ------
    ValueError
        If ``rel`` is absolute, climbs out with ``..``, or has another form
        than ``pattern``: a damaged or foreign manifest; or if its real path
        leaves ``out`` (a symbolic link in the folder points elsewhere).
    """
    bad = not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel
    if not bad:
        parts = rel.split("/")
        bad = rel.startswith("/") or ":" in parts[0] or any(p in ("", ".", "..") for p in parts)
    if not bad and pattern is not None:
        bad = pattern.fullmatch(rel) is None
    if bad:
        raise ValueError(
            f"the manifest of {str(out)!r} names {rel!r}, which is not a file of a "
            "decomposition folder (it must be a relative path inside the folder, such as "
            "'shards/shard-000000.npz'); the manifest is damaged or foreign: rerun with "
            "--overwrite (overwrite=True), or use a new output folder."
        )
    return check_inside(out, Path(out) / rel)


def check_folder(out):
    """Refuse an output folder where a name the package uses leaves the folder.

    Checked before a run touches anything: the lock file, the top files, the
    ``shards`` and ``plots`` folders and every entry in them must have their
    real path inside ``out``, so no write, rename or delete can reach a file
    elsewhere through a symbolic link planted in the folder.

    Parameters
    ----------
    out : str or path
        The output folder (it may not exist yet).

    Raises
    ------
    ValueError
        Naming the first link that points outside ``out``.
    """
    out = Path(out)
    if not out.exists():
        return
    for name in (LOCK_FILE, *TOP_FILES, "shards", "plots"):
        check_inside(out, out / name)
    for sub in ("shards", "plots"):
        if (out / sub).is_dir():
            for p in sorted((out / sub).iterdir()):
                check_inside(out, p)


def write_json(path, obj):
    """Write ``obj`` as UTF-8 JSON, atomically.

    Parameters
    ----------
    path : str or path
        Destination file.
    obj : object
        Anything :func:`json.dumps` accepts.
    """
    data = json.dumps(obj, indent=1, ensure_ascii=False).encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


# ------------------------------------------------------------------ shards
def write_shard(path, codes, images, labels=None, cosine=None, bad=(), config_sha256=""):
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
    config_sha256 : str, default=""
        Digest of the settings that made the codes, so a shard is reused only
        by a run with the same settings.

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
        "config_sha256": np.array(str(config_sha256)),
        "sksplice_shard_version": np.array(FORMAT_VERSION),
    }
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def read_shard(path):
    """Read a shard written by :func:`write_shard`, checking that it is whole.

    Parameters
    ----------
    path : str or path
        The shard file.

    Returns
    -------
    shard : dict
        ``codes`` (CSR matrix), ``images`` (list of str), ``labels``
        (int ndarray), ``cosine`` (float ndarray), ``bad`` (list of
        (image, error) pairs), ``config_sha256`` (str, ``""`` for shards of
        format 1).

    Raises
    ------
    ValueError
        If the file is not a readable shard (truncated, corrupt, inconsistent
        or foreign).
    """
    try:
        # the file is opened here: np.load leaks its own handle when a damaged zip fails
        with open_regular(path, "shard", MAX_ARRAY_BYTES) as f, \
                np.load(f, allow_pickle=False) as z:
            missing = [k for k in ("data", "indices", "indptr", "shape", *_SHARD_KEYS)
                       if k not in z.files]
            if missing:
                raise ValueError(f"missing arrays {missing}")
            shape = tuple(int(s) for s in z["shape"])
            codes = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=shape)
            codes.check_format(full_check=True)
            shard = {
                "codes": codes,
                "images": [str(s) for s in z["images"]],
                "labels": np.asarray(z["labels"], dtype=np.int64),
                "cosine": np.asarray(z["cosine"], dtype=np.float64),
                "bad": list(zip((str(s) for s in z["bad_images"]),
                                (str(s) for s in z["bad_errors"]), strict=True)),
                "config_sha256": str(z["config_sha256"]) if "config_sha256" in z.files else "",
            }
    except FileNotFoundError:
        raise
    except Exception as exc:  # zipfile, zlib, numpy and scipy all raise their own
        raise ValueError(f"{path} is not a readable sksplice shard ({exc}).") from exc
    n = codes.shape[0]
    if (len(shard["images"]) != n or shard["labels"].shape != (n,)
            or shard["cosine"].shape != (n,) or codes.data.size and not (
                np.all(np.isfinite(codes.data)) and codes.data.min() >= 0)):
        raise ValueError(f"{path} is not a consistent sksplice shard (row counts or values "
                         "differ from what a shard holds).")
    return shard


# ---------------------------------------------------------------- manifest
def read_manifest(out):
    """The parsed ``manifest.json`` of a decomposition folder, its file names checked.

    Parameters
    ----------
    out : str or path
        The output folder.

    Returns
    -------
    manifest : dict
        The manifest; every file it names lies inside ``out``.

    Raises
    ------
    FileNotFoundError
        If ``out`` holds no manifest.
    ValueError
        If the manifest is not valid JSON, not an sksplice manifest, or names
        files outside the folder (the message says how to recover).
    """
    path = check_inside(out, Path(out) / "manifest.json")
    try:
        manifest = read_json(path, "manifest", MAX_JSON_BYTES)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{str(path)!r} does not exist: {str(out)!r} is not a decomposition folder "
            "(create one with `sksplice decompose-dir DIR --out OUT` or "
            "sksplice.decompose_to_shards)."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{str(path)!r} is damaged (not valid JSON: {exc}); rerun the same command to "
            "rebuild it from the shards made with the same settings, or pass --overwrite "
            "(overwrite=True) to start over."
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{str(path)!r} is not an sksplice manifest (format {found!r}, "
                         f"expected {FORMAT!r}).")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not all(
            isinstance(s, dict) and isinstance(s.get("images"), list) for s in shards):
        raise ValueError(f"{str(path)!r} is damaged (its 'shards' list is malformed); rerun "
                         "with --overwrite (overwrite=True), or use a new output folder.")
    seen = {}
    for s in shards:
        real = os.path.realpath(inside(out, s.get("file"), SHARD_RE))
        if real in seen:
            raise ValueError(
                f"{str(path)!r} is damaged: it lists the shard {s.get('file')!r} twice (or two "
                f"names of one file, {seen[real]!r}); each shard is read once. Rerun the same "
                "command to rebuild the manifest, or pass --overwrite (overwrite=True)."
            )
        seen[real] = s.get("file")
    inside(out, manifest.get("concepts_file", "concepts.json"))
    for p in manifest.get("plots") or []:
        inside(out, p, PLOT_RE)
    return manifest


@dataclass
class Decomposition:
    """A decomposition folder read back by :func:`load_decomposition`.

    Each parameter is kept as the attribute of the same name.

    Parameters
    ----------
    codes : scipy.sparse.csr_matrix of shape (n_images, n_concepts)
        All shards' codes, in manifest order.
    concept_names : ndarray of shape (n_concepts,)
        The concept of each code column.
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
    folder : str or None, default=None
        The decomposition folder it was read from.
    """

    codes: sp.csr_matrix
    concept_names: np.ndarray
    images: list
    labels: np.ndarray
    classes: list
    cosine: np.ndarray
    bad_files: list = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    folder: str | None = None

    def __repr__(self):
        return (f"Decomposition(n_images={self.codes.shape[0]}, "
                f"n_concepts={self.codes.shape[1]}, n_classes={len(self.classes)}, "
                f"n_bad_files={len(self.bad_files)}, folder={self.folder!r})")

    def _repr_html_(self):
        from .._html import (
            NOTEBOOK_ROWS,
            NOTEBOOK_THUMBNAIL,
            Markup,
            concept_list,
            data_uri,
            html_table,
            image_path,
            img_tag,
        )

        n = self.codes.shape[0]
        root = self.manifest.get("root")
        labels = self.class_names_of_rows()
        rows = []
        for i in range(min(n, NOTEBOOK_ROWS)):
            a, b = self.codes.indptr[i], self.codes.indptr[i + 1]
            order = np.argsort(-self.codes.data[a:b], kind="stable")
            idx = self.codes.indices[a:b][order]
            path = image_path(self.images[i], root)
            uri = data_uri(path, NOTEBOOK_THUMBNAIL) if path is not None else None
            rows.append([img_tag(uri, self.images[i]) if uri else Markup(""), self.images[i],
                         labels[i], int(b - a), float(self.cosine[i]),
                         concept_list([str(self.concept_names[j]) for j in idx],
                                      self.codes.data[a:b][order])])
        caption = (f"Decomposition: {n} images, {self.codes.shape[1]} concepts, "
                   f"{len(self.classes)} classes, {len(self.bad_files)} unreadable files")
        return html_table(["image", "file", "class", "L0", "cosine", "top concepts (weight)"],
                          rows, caption=caption, n_total=n,
                          hint="to_html() writes a report of every image")

    def to_html(self, path=None, **kwargs):
        """Write the HTML report of this decomposition (what ``sksplice report`` writes).

        Parameters
        ----------
        path : str or path, default=None
            The HTML file (default: ``report.html`` in :attr:`folder`).
        **kwargs : dict
            Options of :func:`sksplice.report.build_report` (``top_concepts``,
            ``images_per_concept``, ``thumbnail_size``, ``max_thumbnails``,
            ``title``...).

        Returns
        -------
        path : pathlib.Path
            The file written.
        """
        from ..report import write_report

        if path is None:
            if self.folder is None:
                raise ValueError("this decomposition was not read from a folder; pass "
                                 "path='report.html' (where to write the report).")
            path = Path(self.folder) / "report.html"
        config = self.manifest.get("config", {})
        run = {"folder": self.folder, "images folder": self.manifest.get("root"),
               "model": config.get("encoder"), "l1": config.get("l1"),
               "solver": config.get("solver")}
        run.update({k.replace("_sha256", " SHA-256"): str(v)[:16] for k, v in config.items()
                    if k.endswith("_sha256")})
        kwargs.setdefault("title", f"SpLiCE report: {Path(self.folder or '.').name}")
        return write_report(path, self.codes, self.concept_names, images=self.images,
                            image_root=self.manifest.get("root"),
                            labels=self.class_names_of_rows(), cosine=self.cosine,
                            bad_files=self.bad_files,
                            run={k: v for k, v in run.items() if v is not None}, **kwargs)

    def class_names_of_rows(self):
        """The class name of every row.

        Returns
        -------
        names : ndarray of shape (n_images,)
            The class of each row, ``""`` for unlabelled rows.
        """
        names = np.asarray(list(self.classes) + [""], dtype=object)
        return names[self.labels]


def read_concepts(out, manifest):
    """The concept names of a decomposition folder (an object ndarray)."""
    path = inside(out, manifest.get("concepts_file", "concepts.json"))
    try:
        names = read_json(path, "concept list", MAX_JSON_BYTES)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is damaged (not valid JSON: {exc}); rerun the "
                         "decomposition with --overwrite.") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{str(path)!r} is not a list of concept names; rerun the "
                         "decomposition with --overwrite.")
    return np.asarray(names, dtype=object)


def load_decomposition(out):
    """Read a decomposition folder (``decompose-dir`` or :func:`decompose_to_shards`).

    Parameters
    ----------
    out : str or path
        The output folder.

    Returns
    -------
    decomposition : Decomposition
        The codes, images, labels and cosines of every shard, in order.

    Raises
    ------
    ValueError
        If the run is not complete (resume it first), a shard is unreadable,
        or the manifest names files outside ``out``.
    """
    out = Path(out)
    manifest = read_manifest(out)
    if not manifest.get("complete"):
        raise ValueError(
            f"the decomposition in {str(out)!r} is not complete; rerun the same "
            "command (it resumes where it stopped) before loading it."
        )
    names = read_concepts(out, manifest)
    blocks, images, labels, cosine = [], [], [], []
    for entry in manifest["shards"]:
        shard = read_shard(inside(out, entry["file"], SHARD_RE))
        if shard["codes"].shape[1] != len(names):
            raise ValueError(f"shard {entry['file']!r} has {shard['codes'].shape[1]} "
                             f"columns, but {str(out)!r} has {len(names)} concepts.")
        lab = shard["labels"]
        if lab.size and (lab.min() < -1 or lab.max() >= len(manifest.get("classes", []))):
            raise ValueError(f"shard {entry['file']!r} holds class indices outside the "
                             f"manifest's {len(manifest.get('classes', []))} classes; it is "
                             "damaged: delete it and rerun the same command to redo it.")
        expected = entry.get("n_rows")
        if expected is not None and shard["codes"].shape[0] != expected:
            raise ValueError(f"shard {entry['file']!r} holds {shard['codes'].shape[0]} rows, "
                             f"but the manifest of {str(out)!r} counts {expected}; the folder "
                             "is damaged: rerun the same command to redo it.")
        blocks.append(shard["codes"])
        images.extend(shard["images"])
        labels.append(shard["labels"])
        cosine.append(shard["cosine"])
    n_rows = sum(b.shape[0] for b in blocks)
    if manifest.get("n_decomposed") is not None and n_rows != manifest["n_decomposed"]:
        raise ValueError(f"the shards of {str(out)!r} hold {n_rows} rows, but its manifest "
                         f"counts {manifest['n_decomposed']} decomposed images; the folder is "
                         "damaged: rerun the same command to redo it.")
    k = len(names)
    codes = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, k))
    return Decomposition(
        codes=codes, concept_names=names, images=images,
        labels=np.concatenate(labels) if labels else np.zeros(0, np.int64),
        classes=list(manifest.get("classes", [])),
        cosine=np.concatenate(cosine) if cosine else np.zeros(0),
        bad_files=list(manifest.get("bad_files", [])), manifest=manifest, folder=str(out),
    )
