"""A self-contained HTML report of sparse concept codes (``sksplice report``).

:func:`build_report` turns codes held in memory (with their concept names and,
optionally, images, labels and reconstruction cosines) into one static HTML
page; :func:`write_report` writes it to a file, and
:meth:`sksplice.shards.Decomposition.to_html` does the same for a
``decompose-dir`` folder.  The page needs no network and no other file:
styles, scripts and thumbnails (small WebP data URIs, made only for the images
the page shows, each once) are inside it, and a Content-Security-Policy
forbids any request.  Every concept, file and class name is escaped.

Sections: the run (settings, images decomposed and skipped, mean L0, a
histogram of reconstruction cosines); the dataset's top concepts
(:func:`~sksplice.analysis.class_concepts`) with the images where each weighs
most; each class with its top concepts and example images; the concepts that
separate the classes (:func:`~sksplice.analysis.concept_association`,
rank-biserial effect and Benjamini-Hochberg q-values); images with no concept
or a low cosine, and unreadable files; and every image
(:func:`~sksplice.analysis.explain`) in a sortable, searchable table.
"""

from __future__ import annotations

from pathlib import Path

from .. import _defaults
from .._io import atomic_write
from ._content import report_content
from ._page import render_page

__all__ = ["build_report", "write_report"]


def build_report(codes, concept_names, *, images=None, image_root=None, names=None,
                 labels=None, cosine=None, bad_files=(), run=None, title="SpLiCE concept report",
                 top_concepts=_defaults.REPORT_TOP_CONCEPTS,
                 images_per_concept=_defaults.REPORT_IMAGES_PER_CONCEPT,
                 concepts_per_image=_defaults.REPORT_CONCEPTS_PER_IMAGE,
                 thumbnail_size=_defaults.REPORT_THUMBNAIL_SIZE,
                 max_thumbnails=_defaults.REPORT_MAX_THUMBNAILS, low_cosine=None):
    """A self-contained HTML report of concept codes, as a string.

    Parameters
    ----------
    codes : {ndarray, sparse matrix} of shape (n_images, n_concepts)
        Concept weights, e.g. ``SpliceTransformer().decompose(X)[0]``.
    concept_names : sequence of str of length n_concepts, or fitted estimator
        The concept of each column.
    images : sequence of length n_images, default=None
        The image of each row: file paths (relative to ``image_root`` if
        given), PIL images or arrays of shape (height, width[, 3]).  None: a
        report without thumbnails (e.g. of embeddings).
    image_root : str or path, default=None
        Folder relative image paths start from.
    names : sequence of str of length n_images, default=None
        What each row is called (default: the image paths, else
        ``"image <row>"``).
    labels : sequence of length n_images, default=None
        Class of each row (None or ``""``: no class).  With two classes or
        more, the report has a section per class and the concepts that
        separate them.
    cosine : array-like of shape (n_images,), default=None
        Reconstruction cosine of each row
        (:func:`sksplice.analysis.reconstruction_cosine`).
    bad_files : sequence of dict, default=()
        ``{"image": ..., "error": ...}`` for each file that could not be read.
    run : dict, default=None
        Settings shown in the run section (``{"model": ..., "l1": ...}``).
    title : str, default="SpLiCE concept report"
        The page title.
    top_concepts : int, default=20
        Concepts in the dataset's top list (half as many per class and per
        class comparison).
    images_per_concept : int, default=6
        Images shown per concept and per class.
    concepts_per_image : int, default=5
        Concepts listed per image.
    thumbnail_size : int, default=96
        Longest edge of a thumbnail in pixels.
    max_thumbnails : int, default=1000
        Thumbnails embedded at most (each image once; the images the sections
        show come first, then the image table in order): this bounds the
        file's size at any number of images.
    low_cosine : float, default=None
        Images below this reconstruction cosine are listed to check (default:
        the lower Tukey fence, first quartile minus 1.5 interquartile ranges).

    Returns
    -------
    html : str
        The page.

    See Also
    --------
    write_report : The same, written to a file.
    sksplice.shards.Decomposition.to_html : The report of a ``decompose-dir`` folder.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice.report import build_report
    >>> W = np.array([[0.6, 0.0, 0.1], [0.4, 0.0, 0.0], [0.0, 0.5, 0.1]])
    >>> page = build_report(W, ["sea", "snow", "sky"], labels=["beach", "beach", "ski"])
    >>> page.startswith("<!DOCTYPE html>"), "snow" in page
    (True, True)
    """
    content = report_content(
        codes, concept_names, images=images, image_root=image_root, names=names,
        labels=labels, cosine=cosine, bad_files=bad_files, run=run,
        top_concepts=_positive(top_concepts, "top_concepts"),
        images_per_concept=_positive(images_per_concept, "images_per_concept"),
        concepts_per_image=_positive(concepts_per_image, "concepts_per_image"),
        thumbnail_size=_positive(thumbnail_size, "thumbnail_size"),
        max_thumbnails=_positive(max_thumbnails, "max_thumbnails", zero=True),
        low_cosine=low_cosine)
    return render_page(content, title=str(title))


def write_report(path, codes, concept_names, **kwargs):
    """Write :func:`build_report`'s page to ``path`` (atomically).

    Parameters
    ----------
    path : str or path
        The HTML file to write (its folder must exist).
    codes : {ndarray, sparse matrix} of shape (n_images, n_concepts)
        Concept weights.
    concept_names : sequence of str of length n_concepts, or fitted estimator
        The concept of each column.
    **kwargs : dict
        Any other parameter of :func:`build_report`.

    Returns
    -------
    path : pathlib.Path
        The file written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from sksplice.report import write_report
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "report.html"
    >>> write_report(out, np.eye(2), ["cat", "dog"]).stat().st_size > 0
    True
    """
    page = build_report(codes, concept_names, **kwargs)
    path = Path(path)
    atomic_write(path, lambda f: f.write(page.encode("utf-8")))
    return path


def _positive(value, name, zero=False):
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < (
            0 if zero else 1):
        least = "0 or more" if zero else "a positive integer"
        raise ValueError(f"{name} must be {least}; got {value!r}.")
    return int(value)
