"""The top concepts of each sample, and how well its codes reconstruct it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import core
from ._common import (
    NOTHING,
    check_codes,
    check_k,
    embed_and_decompose,
    import_pandas,
    label_key,
)

__all__ = ["Explanation", "Explanations", "explain", "reconstruction_cosine"]


@dataclass
class Explanation:
    """The top concepts of one sample.

    Each field is a constructor parameter and an attribute of the same name;
    :func:`explain` builds it.

    Parameters
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
        """The explanation as a plain dict.

        Returns
        -------
        explanation : dict
            ``{"sample", "concepts", "weights", "l0", "total_weight", "cosine"}``.
        """
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
        for c, w in zip(self.concepts, self.weights, strict=False):
            lines.append(f"  {c:<{width}}  {w:.4f}")
        if self.l0 > len(self.concepts):
            lines.append(f"  ... and {self.l0 - len(self.concepts)} more")
        return "\n".join(lines)


class Explanations(list):
    """A list of :class:`Explanation` with a DataFrame view.

    Parameters
    ----------
    iterable : iterable of Explanation, optional
        The explanations, one per sample.
    """

    def to_records(self):
        """Long format: one dict per (sample, concept).

        A sample without concepts gives one record with ``concept=None``,
        ``weight=0.0`` and ``rank=0``.

        Returns
        -------
        records : list of dict
            ``{"sample", "l0", "cosine", "rank", "concept", "weight"}`` per row.
        """
        rows = []
        for e in self:
            base = {"sample": e.sample, "l0": e.l0, "cosine": e.cosine}
            if e.is_empty:
                rows.append({**base, "rank": 0, "concept": None, "weight": 0.0})
            for r, (c, w) in enumerate(zip(e.concepts, e.weights, strict=False), start=1):
                rows.append({**base, "rank": r, "concept": c, "weight": w})
        return rows

    def to_frame(self):
        """The explanations as a long-format table.

        Returns
        -------
        frame : pandas.DataFrame
            Columns ``sample, rank, concept, weight, l0, cosine``, one row
            per (sample, concept) as in :meth:`to_records`.
        """
        pd = import_pandas()
        cols = ["sample", "rank", "concept", "weight", "l0", "cosine"]
        return pd.DataFrame(self.to_records(), columns=cols)

    def __str__(self):
        return "\n".join(str(e) for e in self)

    def __repr__(self):
        n = sum(1 for e in self if e.is_empty)
        return f"Explanations(n_samples={len(self)}, n_empty={n})"

    def _repr_html_(self):
        from .._html import (
            NOTEBOOK_ROWS,
            Markup,
            concept_list,
            data_uri,
            html_table,
            image_path,
            img_tag,
        )
        from .._html import NOTEBOOK_THUMBNAIL as size

        shown = list(self[:NOTEBOOK_ROWS])
        paths = [image_path(e.sample) for e in shown]
        rows = []
        for e, path in zip(shown, paths, strict=True):
            uri = data_uri(path, size) if path is not None else None
            row = [img_tag(uri, e.sample, size) if uri else Markup("")] if any(paths) else []
            rows.append(row + [str(e.sample), e.l0, e.cosine,
                               concept_list(e.concepts, e.weights)])
        columns = (["image"] if any(paths) else []) + ["sample", "L0", "cosine",
                                                       "top concepts (weight)"]
        return html_table(columns, rows, caption=f"Explanations of {len(self)} samples",
                          n_total=len(self))


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
    W, names = check_codes(codes, concept_names)
    top_k = check_k(top_k)
    n = W.shape[0]
    if W.nnz == 0:
        raise ValueError(NOTHING)
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
            sample=i if sample_ids is None else label_key(sample_ids[i]),
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
        Their codes (the exact weights or ``estimator.transform(X)``: both
        reconstruct the same); decomposed with ``estimator`` when None.

    Returns
    -------
    cosine : ndarray of shape (n_samples,)
        :func:`sksplice.core.reconstruction_cosine` of the embeddings and
        ``estimator.inverse_transform(codes)``.

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

    check_is_fitted(estimator)
    X_emb, codes = embed_and_decompose(estimator, X, codes)
    if codes.shape[0] != X_emb.shape[0]:
        raise ValueError(
            f"codes have {codes.shape[0]} rows but X has {X_emb.shape[0]} samples; pass "
            "the codes of X."
        )
    return core.reconstruction_cosine(X_emb, estimator.inverse_transform(codes))
