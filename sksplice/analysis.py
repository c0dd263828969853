"""Concept analysis: explanations, class concept distributions, associations, sweeps.

Every function takes codes (``scipy.sparse`` or dense, shape
``(n_samples, n_concepts)``) plus the concept names (or a fitted estimator,
whose ``get_feature_names_out()`` gives them) and returns plain data:
dataclasses holding numpy arrays and lists, each with ``to_frame()`` for a
pandas DataFrame when pandas is installed (``pip install "sksplice[pandas]"``).

- :func:`explain`: the top concepts of each sample, with L0 and (given
  :func:`reconstruction_cosine`) how well the codes reconstruct it.
- :func:`class_concepts`: mean weight and frequency of every concept per
  class (or group), and the top concepts of each.
- :func:`concept_association`: concepts whose weights differ between groups
  (a label or a protected attribute), with a rank-biserial effect size, a
  permutation p-value that stays valid for sparse, zero-inflated weights and
  Benjamini-Hochberg control over all the concepts tested.
- :func:`sparsity_sweep`: mean L0, reconstruction cosine and cross-validated
  probe accuracy over a grid of ``l1``.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy import stats

from ._utils import suggest
from .core import normalize_rows

__all__ = [
    "Explanation",
    "Explanations",
    "explain",
    "reconstruction_cosine",
    "ClassConcepts",
    "class_concepts",
    "ConceptAssociation",
    "concept_association",
    "adjust_pvalues",
    "SparsitySweep",
    "sparsity_sweep",
]

_NOTHING = (
    "nothing to explain: every code is zero (no sample uses any concept), so there "
    "are no weights to rank. Decompose with a smaller l1 (e.g. half of it) and check "
    "that the embeddings match the dictionary's model."
)


def _import_pandas():
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(
            'to_frame() needs pandas, which is not installed: pip install "sksplice[pandas]" '
            "(or pip install pandas). The same data is available without pandas as the "
            "object's attributes and to_dict()/to_records()."
        ) from exc
    return pd


# ------------------------------------------------------------------ validation
def _check_codes(codes, concept_names):
    """Codes as float64 CSR (explicit zeros dropped) and the names as an object array."""
    if hasattr(concept_names, "get_feature_names_out"):
        concept_names = concept_names.get_feature_names_out()
    if isinstance(concept_names, str):
        raise ValueError(
            "concept_names must be a sequence of names (one per column of codes), not one "
            "string; pass estimator.get_feature_names_out()."
        )
    names = np.asarray(list(concept_names), dtype=object)
    if sp.issparse(codes):
        W = sp.csr_matrix(codes, dtype=np.float64, copy=True)
    else:
        try:
            W = np.asarray(codes, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                "codes must be a numeric array or sparse matrix of shape (n_samples, "
                "n_concepts), e.g. SpliceTransformer().transform(X)."
            ) from None
        if W.ndim == 1:
            raise ValueError(
                f"codes must be 2-D (n_samples, n_concepts); got shape {W.shape}. For one "
                "sample pass codes.reshape(1, -1)."
            )
        if W.ndim != 2:
            raise ValueError(f"codes must be 2-D (n_samples, n_concepts); got shape {W.shape}.")
        W = sp.csr_matrix(W)
    if W.shape[0] == 0:
        raise ValueError("codes have no rows: pass the codes of at least one sample.")
    if W.shape[1] != names.size:
        raise ValueError(
            f"codes have {W.shape[1]} columns but {names.size} concept names were given; "
            "pass the names of the estimator that produced the codes "
            "(estimator.get_feature_names_out())."
        )
    if not np.all(np.isfinite(W.data)):
        raise ValueError("codes contain NaN or inf; decompose the embeddings again.")
    W.eliminate_zeros()
    W.sort_indices()
    return W, names


def _check_labels(labels, n_samples, name="labels"):
    if labels is None:
        raise ValueError(f"{name} is required: pass one label per sample.")
    y = np.asarray(labels)
    if y.ndim != 1:
        y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per sample); got shape {y.shape}.")
    if y.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {y.shape[0]} entries but codes have {n_samples} rows; pass one "
            "label per sample, in the same order as the codes."
        )
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError(f"{name} contain NaN; drop those samples or give them a label.")
    if y.dtype == object and any(v is None for v in y):
        raise ValueError(f"{name} contain None; drop those samples or give them a label.")
    return y


def _check_k(top_k, name="top_k"):
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"{name} must be a positive integer; got {top_k!r}.")
    return int(top_k)


def _label_key(value):
    return value.item() if isinstance(value, np.generic) else value


def _find_class(classes, label, what="class"):
    hits = [i for i, c in enumerate(classes) if c == label or str(c) == str(label)]
    if not hits:
        raise ValueError(
            f"{what} {label!r} is not one of {list(map(_label_key, classes))}."
            f"{suggest(label, [str(c) for c in classes])}"
        )
    return hits[0]


# ------------------------------------------------------------------ explanations
@dataclass
class Explanation:
    """The top concepts of one sample.

    Attributes
    ----------
    sample : int or str
        Row index (or the given sample id).
    concepts : list of str
        Up to ``top_k`` concepts, by decreasing weight.
    weights : list of float
        Their weights.
    l0 : int
        Number of nonzero concepts in the sample's codes (all of them, not
        only the listed ones).
    total_weight : float
        Sum of all the sample's weights.
    cosine : float or None
        Cosine between the embedding and its reconstruction from the codes,
        when given.
    """

    sample: object
    concepts: list
    weights: list
    l0: int
    total_weight: float
    cosine: float | None = None

    @property
    def is_empty(self):
        """True when the sample uses no concept (nothing to explain)."""
        return self.l0 == 0

    def to_dict(self):
        """The explanation as a plain dict."""
        return {
            "sample": self.sample, "concepts": list(self.concepts),
            "weights": list(self.weights), "l0": self.l0,
            "total_weight": self.total_weight, "cosine": self.cosine,
        }

    def __str__(self):
        cos = "" if self.cosine is None else f", reconstruction cosine {self.cosine:.3f}"
        if self.is_empty:
            return (
                f"sample {self.sample}: nothing to explain (all codes are zero; a smaller "
                f"l1 gives concepts){cos}"
            )
        lines = [f"sample {self.sample}: {self.l0} concepts{cos}"]
        width = max(len(c) for c in self.concepts)
        for c, w in zip(self.concepts, self.weights):
            lines.append(f"  {c:<{width}}  {w:.4f}")
        if self.l0 > len(self.concepts):
            lines.append(f"  ... and {self.l0 - len(self.concepts)} more")
        return "\n".join(lines)


class Explanations(list):
    """A list of :class:`Explanation` with a DataFrame view."""

    def to_records(self):
        """Long format: one dict per (sample, concept).

        A sample without concepts gives one record with ``concept=None``,
        ``weight=0.0`` and ``rank=0``.
        """
        rows = []
        for e in self:
            base = {"sample": e.sample, "l0": e.l0, "cosine": e.cosine}
            if e.is_empty:
                rows.append({**base, "rank": 0, "concept": None, "weight": 0.0})
            for r, (c, w) in enumerate(zip(e.concepts, e.weights), start=1):
                rows.append({**base, "rank": r, "concept": c, "weight": w})
        return rows

    def to_frame(self):
        """A long-format ``pandas.DataFrame`` (see :meth:`to_records`)."""
        pd = _import_pandas()
        cols = ["sample", "rank", "concept", "weight", "l0", "cosine"]
        return pd.DataFrame(self.to_records(), columns=cols)

    to_dataframe = to_frame

    def __str__(self):
        return "\n".join(str(e) for e in self)


def explain(codes, concept_names, *, top_k=10, cosine=None, sample_ids=None):
    """The top concepts of each sample (what SpLiCE prints for one image).

    Parameters
    ----------
    codes : {ndarray, sparse matrix} of shape (n_samples, n_concepts)
        Concept weights, e.g. ``SpliceTransformer().transform(X)``.
    concept_names : sequence of str of length n_concepts, or fitted estimator
        Column names (an estimator gives its ``get_feature_names_out()``).
    top_k : int, default=10
        Concepts listed per sample (the L0 counts all of them).
    cosine : array-like of shape (n_samples,), default=None
        Reconstruction cosines, e.g. from :func:`reconstruction_cosine`.
    sample_ids : sequence of length n_samples, default=None
        Names for the samples (default: row indices).

    Returns
    -------
    explanations : Explanations
        One :class:`Explanation` per sample (``str()`` prints them,
        ``to_frame()`` gives a DataFrame).  A sample with all-zero codes
        gets an empty explanation that says "nothing to explain".

    Raises
    ------
    ValueError
        If names and codes disagree in length, or every code is zero.

    See Also
    --------
    reconstruction_cosine : The ``cosine`` argument.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice.analysis import explain
    >>> W = np.array([[0.0, 0.5, 0.2], [0.0, 0.0, 0.0]])
    >>> ex = explain(W, ["cat", "dog", "car"], top_k=2)
    >>> print(ex[0])
    sample 0: 2 concepts
      dog  0.5000
      car  0.2000
    >>> print(ex[1])
    sample 1: nothing to explain (all codes are zero; a smaller l1 gives concepts)
    """
    W, names = _check_codes(codes, concept_names)
    top_k = _check_k(top_k)
    n = W.shape[0]
    if W.nnz == 0:
        raise ValueError(_NOTHING)
    if cosine is not None:
        cosine = np.asarray(cosine, dtype=np.float64).ravel()
        if cosine.shape[0] != n:
            raise ValueError(
                f"cosine has {cosine.shape[0]} entries but codes have {n} rows; pass "
                "reconstruction_cosine(estimator, X, codes)."
            )
    if sample_ids is not None:
        sample_ids = list(sample_ids)
        if len(sample_ids) != n:
            raise ValueError(
                f"sample_ids has {len(sample_ids)} entries but codes have {n} rows."
            )
    out = Explanations()
    for i in range(n):
        a, b = W.indptr[i], W.indptr[i + 1]
        idx, val = W.indices[a:b], W.data[a:b]
        order = np.lexsort((idx, -val))[:top_k]
        out.append(Explanation(
            sample=i if sample_ids is None else _label_key(sample_ids[i]),
            concepts=[str(names[j]) for j in idx[order]],
            weights=[float(v) for v in val[order]],
            l0=int(b - a),
            total_weight=float(val.sum()),
            cosine=None if cosine is None else float(cosine[i]),
        ))
    return out


def reconstruction_cosine(estimator, X, codes=None):
    """Cosine between each embedding and its reconstruction from its codes.

    The per-sample version of ``SpliceTransformer.score``: the cosine
    between ``normalize(x)`` and ``estimator.inverse_transform(codes)``.

    Parameters
    ----------
    estimator : fitted SpliceTransformer
        The transformer that produced (or will produce) the codes.
    X : array-like of shape (n_samples, n_features), or images or texts
        The inputs.
    codes : {ndarray, sparse matrix} of shape (n_samples, n_concepts), default=None
        Their codes; computed with ``estimator`` when None.

    Returns
    -------
    cosine : ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice import ConceptDictionary, SpliceTransformer
    >>> from sksplice.analysis import reconstruction_cosine
    >>> cd = ConceptDictionary(["a", "b", "c"], np.eye(3), center=False)
    >>> st = SpliceTransformer(l1=0.1, dictionary=cd, image_mean=None, device="cpu")
    >>> X = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    >>> np.round(reconstruction_cosine(st.fit(X), X), 3)
    array([1., 1.])
    """
    from sklearn.utils.validation import check_is_fitted

    from .editing import _embed_inputs, _embeddings_and_codes

    check_is_fitted(estimator)
    if codes is None:
        X_emb, codes = _embeddings_and_codes(estimator, X)
    else:
        X_emb = _embed_inputs(estimator, X)
    if codes.shape[0] != X_emb.shape[0]:
        raise ValueError(
            f"codes have {codes.shape[0]} rows but X has {X_emb.shape[0]} samples; pass "
            "the codes of X."
        )
    X_hat = np.asarray(estimator.inverse_transform(codes), dtype=np.float64)
    Xn = normalize_rows(np.asarray(X_emb, dtype=np.float64))
    return np.sum(Xn * X_hat, axis=1)


# ------------------------------------------------------------------ class distributions
@dataclass
class ClassConcepts:
    """Concept distributions per class (or group).

    Attributes
    ----------
    classes : ndarray of shape (n_classes,)
        The class labels, in the order of the rows below.
    concept_names : ndarray of shape (n_concepts,)
    n_samples : ndarray of shape (n_classes,)
        Samples per class.
    mean_weight : ndarray of shape (n_classes, n_concepts)
        Mean weight of each concept over the class's samples (zeros
        included).
    frequency : ndarray of shape (n_classes, n_concepts)
        Fraction of the class's samples in which the concept is nonzero.
    """

    classes: np.ndarray
    concept_names: np.ndarray
    n_samples: np.ndarray
    mean_weight: np.ndarray
    frequency: np.ndarray

    def _row(self, label):
        return _find_class(self.classes, label)

    def top(self, label, k=10, by="mean_weight"):
        """The ``k`` leading concepts of one class.

        Parameters
        ----------
        label : object
            A class of :attr:`classes`.
        k : int, default=10
        by : {"mean_weight", "frequency"}, default="mean_weight"
            Ranking key (ties broken by the other, then by name order).

        Returns
        -------
        top : list of dict
            ``{"concept", "mean_weight", "frequency"}`` for the concepts used
            in the class (fewer than ``k`` when fewer are used).
        """
        k = _check_k(k, "k")
        if by not in ("mean_weight", "frequency"):
            raise ValueError(f"by={by!r} is not supported; use 'mean_weight' or 'frequency'.")
        i = self._row(label)
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
            _label_key(c): {"mean_weight": float(self.mean_weight[i, j]),
                            "frequency": float(self.frequency[i, j])}
            for i, c in enumerate(self.classes)
        }

    def top_k(self, k=10, by="mean_weight"):
        """:meth:`top` for every class: ``{class: [dict, ...]}``."""
        return {_label_key(c): self.top(c, k, by) for c in self.classes}

    def to_records(self, top_k=None, by="mean_weight"):
        """Long format: one dict per (class, used concept), ranked within class."""
        rows = []
        for c in self.classes:
            k = top_k if top_k is not None else self.concept_names.size
            for r, t in enumerate(self.top(c, k, by), start=1):
                rows.append({"class": _label_key(c), "rank": r, **t,
                             "n_samples": int(self.n_samples[self._row(c)])})
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
        pd = _import_pandas()
        cols = ["class", "rank", "concept", "mean_weight", "frequency", "n_samples"]
        return pd.DataFrame(self.to_records(top_k, by), columns=cols)

    to_dataframe = to_frame


def class_concepts(codes, concept_names, labels, *, classes=None):
    """Mean weight and frequency of every concept within each class.

    Parameters
    ----------
    codes : {ndarray, sparse matrix} of shape (n_samples, n_concepts)
        Concept weights.
    concept_names : sequence of str of length n_concepts, or fitted estimator
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
    W, names = _check_codes(codes, concept_names)
    y = _check_labels(labels, W.shape[0])
    if W.nnz == 0:
        raise ValueError(_NOTHING)
    present = np.unique(y)
    if classes is None:
        classes = present
    else:
        classes = np.asarray(list(classes))
        if classes.size == 0:
            raise ValueError("classes is empty; pass at least one class (or None for all).")
        for c in classes:
            if not np.any(y == c):
                raise ValueError(
                    f"class {_label_key(c)!r} has no samples in labels, so it has no concept "
                    "distribution; drop it from classes= or check the labels "
                    f"(present: {list(map(_label_key, present))[:20]})."
                )
    # sparse (n_classes, n_samples) averaging matrix: 1 / n_c where sample i is in class c
    row = np.full(y.shape[0], -1)
    for i, c in enumerate(classes):
        row[y == c] = i
    member = np.flatnonzero(row >= 0)
    counts = np.bincount(row[member], minlength=len(classes)).astype(np.float64)
    Gs = sp.csr_matrix((1.0 / counts[row[member]], (row[member], member)),
                       shape=(len(classes), y.shape[0]))
    mean_weight = np.asarray((Gs @ W).todense())
    B = W.copy()
    B.data[:] = 1.0
    frequency = np.asarray((Gs @ B).todense())
    return ClassConcepts(
        classes=np.asarray(classes), concept_names=names, n_samples=counts.astype(int),
        mean_weight=mean_weight, frequency=frequency,
    )


