"""Concept distributions per class (or group): mean weight and frequency."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .._utils import suggest
from ._common import (
    as_label_array,
    check_distinct,
    check_k,
    check_labelled_codes,
    equal_mask,
    find_class,
    import_pandas,
    label_key,
    unique_labels,
)

__all__ = ["ClassConcepts", "class_concepts"]


@dataclass
class ClassConcepts:
    """Concept distributions per class (or group).

    Each field is a constructor parameter and an attribute of the same name;
    :func:`class_concepts` builds it.

    Parameters
    ----------
    classes : ndarray of shape (n_classes,)
        The class labels, in the order of the rows below.
    concept_names : ndarray of shape (n_concepts,)
        Names of the columns of ``mean_weight`` and ``frequency``.
    n_samples : ndarray of shape (n_classes,)
        Samples per class.
    mean_weight : ndarray of shape (n_classes, n_concepts)
        Mean weight of each concept over the class's samples (zeros
        included).
    frequency : ndarray of shape (n_classes, n_concepts)
        Fraction of the class's samples in which the concept is nonzero.

    Raises
    ------
    ValueError
        If two classes are equal or print the same (``1`` and ``"1"``, or
        a class named like a group the caller adds, such as ``"(all)"``):
        lookups by name would merge them.
    """

    classes: np.ndarray
    concept_names: np.ndarray
    n_samples: np.ndarray
    mean_weight: np.ndarray
    frequency: np.ndarray

    def __post_init__(self):
        classes = np.empty(len(self.classes), dtype=object)
        classes[:] = list(self.classes)
        check_distinct(classes, "classes")
        if len(unique_labels(classes)) != classes.size:
            raise ValueError(
                f"classes hold a repeated class ({list(map(label_key, classes))[:20]}); each "
                "class must be one row."
            )

    def __repr__(self):
        return (f"ClassConcepts(n_classes={len(self.classes)}, "
                f"n_concepts={len(self.concept_names)})")

    def _repr_html_(self):
        from .._html import NOTEBOOK_CONCEPTS, NOTEBOOK_ROWS, html_table

        rows = []
        for c in list(self.classes)[:NOTEBOOK_ROWS]:
            top = self.top(c, NOTEBOOK_CONCEPTS)
            rows.append([str(label_key(c)), int(self.n_samples[self.index(c)]),
                         ", ".join(f"{t['concept']} {t['mean_weight']:.3g} "
                                   f"({t['frequency']:.0%})" for t in top)])
        return html_table(
            ["class", "samples", "top concepts: mean weight (frequency)"], rows,
            caption=f"ClassConcepts: {len(self.classes)} classes, "
                    f"{len(self.concept_names)} concepts", n_total=len(self.classes))

    def index(self, label):
        """Row of one class in :attr:`mean_weight` and :attr:`frequency`.

        Parameters
        ----------
        label : object
            A class of :attr:`classes` (or its text, e.g. ``"3"`` for ``3``).

        Returns
        -------
        row : int
            Its position in :attr:`classes`.

        Raises
        ------
        ValueError
            If ``label`` is not a class (close matches are suggested).
        """
        return find_class(self.classes, label)

    def top(self, label, k=10, by="mean_weight"):
        """The ``k`` leading concepts of one class.

        Parameters
        ----------
        label : object
            A class of :attr:`classes`.
        k : int, default=10
            Concepts to return at most.
        by : {"mean_weight", "frequency"}, default="mean_weight"
            Ranking key (ties broken by the other, then by name order).

        Returns
        -------
        top : list of dict
            ``{"concept", "mean_weight", "frequency"}`` for the concepts used
            in the class (fewer than ``k`` when fewer are used).
        """
        k = check_k(k, "k")
        if by not in ("mean_weight", "frequency"):
            raise ValueError(f"by={by!r} is not supported; use 'mean_weight' or 'frequency'.")
        i = self.index(label)
        mw, fr = self.mean_weight[i], self.frequency[i]
        key, other = (mw, fr) if by == "mean_weight" else (fr, mw)
        used = np.flatnonzero(fr > 0)
        order = used[np.lexsort((used, -other[used], -key[used]))][:k]
        return [
            {"concept": str(self.concept_names[j]), "mean_weight": float(mw[j]),
             "frequency": float(fr[j])}
            for j in order
        ]

    def concept(self, name):
        """Mean weight and frequency of one concept in every class.

        Parameters
        ----------
        name : str
            A concept name.

        Returns
        -------
        per_class : dict
            ``{class: {"mean_weight": float, "frequency": float}}``.

        Raises
        ------
        ValueError
            If ``name`` is not a concept (close matches are suggested).
        """
        hits = np.flatnonzero(self.concept_names == name)
        if hits.size == 0:
            raise ValueError(
                f"concept {name!r} is not in the vocabulary of {self.concept_names.size} "
                f"concepts.{suggest(name, self.concept_names) or ' Check the spelling.'}"
            )
        j = int(hits[0])
        return {
            label_key(c): {"mean_weight": float(self.mean_weight[i, j]),
                            "frequency": float(self.frequency[i, j])}
            for i, c in enumerate(self.classes)
        }

    def top_k(self, k=10, by="mean_weight"):
        """:meth:`top` for every class.

        Parameters
        ----------
        k : int, default=10
            Concepts per class.
        by : {"mean_weight", "frequency"}, default="mean_weight"
            Ranking key.

        Returns
        -------
        top : dict
            ``{class: [dict, ...]}`` as :meth:`top` gives them.
        """
        return {label_key(c): self.top(c, k, by) for c in self.classes}

    def to_records(self, top_k=None, by="mean_weight"):
        """Long format: one dict per (class, used concept), ranked within class.

        Parameters
        ----------
        top_k : int, default=None
            Keep the ``top_k`` concepts per class (``None``: every concept
            used in the class).
        by : {"mean_weight", "frequency"}, default="mean_weight"
            Ranking key.

        Returns
        -------
        records : list of dict
            ``{"class", "rank", "concept", "mean_weight", "frequency",
            "n_samples"}`` per row.
        """
        rows = []
        for c in self.classes:
            k = top_k if top_k is not None else self.concept_names.size
            for r, t in enumerate(self.top(c, k, by), start=1):
                rows.append({"class": label_key(c), "rank": r, **t,
                             "n_samples": int(self.n_samples[self.index(c)])})
        return rows

    def to_frame(self, top_k=None, by="mean_weight"):
        """A long-format ``pandas.DataFrame`` of :meth:`to_records`.

        Parameters
        ----------
        top_k : int, default=None
            Keep the ``top_k`` concepts per class (``None``: every concept
            used in the class).
        by : {"mean_weight", "frequency"}, default="mean_weight"

        Returns
        -------
        frame : pandas.DataFrame
            Columns ``class, rank, concept, mean_weight, frequency, n_samples``.
        """
        pd = import_pandas()
        cols = ["class", "rank", "concept", "mean_weight", "frequency", "n_samples"]
        return pd.DataFrame(self.to_records(top_k, by), columns=cols)


def class_concepts(codes, concept_names, labels, *, classes=None):
    """Mean weight and frequency of every concept within each class.

    Parameters
    ----------
    codes : {ndarray, sparse matrix} of shape (n_samples, n_concepts)
        Concept weights.
    concept_names : sequence of str of length n_concepts, or fitted estimator
        Column names (an estimator gives its ``get_feature_names_out()``).
    labels : array-like of shape (n_samples,)
        Class (or group, e.g. a protected attribute) of each sample.
    classes : sequence, default=None
        Classes to report, in this order (default: the sorted unique
        labels).  Samples of other classes are ignored.

    Returns
    -------
    distribution : ClassConcepts
        ``mean_weight`` and ``frequency`` of shape (n_classes, n_concepts);
        ``top(label, k)`` / ``top_k(k)`` list the leading concepts.

    Raises
    ------
    ValueError
        If labels and codes differ in length, a requested class has no
        samples, or every code is zero.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice.analysis import class_concepts
    >>> W = np.array([[0.6, 0.0, 0.1], [0.4, 0.0, 0.0], [0.0, 0.5, 0.1]])
    >>> dist = class_concepts(W, ["sea", "snow", "sky"], ["beach", "beach", "ski"])
    >>> for row in dist.top("beach", k=2):
    ...     print(row)
    {'concept': 'sea', 'mean_weight': 0.5, 'frequency': 1.0}
    {'concept': 'sky', 'mean_weight': 0.05, 'frequency': 0.5}
    """
    W, names, y = check_labelled_codes(codes, concept_names, labels)
    present = unique_labels(y)
    if classes is None:
        classes = present
    else:
        classes = as_label_array(classes)
        if classes.size == 0:
            raise ValueError("classes is empty; pass at least one class (or None for all).")
        for c in classes:
            if not np.any(equal_mask(y, c)):
                raise ValueError(
                    f"class {label_key(c)!r} has no samples in labels, so it has no concept "
                    "distribution; drop it from classes= or check the labels "
                    f"(present: {list(map(label_key, present))[:20]})."
                )
    row = np.full(y.shape[0], -1)
    for i, c in enumerate(classes):
        row[equal_mask(y, c)] = i
    member = np.flatnonzero(row >= 0)
    counts = np.bincount(row[member], minlength=len(classes)).astype(np.float64)
    # sparse (n_classes, n_samples) membership: sums per class, divided by the class sizes
    G = sp.csr_matrix((np.ones(member.size), (row[member], member)),
                      shape=(len(classes), y.shape[0]))
    mean_weight = np.asarray((G @ W).todense()) / counts[:, None]
    B = W.copy()
    B.data[:] = 1.0
    frequency = np.asarray((G @ B).todense()) / counts[:, None]
    return ClassConcepts(
        classes=np.asarray(classes), concept_names=names, n_samples=counts.astype(int),
        mean_weight=mean_weight, frequency=frequency,
    )

