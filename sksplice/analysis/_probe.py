"""Which concepts drive each class of a fitted probe pipeline.

A probe is ``make_pipeline(featurizer, [per-feature scalers...], classifier)``:
the featurizer is a :class:`~sksplice.SpliceTransformer` (or a
``ColumnTransformer`` holding one) whose ``get_feature_names_out()`` names
the columns, and the classifier is linear (``coef_``, ``classes_``).

- :func:`probe_concepts` reads the classifier's coefficients back on the
  codes' scale and weighs them by how much each class uses each concept.
- :func:`concept_permutation_importance` shuffles one concept column of the
  codes at a time and scores the rest of the pipeline.  scikit-learn's
  ``permutation_importance`` cannot do this: it rejects sparse ``X``, and on
  the pipeline's inputs it shuffles embedding dimensions, not concepts.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._common import check_k, check_labels, equal_mask, import_pandas, label_key

__all__ = ["concept_permutation_importance", "probe_concepts"]

_COLUMNS = ["class", "rank", "concept", "coefficient", "mean_code", "contribution"]


def probe_concepts(probe, X, y=None, *, top_k=10):
    """Per-class table of the concepts that drive a fitted linear probe.

    For class ``c`` and concept ``j`` the table gives the classifier's
    coefficient per unit of the concept's code (``coefficient``), the mean
    code of ``j`` over the samples of class ``c`` (``mean_code``) and their
    product (``contribution``): how much the concept adds, on average, to
    the class's decision function compared with a sample that does not use
    it.

    Parameters
    ----------
    probe : fitted Pipeline
        ``featurizer -> [per-feature scalers] -> linear classifier``.  The
        featurizer (first step) has ``transform`` and
        ``get_feature_names_out`` (a SpliceTransformer, or a
        ColumnTransformer whose columns are then named ``splice__<concept>``);
        the steps between must scale each feature on its own (``MaxAbsScaler``,
        ``StandardScaler``...); the classifier has ``coef_`` and ``classes_``.
    X : array-like
        Inputs of the pipeline (embeddings, images, a DataFrame...).
    y : array-like of shape (n_samples,), default=None
        Their classes: ``mean_code`` of class ``c`` averages the samples of
        ``c``.  ``None`` averages every sample for every class.
    top_k : int or None, default=10
        Rows per class, by decreasing contribution (``None``: every concept
        with a nonzero contribution).

    Returns
    -------
    table : pandas.DataFrame
        Columns ``class, rank, concept, coefficient, mean_code,
        contribution``, one row per (class, concept), ranked within class.

    Raises
    ------
    ValueError
        If the pipeline does not have that shape, or a middle step mixes
        features.

    See Also
    --------
    concept_permutation_importance : A model-agnostic importance per concept.
    sksplice.plotting.plot_probe_concepts : Bar charts of this table.

    Notes
    -----
    A binary classifier has one coefficient row, for ``classes_[1]``; the
    table lists it for that class and its negation for ``classes_[0]``.
    Scalers between the featurizer and the classifier are folded into the
    coefficient (``coef * scale``), so ``coefficient`` is per unit of the
    featurizer's output and ``contribution`` is the same with or without a
    scaler that does not centre.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import MaxAbsScaler
    >>> from sksplice import ConceptDictionary, SpliceTransformer
    >>> from sksplice.analysis import probe_concepts
    >>> cd = ConceptDictionary(["cat", "dog", "car"], np.eye(3), center=False)
    >>> X = np.array([[1.0, 0.1, 0], [0.9, 0, 0.1], [0, 0.1, 1.0], [0.1, 0, 0.9]])
    >>> y = ["pet", "pet", "vehicle", "vehicle"]
    >>> st = SpliceTransformer(l1=0.05, dictionary=cd, image_mean=None, device="cpu")
    >>> probe = make_pipeline(st, MaxAbsScaler(), LogisticRegression()).fit(X, y)
    >>> table = probe_concepts(probe, X, y, top_k=1)
    >>> table[["class", "concept"]].to_numpy().tolist()
    [['pet', 'cat'], ['vehicle', 'car']]
    """
    pd = import_pandas()
    top_k = None if top_k is None else check_k(top_k)
    featurizer, middle, clf = _split_probe(probe)
    codes = _as_csr(featurizer.transform(X))
    names = np.asarray(featurizer.get_feature_names_out(), dtype=object)
    _check_width(codes, names, featurizer)
    scale = _feature_scale(middle, names.size)
    classes, coef = _class_coefficients(clf, names.size)
    coef = coef * scale
    if y is not None:
        y = check_labels(y, codes.shape[0], "y")
    rows = []
    for c, w in zip(classes, coef, strict=False):
        mask = np.ones(codes.shape[0], dtype=bool) if y is None else equal_mask(y, c)
        if not mask.any():
            raise ValueError(
                f"class {label_key(c)!r} of the classifier has no sample in y; pass the "
                "labels of X (or y=None to average over every sample)."
            )
        mean_code = np.asarray(codes[mask].mean(axis=0)).ravel()
        contribution = w * mean_code
        used = np.flatnonzero(contribution != 0)
        order = used[np.lexsort((used, -contribution[used]))][:top_k]
        rows.extend(
            {"class": label_key(c), "rank": r, "concept": str(names[j]),
             "coefficient": float(w[j]), "mean_code": float(mean_code[j]),
             "contribution": float(contribution[j])}
            for r, j in enumerate(order, start=1)
        )
    return pd.DataFrame(rows, columns=_COLUMNS)


def concept_permutation_importance(probe, X, y, *, scoring=None, n_repeats=5,
                                   random_state=None, features=None):
    """Permutation importance of each concept (column of the codes) for a probe.

    The inputs are decomposed once; then, for each concept, its column of the
    codes is shuffled across samples ``n_repeats`` times and the rest of the
    pipeline is scored on the shuffled codes.  The importance is the drop in
    score.

    Parameters
    ----------
    probe : fitted Pipeline
        ``featurizer -> ... -> estimator``; the featurizer (first step)
        makes the codes, every later step is scored on them.
    X : array-like
        Inputs of the pipeline.
    y : array-like of shape (n_samples,)
        Targets.
    scoring : str, callable or None, default=None
        Scorer of the downstream steps (``None``: the estimator's ``score``).
    n_repeats : int, default=5
        Shuffles per concept.
    random_state : int, numpy Generator or None, default=None
        Seed of the shuffles.
    features : sequence of str, default=None
        Concept names (``get_feature_names_out`` of the featurizer) to
        evaluate; default every column used by at least one sample.  A
        column that no sample uses has importance 0 without being scored.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``importances`` of shape (n_features, n_repeats),
        ``importances_mean`` and ``importances_std`` of shape
        (n_features,) (as scikit-learn's ``permutation_importance``), plus
        ``feature_names`` and ``baseline_score``.

    Raises
    ------
    ValueError
        If a name in ``features`` is not a column, or the probe has a single
        step.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import MaxAbsScaler
    >>> from sksplice import ConceptDictionary, SpliceTransformer
    >>> from sksplice.analysis import concept_permutation_importance
    >>> rng = np.random.default_rng(0)
    >>> cd = ConceptDictionary(["cat", "dog", "car"], np.eye(3), center=False)
    >>> y = np.repeat([0, 1], 20)
    >>> X = np.abs(rng.normal(size=(40, 3))) * 0.2
    >>> X[y == 0, 0] += 1.0                      # "cat" in class 0,
    >>> X[y == 1, 2] += 1.0                      # "car" in class 1, "dog" is noise
    >>> st = SpliceTransformer(l1=0.05, dictionary=cd, image_mean=None, device="cpu")
    >>> probe = make_pipeline(st, MaxAbsScaler(), LogisticRegression()).fit(X, y)
    >>> res = concept_permutation_importance(probe, X, y, random_state=0)
    >>> str(res.feature_names[np.argmin(res.importances_mean)])
    'dog'
    """
    from sklearn.metrics import check_scoring
    from sklearn.utils import Bunch

    n_repeats = check_k(n_repeats, "n_repeats")
    steps = _pipeline_steps(probe)
    if len(steps) < 2:
        raise ValueError(
            "the probe needs a featurizer and at least one step after it, e.g. "
            "make_pipeline(SpliceTransformer(), LogisticRegression())."
        )
    featurizer, downstream = probe[0], probe[1:]
    codes = featurizer.transform(X)
    names = np.asarray(featurizer.get_feature_names_out(), dtype=object)
    _check_width(codes, names, featurizer)
    y = check_labels(y, codes.shape[0], "y")
    columns = _columns_to_permute(codes, names, features)
    scorer = check_scoring(downstream, scoring=scoring)
    baseline = float(scorer(downstream, codes, y))
    rng = np.random.default_rng(random_state)
    permuter = _ColumnPermuter(codes)
    importances = np.zeros((names.size, n_repeats))
    for j in columns:
        for r in range(n_repeats):
            shuffled = permuter.shuffled(j, rng.permutation(codes.shape[0]))
            importances[j, r] = baseline - float(scorer(downstream, shuffled, y))
    return Bunch(
        importances=importances, importances_mean=importances.mean(axis=1),
        importances_std=importances.std(axis=1), feature_names=names,
        baseline_score=baseline,
    )


# ------------------------------------------------------------------ helpers
def _pipeline_steps(probe):
    steps = getattr(probe, "steps", None)
    if steps is None:
        raise ValueError(
            f"probe must be a fitted Pipeline (make_pipeline(SpliceTransformer(), "
            f"LogisticRegression())); got {type(probe).__name__}."
        )
    return steps


def _split_probe(probe):
    """The featurizer, the steps between (a Pipeline or None) and the linear classifier."""
    from sklearn.utils.validation import check_is_fitted

    steps = _pipeline_steps(probe)
    clf = steps[-1][1]
    if len(steps) < 2:
        raise ValueError(
            "probe must end with a fitted linear classifier after a featurizer, e.g. "
            "make_pipeline(SpliceTransformer(), LogisticRegression()).fit(X, y)."
        )
    check_is_fitted(clf)
    if not (hasattr(clf, "coef_") and hasattr(clf, "classes_")):
        raise ValueError(
            f"the probe's last step {type(clf).__name__} has no coef_ and classes_; "
            "probe_concepts reads a linear classifier (LogisticRegression, LinearSVC, "
            "RidgeClassifier...). For any other model use concept_permutation_importance."
        )
    featurizer = probe[0]
    if not hasattr(featurizer, "get_feature_names_out"):
        raise ValueError(
            f"the probe's first step {type(featurizer).__name__} cannot name its output "
            "columns (no get_feature_names_out); start the pipeline with a SpliceTransformer."
        )
    middle = probe[1:-1] if len(steps) > 2 else None
    return featurizer, middle, clf


def _check_width(codes, names, featurizer):
    if codes.shape[1] != names.size:
        raise ValueError(
            f"{type(featurizer).__name__} gives {codes.shape[1]} columns but names "
            f"{names.size}; its get_feature_names_out() must describe its transform()."
        )


def _as_csr(codes):
    out = sp.csr_matrix(codes, dtype=np.float64)
    out.eliminate_zeros()
    return out


def _feature_scale(middle, k):
    """Per-feature factor ``a`` of the steps between featurizer and classifier.

    They must map each feature on its own, ``z_j = a_j x_j + b_j``; this is
    read off two probe rows (zeros and ones) and checked on a third.
    """
    if middle is None:
        return np.ones(k)
    rows = sp.csr_matrix(np.vstack([np.zeros(k), np.ones(k), np.linspace(0.1, 1.0, k)]))
    try:
        out = middle.transform(rows)
    except (TypeError, ValueError):  # a step that needs dense input
        out = middle.transform(rows.toarray())
    out = out.toarray() if sp.issparse(out) else np.asarray(out, dtype=np.float64)
    b, a = out[0], out[1] - out[0]
    if out.shape[1] != k or not np.allclose(out[2], a * np.linspace(0.1, 1.0, k) + b,
                                            rtol=1e-6, atol=1e-9):
        raise ValueError(
            f"the steps between the featurizer and the classifier ({middle!r}) do not scale "
            "each feature on its own, so the coefficients cannot be read per concept; keep "
            "only scalers (MaxAbsScaler, StandardScaler) there, or use "
            "concept_permutation_importance."
        )
    return a


def _class_coefficients(clf, k):
    """One coefficient row per class (a binary classifier's row, and its negation)."""
    coef = np.asarray(clf.coef_.toarray() if sp.issparse(clf.coef_) else clf.coef_,
                      dtype=np.float64)
    coef = coef.reshape(1, -1) if coef.ndim == 1 else coef
    classes = np.asarray(clf.classes_)
    if coef.shape[1] != k:
        raise ValueError(
            f"the classifier has {coef.shape[1]} coefficients per class but the featurizer "
            f"gives {k} columns; a middle step changes the number of features."
        )
    if coef.shape[0] == 1 and classes.size == 2:
        return classes, np.vstack([-coef[0], coef[0]])
    if coef.shape[0] != classes.size:
        raise ValueError(
            f"coef_ has {coef.shape[0]} rows for {classes.size} classes; probe_concepts "
            "reads one coefficient row per class (or one for a binary classifier)."
        )
    return classes, coef


def _columns_to_permute(codes, names, features):
    used = np.diff(sp.csc_matrix(codes).indptr) > 0 if sp.issparse(codes) else np.ptp(
        np.asarray(codes), axis=0) > 0
    if features is None:
        return np.flatnonzero(used)
    if isinstance(features, str) or not all(isinstance(f, (str, np.str_)) for f in features):
        raise ValueError(
            "features must be a list of concept names (get_feature_names_out() of the "
            f"probe's first step); got {features!r}."
        )
    lookup = {str(n): j for j, n in enumerate(names)}
    missing = [f for f in features if str(f) not in lookup]
    if missing:
        from .._utils import suggest

        raise ValueError(
            f"{missing[0]!r} is not a column of the codes.{suggest(missing[0], names)}"
        )
    return np.array([lookup[str(f)] for f in features if used[lookup[str(f)]]], dtype=np.intp)


class _ColumnPermuter:
    """Codes with one column's values shuffled across rows, sparse or dense."""

    def __init__(self, codes):
        self.sparse = sp.issparse(codes)
        if self.sparse:
            self.csc = sp.csc_matrix(codes, copy=True)
            self.csc.sort_indices()
            self.indices = self.csc.indices.copy()
            self.format = codes.format if hasattr(codes, "format") else "csr"
        else:
            self.dense = np.array(codes, copy=True)

    def shuffled(self, j, perm):
        """The codes with ``out[i, j] = codes[perm[i], j]``."""
        if not self.sparse:
            out = self.dense.copy()
            out[:, j] = self.dense[perm, j]
            return out
        a, b = self.csc.indptr[j], self.csc.indptr[j + 1]
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(perm.size)
        indices = self.indices.copy()
        indices[a:b] = inverse[self.indices[a:b]]
        out = sp.csc_matrix((self.csc.data, indices, self.csc.indptr), shape=self.csc.shape)
        out.has_sorted_indices = False
        return out.asformat(self.format if isinstance(self.format, str) else "csr")

