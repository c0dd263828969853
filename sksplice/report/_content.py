"""What a report shows: the numbers of every section, from the analysis functions.

Nothing here writes HTML; :mod:`._page` renders what :func:`report_content`
returns.  Thumbnails are made only for the images a section shows, once each,
within a budget of ``max_thumbnails``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .. import _defaults
from .._html import data_uri
from ..analysis import class_concepts, concept_association, explain

#: Labelled images up to which the association test is a permutation test (above: asymptotic).
PERMUTATION_MAX = 2000
#: Permutations of that test (fixed seed: the same report twice is the same file).
N_PERMUTATIONS = 999


@dataclass
class Thumbnails:
    """Data URIs of the images a page shows, made once per image, at most ``budget``."""

    source: object
    size: int
    budget: int
    image_format: str = "webp"
    max_bytes: int = _defaults.REPORT_THUMBNAIL_BYTES
    uris: dict = field(default_factory=dict)  # row -> data URI (None: unreadable)

    def get(self, row):
        """The thumbnail id of ``row`` (its row index), or None when it has none."""
        row = int(row)
        if row not in self.uris:
            if self.source is None or len(self.uris) >= self.budget:
                return None
            self.uris[row] = data_uri(self.source(row), self.size,
                                      image_format=self.image_format, max_bytes=self.max_bytes)
        return row if self.uris[row] is not None else None


def _image_source(images, image_root, n):
    """``row -> path, PIL image or array``, or None when there are no images."""
    if images is None:
        return None
    if len(images) != n:
        raise ValueError(f"images has {len(images)} entries but codes have {n} rows; pass "
                         "one image (path, PIL image or array) per row, in the same order.")

    def source(row):
        im = images[row]
        if isinstance(im, (str, os.PathLike)) and image_root is not None:
            return os.path.join(os.fspath(image_root), os.fspath(im))
        return im

    return source


def _check_codes(codes, concept_names):
    """Codes as CSR float64 and the concept names as a list of str."""
    if hasattr(concept_names, "get_feature_names_out"):
        concept_names = concept_names.get_feature_names_out()
    names = [str(c) for c in concept_names]
    W = sp.csr_matrix(codes, dtype=np.float64)
    if W.ndim != 2 or W.shape[1] != len(names):
        raise ValueError(f"codes of shape {W.shape} do not match {len(names)} concept names; "
                         "pass codes of shape (n_images, n_concepts) and one name per column.")
    if W.shape[0] == 0:
        raise ValueError("codes have no rows: a report needs at least one image.")
    W.eliminate_zeros()
    return W, names


def _names(names, images, n):
    if names is not None:
        names = [str(x) for x in names]
        if len(names) != n:
            raise ValueError(f"names has {len(names)} entries but codes have {n} rows.")
        return names
    if images is not None and len(images) and isinstance(images[0], (str, os.PathLike)):
        return [os.fspath(p) for p in images]
    return [f"image {i}" for i in range(n)]


def _labels(labels, n):
    """Class name per row ("" = no class) and the sorted class names."""
    if labels is None:
        return np.full(n, "", dtype=object), []
    y = np.asarray(["" if v is None else str(v) for v in labels], dtype=object)
    if y.shape[0] != n:
        raise ValueError(f"labels has {y.shape[0]} entries but codes have {n} rows; pass one "
                         "label per row (None or '' for an image without a class).")
    return y, sorted(set(y) - {""})


def _top_rows(W_csc, j, k):
    """Rows where concept ``j`` weighs most, heaviest first."""
    a, b = W_csc.indptr[j], W_csc.indptr[j + 1]
    rows, vals = W_csc.indices[a:b], W_csc.data[a:b]
    order = np.lexsort((rows, -vals))[:k]
    return [(int(rows[i]), float(vals[i])) for i in order]


def _association(W, names, y, classes, k):
    """Per class, the ``k`` concepts whose weights separate it most (BH-adjusted q-values)."""
    lab = np.flatnonzero(y != "")
    Wl = W[lab]
    if len(classes) < 2 or Wl.nnz == 0:
        return None
    n = lab.size
    test = "permutation" if n <= PERMUTATION_MAX else "asymptotic"
    groups = classes if len(classes) > 2 else None
    min_count = 1
    if test == "asymptotic":
        # the normal approximation needs a concept expected in >= 5 images of the
        # smaller side of every comparison; the filter uses group sizes, not weights
        sizes = np.array([np.sum(y[lab] == g) for g in classes])
        smaller = np.minimum(sizes, n - sizes).min()
        min_count = int(np.ceil(5 * n / max(smaller, 1)))
    try:
        assoc = concept_association(Wl, names, y[lab], groups=groups, test=test,
                                    n_permutations=N_PERMUTATIONS, correction="bh",
                                    min_count=min_count, random_state=0)
    except ValueError:  # no concept is frequent enough to be tested
        return None
    rows = []
    for g in assoc.groups:
        rows.extend(assoc.top(k, group=g, direction="both", significant=False))
    return {"rows": rows, "test": assoc.test, "n_tests": assoc.n_tests, "alpha": assoc.alpha,
            "n_permutations": assoc.n_permutations, "groups": [str(g) for g in assoc.groups],
            "n_significant": int(np.sum(assoc.significant)), "min_count": min_count}


def report_content(codes, concept_names, *, images=None, image_root=None, names=None,
                   labels=None, cosine=None, bad_files=(), run=None,
                   top_concepts=_defaults.REPORT_TOP_CONCEPTS,
                   images_per_concept=_defaults.REPORT_IMAGES_PER_CONCEPT,
                   concepts_per_image=_defaults.REPORT_CONCEPTS_PER_IMAGE,
                   thumbnail_size=_defaults.REPORT_THUMBNAIL_SIZE,
                   max_thumbnails=_defaults.REPORT_MAX_THUMBNAILS, low_cosine=None):
    """Every section's numbers as plain data (see :func:`sksplice.report.build_report`)."""
    W, concept_names = _check_codes(codes, concept_names)
    n, k = W.shape
    row_names = _names(names, images, n)
    y, classes = _labels(labels, n)
    cos = None
    if cosine is not None:
        cos = np.asarray(cosine, dtype=np.float64).ravel()
        if cos.shape[0] != n:
            raise ValueError(f"cosine has {cos.shape[0]} entries but codes have {n} rows.")
    thumbs = Thumbnails(_image_source(images, image_root, n), int(thumbnail_size),
                        int(max_thumbnails))
    l0 = np.diff(W.indptr)
    used = W.nnz > 0
    c = {"n": n, "n_concepts": k, "run": dict(run or {}), "classes": classes, "thumbs": thumbs,
         "mean_l0": float(l0.mean()), "cosine": cos, "bad_files": list(bad_files),
         "n_unlabelled": int(np.sum(y == "")), "top": [], "class_cards": [],
         "association": None, "low": [], "empty": [], "low_cosine": None}
    # 1. the dataset's top concepts, each with the images where it weighs most
    if used:
        everything = class_concepts(W, concept_names, np.zeros(n, dtype=int))
        Wc = W.tocsc()
        for t in everything.top(0, top_concepts):
            j = concept_names.index(t["concept"])
            t["images"] = [(r, w, thumbs.get(r)) for r, w in _top_rows(Wc, j, images_per_concept)]
            c["top"].append(t)
    # 2. each class: top concepts and example images
    if classes and used:
        lab = np.flatnonzero(y != "")
        per_class = class_concepts(W[lab], concept_names, y[lab], classes=classes) \
            if W[lab].nnz else None
        for name in classes:
            members = np.flatnonzero(y == name)
            pick = members[np.unique(np.linspace(0, members.size - 1,
                                                 min(images_per_concept, members.size)).round()
                                     .astype(int))]
            c["class_cards"].append({
                "name": name, "n": int(members.size), "mean_l0": float(l0[members].mean()),
                "mean_cosine": None if cos is None else float(np.nanmean(cos[members])),
                "top": per_class.top(name, top_concepts // 2 or 1) if per_class else [],
                "images": [(int(r), thumbs.get(r)) for r in pick],
            })
        c["association"] = _association(W, concept_names, y, classes, max(1, top_concepts // 2))
    # 3. images with no concept, or with a low reconstruction cosine
    empty = np.flatnonzero(l0 == 0)
    c["n_empty"] = int(empty.size)
    c["empty"] = [(int(r), thumbs.get(r)) for r in empty[:images_per_concept * 4]]
    if cos is not None and np.isfinite(cos).any():
        if low_cosine is None:  # the lower Tukey fence of the cosines
            q1, q3 = np.nanpercentile(cos, [25, 75])
            low_cosine = float(q1 - 1.5 * (q3 - q1))
        c["low_cosine"] = float(low_cosine)
        low = np.flatnonzero(cos < low_cosine)
        low = low[np.argsort(cos[low], kind="stable")]
        c["n_low"] = int(low.size)
        c["low"] = [(int(r), thumbs.get(r)) for r in low[:images_per_concept * 4]]
    # 4. per image: top concepts, L0 and cosine (thumbnails while the budget lasts)
    ex = explain(W, concept_names, top_k=concepts_per_image, cosine=cos) if used else None
    rows = []
    for i in range(n):
        e = ex[i] if ex is not None else None
        rows.append([row_names[i], y[i], int(l0[i]),
                     None if cos is None or not np.isfinite(cos[i]) else round(float(cos[i]), 4),
                     [[cc, round(w, 4)] for cc, w in zip(e.concepts, e.weights, strict=True)]
                     if e is not None else [], thumbs.get(i)])
    c["rows"] = rows
    c["row_names"] = row_names
    c["row_labels"] = y
    return c
