"""Input checks shared by the analysis modules, and the estimator calls they make.

Every function here validates user input and names the fix in its error;
the estimator helpers use only :class:`~sksplice.SpliceTransformer`'s public
methods (``embed``, ``decompose_embeddings``).
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp

from .._utils import suggest

NOTHING = (
    "nothing to explain: every code is zero (no sample uses any concept), so there "
    "are no weights to rank. Decompose with a smaller l1 (e.g. half of it) and check "
    "that the embeddings match the dictionary's model."
)


def import_pandas():
    """pandas, or an ImportError that names the extra to install."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(
            'to_frame() needs pandas, which is not installed: pip install "sksplice[pandas]" '
            "(or pip install pandas). The same data is available without pandas as the "
            "object's attributes and to_dict()/to_records()."
        ) from exc
    return pd


def check_codes(codes, concept_names):
    """Codes as float64 CSR (explicit zeros dropped) and the names as an object array."""
    if hasattr(concept_names, "get_feature_names_out"):
        concept_names = concept_names.get_feature_names_out()
    if isinstance(concept_names, str):
        raise ValueError(  # noqa: TRY004 - as every bad value
            "concept_names must be a sequence of names (one per column of codes), not one "
            "string; pass estimator.get_feature_names_out()."
        )
    names = np.asarray(list(concept_names), dtype=object)
    if sp.issparse(codes):
        W = sp.csr_matrix(codes, dtype=np.float64, copy=True)
    else:
        W = _dense_codes(codes)
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


def check_labelled_codes(codes, concept_names, labels):
    """:func:`check_codes` and :func:`check_labels`; ValueError when every code is zero."""
    W, names = check_codes(codes, concept_names)
    y = check_labels(labels, W.shape[0])
    if W.nnz == 0:
        raise ValueError(NOTHING)
    return W, names, y


def _dense_codes(codes):
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
    return sp.csr_matrix(W)


def check_labels(labels, n_samples, name="labels"):
    """One label per sample, as a 1-D array; distinct labels must print distinctly."""
    if labels is None:
        raise ValueError(f"{name} is required: pass one label per sample.")
    y = as_label_array(labels)
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
    if y.dtype == object and any(v is None or (isinstance(v, float) and np.isnan(v)) for v in y):
        raise ValueError(f"{name} contain None or NaN; drop those samples or give them a label.")
    check_distinct(unique_labels(y), name)
    return y


def as_label_array(labels):
    """``labels`` as an array without numpy's silent conversion of mixed types to str.

    ``np.asarray([1, "1"])`` gives ``['1', '1']``: two groups merged.  A
    sequence holding both strings and non-strings is kept as objects instead.
    """
    if isinstance(labels, np.ndarray) or hasattr(labels, "dtype"):
        return np.asarray(labels)
    values = list(labels)
    kinds = {isinstance(v, (str, np.str_)) for v in values}
    if len(kinds) > 1:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    return np.asarray(values)


def unique_labels(y):
    """Sorted unique labels (object labels of mixed types in first-seen order)."""
    try:
        return np.unique(y)
    except TypeError:  # e.g. ints and strings together: no order between them
        seen = {}
        for v in y:
            seen.setdefault((type(v), v), v)
        out = np.empty(len(seen), dtype=object)
        out[:] = list(seen.values())
        return out


def check_distinct(classes, name="labels"):
    """Refuse labels that differ but print the same (``1`` and ``"1"``).

    Tables, plots and lookups by name key a class by its text, so two such
    labels would be merged (or one hidden) without a word.
    """
    by_text = {}
    for c in classes:
        by_text.setdefault(str(label_key(c)), []).append(c)
    clash = [v for v in by_text.values() if len(v) > 1]
    if clash:
        shown = ", ".join(" and ".join(repr(label_key(c)) for c in v) for v in clash[:3])
        raise ValueError(
            f"{name} hold distinct values with the same name ({shown}); a table keyed by "
            "name would merge them. Convert the labels to one type first, e.g. "
            "labels.astype(str) if they are the same group, or rename one."
        )


def check_k(top_k, name="top_k"):
    """A positive integer, or a ValueError naming the argument."""
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"{name} must be a positive integer; got {top_k!r}.")
    return int(top_k)


def label_key(value):
    """A numpy scalar as the Python value (dictionary keys, table cells)."""
    return value.item() if isinstance(value, np.generic) else value


def find_class(classes, label, what="class"):
    """Index of ``label`` in ``classes`` (by value, then by its text)."""
    hits = [i for i, c in enumerate(classes) if _same(c, label)]
    if not hits:
        hits = [i for i, c in enumerate(classes) if str(label_key(c)) == str(label_key(label))]
    if not hits:
        raise ValueError(
            f"{what} {label!r} is not one of {list(map(label_key, classes))}."
            f"{suggest(label, [str(c) for c in classes])}"
        )
    return hits[0]


def equal_mask(y, value):
    """Boolean mask of ``y == value``, element-wise also for labels of mixed types."""
    mask = y == value
    if np.ndim(mask) == 0:  # numpy could not compare element-wise
        mask = np.array([_same(v, value) for v in y], dtype=bool)
    return np.asarray(mask, dtype=bool)


def _same(a, b):
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def embed_and_decompose(estimator, X, codes=None):
    """The embeddings of ``X`` and their exact codes, encoding raw inputs once.

    Parameters
    ----------
    estimator : fitted SpliceTransformer
    X : embeddings, images or texts
    codes : codes of ``X`` already computed, or None to decompose them

    Returns
    -------
    X_emb, codes
    """
    X_emb = np.asarray(estimator.embed(X))
    if codes is None:
        codes, _ = estimator.decompose_embeddings(X_emb)
    return X_emb, codes