# ------------------------------------------------------------------ association
@dataclass
class ConceptAssociation:
    """Concepts ranked by how differently they are used in a group and the rest.

    One row per (group, tested concept), sorted by group, then p-value,
    then decreasing ``|effect|``.

    Attributes
    ----------
    group : ndarray of shape (n_rows,)
        The group tested against all other samples.
    concept : ndarray of shape (n_rows,), dtype=object
    effect : ndarray of shape (n_rows,)
        Rank-biserial correlation ``2 U / (n_in n_out) - 1`` in [-1, 1]:
        ``P(w_in > w_out) - P(w_in < w_out)`` for a random pair; positive
        means the concept weighs more in the group.
    mean_in, mean_out : ndarray of shape (n_rows,)
        Mean weight inside and outside the group.
    freq_in, freq_out : ndarray of shape (n_rows,)
        Fraction of samples using the concept, inside and outside.
    n_in, n_out : ndarray of shape (n_rows,)
        Group sizes.
    statistic : ndarray of shape (n_rows,)
        Mann-Whitney ``U`` of the group.
    pvalue : ndarray of shape (n_rows,)
        Raw p-value of each test.
    qvalue : ndarray of shape (n_rows,)
        p-value adjusted for all ``n_tests`` tests (see ``correction``).
    significant : ndarray of shape (n_rows,), dtype=bool
        ``qvalue <= alpha``.
    alpha : float
    test : str
    correction : str or None
    n_permutations : int or None
    n_tests : int
        Tests in the family the correction covers (every row).
    """

    group: np.ndarray
    concept: np.ndarray
    effect: np.ndarray
    mean_in: np.ndarray
    mean_out: np.ndarray
    freq_in: np.ndarray
    freq_out: np.ndarray
    n_in: np.ndarray
    n_out: np.ndarray
    statistic: np.ndarray
    pvalue: np.ndarray
    qvalue: np.ndarray
    significant: np.ndarray
    alpha: float = 0.05
    test: str = "permutation"
    correction: str | None = "bh"
    n_permutations: int | None = None
    n_tests: int = 0
    groups: list = field(default_factory=list)

    _COLUMNS = ("group", "concept", "effect", "mean_in", "mean_out", "freq_in", "freq_out",
                "n_in", "n_out", "statistic", "pvalue", "qvalue", "significant")

    def __len__(self):
        return int(self.concept.size)

    def _select(self, group, direction, significant):
        if direction not in ("higher", "lower", "both"):
            raise ValueError(
                f"direction={direction!r} is not supported; use 'higher' (more weight in "
                "the group), 'lower' or 'both'."
            )
        mask = np.ones(len(self), dtype=bool)
        if group is not None:
            g = self.groups[_find_class(np.asarray(self.groups, dtype=object), group, "group")]
            mask &= np.array([x == g for x in self.group], dtype=bool)
        elif len(self.groups) > 1:
            raise ValueError(
                f"these results cover {len(self.groups)} groups "
                f"{list(map(_label_key, self.groups))[:10]}; pass group=... to pick one."
            )
        if direction == "higher":
            mask &= self.effect > 0
        elif direction == "lower":
            mask &= self.effect < 0
        if significant:
            mask &= self.significant
        return np.flatnonzero(mask)

    def top(self, k=10, *, group=None, direction="higher", significant=True):
        """The ``k`` concepts with the largest effect size.

        Parameters
        ----------
        k : int, default=10
        group : object, default=None
            Which group (required when several were tested).
        direction : {"higher", "lower", "both"}, default="higher"
            Concepts weighing more in the group, less, or either
            (``|effect|``).
        significant : bool, default=True
            Only concepts with ``qvalue <= alpha``.

        Returns
        -------
        rows : list of dict
            One dict per concept with every column of :meth:`to_records`.
        """
        k = _check_k(k, "k")
        idx = self._select(group, direction, significant)
        order = idx[np.lexsort((self.pvalue[idx], -np.abs(self.effect[idx])))][:k]
        return [self._record(i) for i in order]

    def significant_concepts(self, *, group=None, direction="higher"):
        """Names of the significant concepts, by decreasing ``|effect|``."""
        idx = self._select(group, direction, True)
        order = idx[np.lexsort((self.pvalue[idx], -np.abs(self.effect[idx])))]
        return [str(self.concept[i]) for i in order]

    def _record(self, i):
        rec = {}
        for col in self._COLUMNS:
            v = getattr(self, col)[i]
            rec[col] = _label_key(v)
        rec["concept"] = str(rec["concept"])
        return rec

    def to_records(self):
        """Every row as a dict (columns as in :meth:`to_frame`)."""
        return [self._record(i) for i in range(len(self))]

    def to_frame(self):
        """A ``pandas.DataFrame`` with one row per (group, concept)."""
        pd = _import_pandas()
        return pd.DataFrame({col: getattr(self, col) for col in self._COLUMNS})

    to_dataframe = to_frame


