"""Retrieval retention: precision@k among the samples, recall@k against a gallery.

The measures of the SpLiCE paper's ``experiments/retrieval.py``, on any
labelled embeddings: a query (a reconstruction, or the dense embedding for
the baseline) ranks the candidates by cosine, and the k nearest are compared
with its label.  Ranking is a stable sort of the cosines, so ties go to the
candidate that comes first.
"""

from __future__ import annotations

import numpy as np

from .. import core

#: Query rows ranked at once (bounds the (block, n_candidates) cosine matrix).
_BLOCK = 1024


def _top_k(Q, G, k, *, exclude_self=False):
    """Indices of the ``k`` rows of ``G`` of largest cosine with each row of ``Q``."""
    Q = core.normalize_rows(np.asarray(Q, dtype=np.float64))
    G = core.normalize_rows(np.asarray(G, dtype=np.float64))
    out = np.empty((Q.shape[0], k), dtype=np.intp)
    for start in range(0, Q.shape[0], _BLOCK):
        stop = min(start + _BLOCK, Q.shape[0])
        S = Q[start:stop] @ G.T
        if exclude_self:
            S[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        out[start:stop] = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return out


def check_k(k, n_candidates, what):
    """``k`` as an int in ``1 .. n_candidates``, or a ValueError naming the fix."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"retrieval_k must be a positive integer; got {k!r}.")
    if k > n_candidates:
        raise ValueError(
            f"retrieval_k={k} is more than the {n_candidates} {what}; pass a smaller k."
        )
    return int(k)


def precision_at_k(queries, embeddings, labels, k):
    """Mean precision@k of each query against the other samples.

    Query ``i`` ranks the rows of ``embeddings`` other than row ``i`` by
    cosine; its precision is the fraction of its ``k`` nearest whose label
    equals ``labels[i]``.

    Parameters
    ----------
    queries : ndarray of shape (n_samples, n_features)
        One query per sample (e.g. its reconstruction, or ``embeddings``).
    embeddings : ndarray of shape (n_samples, n_features)
        The candidates: the dense embeddings.
    labels : ndarray of shape (n_samples,)
        Label of each sample.
    k : int
        Neighbours per query.

    Returns
    -------
    precision : float
        Mean over the queries.
    """
    labels = np.asarray(labels)
    top = _top_k(queries, embeddings, k, exclude_self=True)
    return float(np.mean(labels[top] == labels[:, None]))


def recall_at_k(queries, labels, gallery, gallery_labels, k):
    """Fraction of queries with an item of their label among their ``k`` nearest.

    Parameters
    ----------
    queries : ndarray of shape (n_samples, n_features)
        One query per sample.
    labels : ndarray of shape (n_samples,)
        Label of each query.
    gallery : ndarray of shape (n_gallery, n_features)
        The items retrieved (e.g. captions or class texts).
    gallery_labels : ndarray of shape (n_gallery,)
        Label of each item.
    k : int
        Items retrieved per query.

    Returns
    -------
    recall : float
        Mean over the queries.
    """
    gallery_labels = np.asarray(gallery_labels)
    top = _top_k(queries, gallery, k)
    return float(np.mean(np.any(gallery_labels[top] == np.asarray(labels)[:, None], axis=1)))


def check_gallery(gallery, y, n_features):
    """``(embeddings, labels)`` of a retrieval gallery, checked against ``y``."""
    from sklearn.utils.validation import check_array, column_or_1d

    try:
        G, g_labels = gallery
    except (TypeError, ValueError):
        raise ValueError(
            "retrieval_gallery must be a pair (embeddings, labels), e.g. (caption "
            "embeddings, the index of the image each caption describes)."
        ) from None
    G = check_array(np.asarray(G), dtype=np.float64)
    g_labels = column_or_1d(np.asarray(g_labels))
    if G.shape[0] != g_labels.shape[0]:
        raise ValueError(
            f"retrieval_gallery has {G.shape[0]} embeddings but {g_labels.shape[0]} labels; "
            "pass one label per gallery embedding."
        )
    if G.shape[1] != n_features:
        raise ValueError(
            f"retrieval_gallery's embeddings have {G.shape[1]} features but X has "
            f"{n_features}: encode the gallery with the same CLIP model."
        )
    missing = sorted(set(np.unique(y).tolist()) - set(g_labels.tolist()), key=str)
    if missing:
        raise ValueError(
            f"labels {missing[:5]}{' ...' if len(missing) > 5 else ''} of y have no item in "
            "retrieval_gallery, so their recall would be zero by construction; give every "
            "label of y at least one gallery item."
        )
    return G, g_labels