def concept_association(codes, concept_names, labels, *, groups=None, test="permutation",
                        alternative="two-sided", n_permutations=9999, correction="bh",
                        alpha=0.05, min_count=1, random_state=None):
    """Rank concepts by how strongly their weights differ between groups.

    For spurious-correlation discovery: given a label or a protected
    attribute, each group is compared with all other samples (one-vs-rest;
    a binary attribute gives one comparison), concept by concept, with the
    Mann-Whitney rank statistic.

    Parameters
    ----------
    codes : {ndarray, sparse matrix} of shape (n_samples, n_concepts)
        Concept weights.
    concept_names : sequence of str of length n_concepts, or fitted estimator
    labels : array-like of shape (n_samples,)
        Group of each sample (class label or protected attribute).
    groups : label or list of labels, default=None
        Groups to test against the rest.  Default: for two distinct labels,
        the second of the sorted labels (so one comparison); for more, every
        label (one-vs-rest).
    test : {"permutation", "asymptotic"}, default="permutation"
        ``"permutation"``: Monte Carlo permutation test of the rank-sum
        statistic with ``p = (1 + #{|T*| >= |T|}) / (n_permutations + 1)``.
        It conditions on the observed weights, so it is valid (never
        anti-conservative) at any sample size and any amount of zero
        inflation and ties, e.g. for a concept used by a single image.
        ``"asymptotic"``: the tie-corrected normal approximation of the
        Mann-Whitney test; fast for large data, but anti-conservative when a
        concept is rarely used in the smaller group (a concept used once,
        inside a group of 5 out of 800 samples, gets p ~ 1e-30 instead of the
        exact 0.006), so a warning names how many tested concepts are in that
        regime.
    alternative : {"two-sided", "greater", "less"}, default="two-sided"
        ``"greater"``: weights are larger inside the group.
    n_permutations : int, default=9999
        Permutations for ``test="permutation"``.  The smallest p-value is
        ``1 / (n_permutations + 1)``, so to survive a correction over ``m``
        tests at level ``alpha`` a concept needs ``n_permutations`` of at
        least about ``m / alpha``.
    correction : {"bh", "by", "bonferroni"} or None, default="bh"
        Multiple-testing adjustment over every test of the call (all groups
        and concepts): Benjamini-Hochberg (false discovery rate), its
        Benjamini-Yekutieli variant (valid under any dependence), or
        Bonferroni (family-wise error).
    alpha : float, default=0.05
        Level for ``significant``.
    min_count : int, default=1
        Concepts nonzero in fewer samples (all groups pooled) are not tested
        and not listed.  This filter ignores the labels, so it keeps the
        p-values valid while shrinking the family of tests.
    random_state : int, numpy Generator or None, default=None
        Seed of the permutations.

    Returns
    -------
    association : ConceptAssociation
        One row per (group, tested concept) with effect size, means,
        frequencies, p- and q-values; ``top(k)`` and
        ``significant_concepts()`` give the leading concepts.

    Raises
    ------
    ValueError
        If labels and codes differ in length, there are fewer than two
        distinct labels, a requested group has no samples, or every code is
        zero.

    Notes
    -----
    Concepts are compared on their whole weight distribution, zeros
    included: ranks give every zero the same mid-rank, so a concept that is
    used more often *or* with larger weights in the group both count.  The
    effect size is the rank-biserial correlation (``statistic`` is ``U``).

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice.analysis import concept_association
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(["indoor", "outdoor"], 40)
    >>> W = rng.exponential(size=(80, 3)) * (rng.random((80, 3)) < 0.2)
    >>> W[40:, 1] += 0.5 * (rng.random(40) < 0.8)   # "sky" is planted in outdoor
    >>> res = concept_association(W, ["chair", "sky", "lamp"], y, random_state=0,
    ...                           n_permutations=999)
    >>> [(r["concept"], r["group"], r["significant"]) for r in res.top(3)]
    [('sky', 'outdoor', True)]
    """
    W, names = _check_codes(codes, concept_names)
    y = _check_labels(labels, W.shape[0])
    if W.nnz == 0:
        raise ValueError(_NOTHING)
    if test not in ("permutation", "asymptotic"):
        raise ValueError(f"test={test!r} is not supported; use 'permutation' or 'asymptotic'.")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(
            f"alternative={alternative!r} is not supported; use 'two-sided', 'greater' or "
            "'less'."
        )
    if correction not in ("bh", "by", "bonferroni", None, "none"):
        raise ValueError(
            f"correction={correction!r} is not supported; use 'bh', 'by', 'bonferroni' or "
            "None."
        )
    correction = None if correction == "none" else correction
    if not (isinstance(alpha, numbers.Real) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}.")
    min_count = _check_k(min_count, "min_count")
    if test == "permutation":
        n_permutations = _check_k(n_permutations, "n_permutations")
    present = np.unique(y)
    if present.size < 2:
        raise ValueError(
            f"labels hold a single value {_label_key(present[0])!r}; an association needs "
            "at least two groups to compare."
        )
    if groups is None:
        groups = [present[1]] if present.size == 2 else list(present)
    elif isinstance(groups, (str, np.str_, numbers.Number)) or np.ndim(groups) == 0:
        groups = [groups]
    groups = list(groups)
    n = W.shape[0]
    masks = []
    for g in groups:
        m = y == g
        if not np.any(m):
            raise ValueError(
                f"group {_label_key(g)!r} has no samples in labels; choose groups among "
                f"{list(map(_label_key, present))[:20]}.{suggest(g, [str(p) for p in present])}"
            )
        masks.append(m)

    Wc = W.tocsc()
    counts = np.diff(Wc.indptr)
    tested = np.flatnonzero(counts >= min_count)
    if tested.size == 0:
        raise ValueError(
            f"no concept is nonzero in at least min_count={min_count} samples; lower "
            "min_count or l1."
        )
    Wt = Wc[:, tested]
    R, r0, tie_term = _centered_ranks(Wt, n)
    Rt = R.T.tocsr()  # (n_tested, n)
    total = np.asarray(R.sum(axis=0)).ravel()
    B = Wt.copy()
    B.data[:] = 1.0
    rng = np.random.default_rng(random_state)

    parts = []
    n_small = 0
    for g, m in zip(groups, masks):
        n1 = int(m.sum())
        n2 = n - n1
        if n2 == 0:
            raise ValueError(
                f"every sample is in group {_label_key(g)!r}; there is nothing to compare "
                "it with."
            )
        mf = m.astype(np.float64)
        s_obs = Rt @ mf
        dev_obs = s_obs - n1 / n * total
        rank_sum = n1 * r0 + s_obs
        U = rank_sum - n1 * (n1 + 1) / 2.0
        effect = 2.0 * U / (n1 * n2) - 1.0
        if test == "permutation":
            p = _permutation_pvalues(Rt, m, total, dev_obs, n_permutations, alternative, rng)
        else:
            p = _asymptotic_pvalues(dev_obs, tie_term, n, n1, alternative)
            expected = counts[tested] * min(n1, n2) / n
            n_small += int(np.sum(expected < 5))
        mean_in = np.asarray(Wt[m].mean(axis=0)).ravel()
        mean_out = np.asarray(Wt[~m].mean(axis=0)).ravel()
        freq_in = np.asarray(B[m].sum(axis=0)).ravel() / n1
        freq_out = np.asarray(B[~m].sum(axis=0)).ravel() / n2
        parts.append(dict(
            group=np.array([g] * tested.size, dtype=object), concept=names[tested],
            effect=effect, mean_in=mean_in, mean_out=mean_out, freq_in=freq_in,
            freq_out=freq_out, n_in=np.full(tested.size, n1), n_out=np.full(tested.size, n2),
            statistic=U, pvalue=p,
        ))
    if n_small:
        warnings.warn(
            f"{n_small} tested concept(s) are expected to be nonzero in fewer than 5 samples "
            "of the smaller group; asymptotic p-values are anti-conservative there (rare "
            "concepts look significant). Use test='permutation' or raise min_count.",
            UserWarning, stacklevel=2,
        )
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    cols["group"] = np.asarray(cols["group"], dtype=object)
    cols["concept"] = np.asarray(cols["concept"], dtype=object)
    q = adjust_pvalues(cols["pvalue"], correction)
    cols["qvalue"] = q
    cols["significant"] = q <= alpha
    group_rank = np.concatenate([np.full(tested.size, i) for i in range(len(groups))])
    order = np.lexsort((np.arange(group_rank.size), -np.abs(cols["effect"]), cols["pvalue"],
                        group_rank))
    cols = {k: v[order] for k, v in cols.items()}
    return ConceptAssociation(
        **cols, alpha=float(alpha), test=test, correction=correction,
        n_permutations=n_permutations if test == "permutation" else None,
        n_tests=int(group_rank.size), groups=groups,
    )


def _centered_ranks(Wc, n):
    """Ranks of each column among all ``n`` samples, minus the zeros' mid-rank.

    Returns a CSC matrix with the structure of ``Wc`` (zeros stay implicit,
    nonzeros hold ``rank - r0``), the zeros' mid-rank ``r0`` per column and the
    tie term ``sum(t^3 - t)`` per column (for the asymptotic variance).
    """
    k = Wc.shape[1]
    data = np.empty_like(Wc.data)
    r0 = np.zeros(k)
    tie_term = np.zeros(k)
    for j in range(k):
        a, b = Wc.indptr[j], Wc.indptr[j + 1]
        v = Wc.data[a:b]
        m = v.size
        n0 = n - m
        rv = stats.rankdata(v)
        n_neg = int(np.sum(v < 0))
        ranks = np.where(v > 0, rv + n0, rv)
        r0[j] = n_neg + (n0 + 1) / 2.0 if n0 else 0.0
        data[a:b] = ranks - r0[j]
        _, t = np.unique(v, return_counts=True)
        tie_term[j] = float(np.sum(t.astype(np.float64) ** 3 - t)) + float(n0) ** 3 - n0
    R = sp.csc_matrix((data, Wc.indices.copy(), Wc.indptr.copy()), shape=Wc.shape)
    return R, r0, tie_term


def _permutation_pvalues(Rt, mask, total, dev_obs, n_permutations, alternative, rng,
                         block=512):
    n = mask.size
    n1 = int(mask.sum())
    scale = np.maximum(1.0, np.abs(dev_obs)) * 1e-9
    exceed = np.zeros(dev_obs.size)
    mf = mask.astype(np.float64)
    # bound the (block, n) label matrix and the (n_concepts, block) statistics to ~16M cells
    block = max(1, min(block, 2**24 // max(n, dev_obs.size, 1)))
    done = 0
    while done < n_permutations:
        b = min(block, n_permutations - done)
        P = rng.permuted(np.tile(mf, (b, 1)), axis=1)  # (b, n), n1 ones per row
        dev = np.asarray(Rt @ P.T) - (n1 / n * total)[:, None]  # (k, b)
        if alternative == "two-sided":
            hit = np.abs(dev) >= (np.abs(dev_obs) - scale)[:, None]
        elif alternative == "greater":
            hit = dev >= (dev_obs - scale)[:, None]
        else:
            hit = dev <= (dev_obs + scale)[:, None]
        exceed += hit.sum(axis=1)
        done += b
    return (1.0 + exceed) / (n_permutations + 1.0)


def _asymptotic_pvalues(dev_obs, tie_term, n, n1, alternative):
    n2 = n - n1
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    sd = np.sqrt(np.maximum(var, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        if alternative == "two-sided":
            z = (np.abs(dev_obs) - 0.5) / sd
            p = 2.0 * stats.norm.sf(z)
        elif alternative == "greater":
            p = stats.norm.sf((dev_obs - 0.5) / sd)
        else:
            p = stats.norm.cdf((dev_obs + 0.5) / sd)
    p = np.where(sd > 0, p, 1.0)
    return np.clip(np.nan_to_num(p, nan=1.0), 0.0, 1.0)


def adjust_pvalues(pvalues, method="bh"):
    """Multiple-testing adjusted p-values (q-values).

    Parameters
    ----------
    pvalues : array-like of shape (n_tests,)
    method : {"bh", "by", "bonferroni"} or None, default="bh"
        Benjamini-Hochberg, Benjamini-Yekutieli or Bonferroni; None returns
        the p-values unchanged.

    Returns
    -------
    qvalues : ndarray of shape (n_tests,)
        Reject the tests with ``qvalue <= alpha``.

    Examples
    --------
    >>> from sksplice.analysis import adjust_pvalues
    >>> adjust_pvalues([0.01, 0.04, 0.03, 0.5])
    array([0.04      , 0.05333333, 0.05333333, 0.5       ])
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    m = p.size
    if method is None or m == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    if method not in ("bh", "by"):
        raise ValueError(f"method={method!r} is not supported; use 'bh', 'by' or 'bonferroni'.")
    order = np.argsort(p, kind="stable")
    factor = m / np.arange(1, m + 1)
    if method == "by":
        factor = factor * np.sum(1.0 / np.arange(1, m + 1))
    q_sorted = np.minimum.accumulate((p[order] * factor)[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


# ------------------------------------------------------------------ sparsity sweep
@dataclass
class SparsitySweep:
    """Sparsity, fidelity and probe accuracy over a grid of ``l1``.

    Attributes
    ----------
    l1 : ndarray of shape (n_l1,)
    mean_l0 : ndarray of shape (n_l1,)
        Mean number of concepts per sample.
    cosine : ndarray of shape (n_l1,)
        Mean reconstruction cosine (``SpliceTransformer.score``).
    zero_fraction : ndarray of shape (n_l1,)
        Fraction of samples with no concept at all.
    accuracy : ndarray of shape (n_l1,) or None
        Mean cross-validated probe score on the codes (given labels).
    accuracy_std : ndarray of shape (n_l1,) or None
        Its standard deviation over folds.
    dense_accuracy : float or None
        The same probe on the dense embeddings (``dense_baseline=True``).
    scoring : str or None
        The probe's score.
    """

    l1: np.ndarray
    mean_l0: np.ndarray
    cosine: np.ndarray
    zero_fraction: np.ndarray
    accuracy: np.ndarray | None = None
    accuracy_std: np.ndarray | None = None
    dense_accuracy: float | None = None
    dense_accuracy_std: float | None = None
    scoring: str | None = None

    def to_records(self):
        """One dict per ``l1``."""
        rows = []
        for i, l1 in enumerate(self.l1):
            row = {"l1": float(l1), "mean_l0": float(self.mean_l0[i]),
                   "cosine": float(self.cosine[i]),
                   "zero_fraction": float(self.zero_fraction[i])}
            if self.accuracy is not None:
                row["accuracy"] = float(self.accuracy[i])
                row["accuracy_std"] = float(self.accuracy_std[i])
            rows.append(row)
        return rows

    def to_frame(self):
        """A ``pandas.DataFrame`` with one row per ``l1``."""
        pd = _import_pandas()
        return pd.DataFrame(self.to_records())

    to_dataframe = to_frame


def sparsity_sweep(estimator, X, l1_grid, *, y=None, probe=None, cv=5, scoring="accuracy",
                   dense_baseline=False, param="l1"):
    """Mean L0, reconstruction cosine and probe accuracy for each ``l1``.

    The trade-off the SpLiCE paper plots: a larger ``l1`` gives fewer
    concepts, a worse reconstruction and (usually) a less accurate probe.

    Parameters
    ----------
    estimator : SpliceTransformer
        Cloned and refitted with ``param`` set to each value.
    X : array-like of shape (n_samples, n_features), or images or texts
        Inputs (pass embeddings to avoid encoding images once per ``l1``).
    l1_grid : sequence of float
        Values of ``l1``.
    y : array-like of shape (n_samples,), default=None
        Labels; when given, a probe is cross-validated on the codes.
    probe : classifier, default=None
        Probe estimator (default ``LogisticRegression(max_iter=1000)``).
    cv : int or cross-validation splitter, default=5
    scoring : str or callable, default="accuracy"
    dense_baseline : bool, default=False
        Also cross-validate the probe on the (normalised) embeddings.
    param : str, default="l1"
        Name of the sparsity parameter of ``estimator`` (e.g. ``"n_nonzero"``
        to sweep a target number of concepts instead; the grid values are
        passed as given).

    Returns
    -------
    sweep : SparsitySweep

    Notes
    -----
    The codes for each ``l1`` are computed once on all of ``X`` and the probe
    is cross-validated on them.  A SpliceTransformer decomposes each sample
    on its own and fits nothing on the labels, so this equals (and is
    ``cv`` times cheaper than) cross-validating
    ``make_pipeline(SpliceTransformer(l1=...), probe)``; with
    ``image_mean="fit"`` the centring mean sees all of ``X`` (no labels).

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice import ConceptDictionary, SpliceTransformer
    >>> from sksplice.analysis import sparsity_sweep
    >>> rng = np.random.default_rng(0)
    >>> cd = ConceptDictionary([f"c{i}" for i in range(20)], rng.normal(size=(20, 8)))
    >>> X = rng.normal(size=(30, 8))
    >>> st = SpliceTransformer(dictionary=cd, image_mean=None, device="cpu")
    >>> sweep = sparsity_sweep(st, X, [0.05, 0.5, 5.0])
    >>> bool(sweep.mean_l0[0] > sweep.mean_l0[1] > sweep.mean_l0[2])
    True
    """
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    from .editing import _embed_inputs, _encode_embeddings

    values = list(np.asarray(list(l1_grid)).ravel())
    grid = np.asarray(values, dtype=np.float64)
    if grid.size == 0:
        raise ValueError("l1_grid is empty; pass values such as [0.05, 0.1, 0.25, 0.5].")
    if np.any(~np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError(f"l1_grid must hold nonnegative numbers; got {grid.tolist()}.")
    if param not in estimator.get_params():
        raise ValueError(
            f"{type(estimator).__name__} has no parameter {param!r}; pass param= one of "
            f"{sorted(estimator.get_params())[:10]}."
        )
    if probe is None:
        from sklearn.linear_model import LogisticRegression

        probe = LogisticRegression(max_iter=1000)
    mean_l0, cosine, zero_frac, acc, acc_std = [], [], [], [], []
    X_emb = None
    for value in values:
        value = value.item() if isinstance(value, np.generic) else value
        est = clone(estimator).set_params(**{param: value}).fit(X)
        if X_emb is None:
            X_emb = _embed_inputs(est, X)
            if y is not None:
                y = _check_labels(y, X_emb.shape[0], "y")
        codes = sp.csr_matrix(_encode_embeddings(est, X_emb))
        codes.eliminate_zeros()
        l0 = np.diff(codes.indptr)
        mean_l0.append(float(l0.mean()))
        zero_frac.append(float(np.mean(l0 == 0)))
        cosine.append(float(np.mean(reconstruction_cosine(est, X_emb, codes))))
        if y is not None:
            scores = cross_val_score(clone(probe), codes, y, cv=cv, scoring=scoring)
            acc.append(float(scores.mean()))
            acc_std.append(float(scores.std()))
    dense = dense_std = None
    if dense_baseline:
        if y is None:
            raise ValueError("dense_baseline=True needs labels y.")
        scores = cross_val_score(clone(probe), normalize_rows(X_emb), y, cv=cv, scoring=scoring)
        dense, dense_std = float(scores.mean()), float(scores.std())
    return SparsitySweep(
        l1=grid, mean_l0=np.asarray(mean_l0), cosine=np.asarray(cosine),
        zero_fraction=np.asarray(zero_frac),
        accuracy=np.asarray(acc) if y is not None else None,
        accuracy_std=np.asarray(acc_std) if y is not None else None,
        dense_accuracy=dense, dense_accuracy_std=dense_std,
        scoring=(scoring if isinstance(scoring, str) else getattr(scoring, "__name__", "score"))
        if y is not None else None,
    )
