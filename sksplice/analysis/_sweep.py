"""Sparsity, fidelity, probe accuracy and zero-shot/retrieval retention over a grid of ``l1``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .. import core
from ._common import check_labels, import_pandas
from ._retention import check_gallery, check_k, precision_at_k, recall_at_k

__all__ = ["SparsitySweep", "sparsity_sweep"]


@dataclass
class SparsitySweep:
    """Sparsity, fidelity, probe accuracy and retention over a grid of ``l1``.

    Each field is a constructor parameter and an attribute of the same name;
    :func:`sparsity_sweep` builds it.

    Parameters
    ----------
    l1 : ndarray of shape (n_l1,)
        The values swept (of ``l1``, or of the swept parameter).
    mean_l0 : ndarray of shape (n_l1,)
        Mean number of concepts per sample.
    cosine : ndarray of shape (n_l1,)
        Mean reconstruction cosine (``SpliceTransformer.score``).
    zero_fraction : ndarray of shape (n_l1,)
        Fraction of samples with no concept at all.
    accuracy : ndarray of shape (n_l1,) or None, default=None
        Mean cross-validated probe score on the codes (given labels).
    accuracy_std : ndarray of shape (n_l1,) or None, default=None
        Its standard deviation over folds.
    dense_accuracy : float or None, default=None
        The same probe on the dense embeddings (``dense_baseline=True``).
    dense_accuracy_std : float or None, default=None
        Its standard deviation over folds.
    scoring : str or None, default=None
        The probe's score.
    zero_shot_accuracy : ndarray of shape (n_l1,) or None, default=None
        Zero-shot top-1 accuracy of the reconstructions (given
        ``class_embeddings``): the fraction whose class embedding of largest
        cosine is their true class.
    dense_zero_shot_accuracy : float or None, default=None
        The same for the inputs themselves.
    retrieval_precision : ndarray of shape (n_l1,) or None, default=None
        Mean precision@k (given ``retrieval_k``): each sample's reconstruction
        queries the dense embeddings of the other samples; its precision is
        the fraction of its k nearest by cosine that share its label.
    dense_retrieval_precision : float or None, default=None
        The same with the dense embedding as the query.
    retrieval_recall : ndarray of shape (n_l1,) or None, default=None
        Recall@k of the reconstructions against ``retrieval_gallery``: the
        fraction whose k nearest gallery items include one of their label.
    dense_retrieval_recall : float or None, default=None
        The same with the dense embedding as the query.
    retrieval_k : int or None, default=None
        The k of the retrieval measures.
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
    zero_shot_accuracy: np.ndarray | None = None
    dense_zero_shot_accuracy: float | None = None
    retrieval_precision: np.ndarray | None = None
    dense_retrieval_precision: float | None = None
    retrieval_recall: np.ndarray | None = None
    dense_retrieval_recall: float | None = None
    retrieval_k: int | None = None

    def to_records(self):
        """One dict per ``l1``.

        Returns
        -------
        records : list of dict
            ``{"l1", "mean_l0", "cosine", "zero_fraction"}``, plus
            ``"accuracy"`` and ``"accuracy_std"`` when the sweep has a probe,
            and each retention measure the sweep has (``"zero_shot_accuracy"``,
            ``"retrieval_precision"``, ``"retrieval_recall"``) next to its dense
            baseline (``"dense_..."``, the same on every row).
        """
        rows = []
        for i, l1 in enumerate(self.l1):
            row = {"l1": float(l1), "mean_l0": float(self.mean_l0[i]),
                   "cosine": float(self.cosine[i]),
                   "zero_fraction": float(self.zero_fraction[i])}
            if self.accuracy is not None:
                row["accuracy"] = float(self.accuracy[i])
                row["accuracy_std"] = float(self.accuracy_std[i])
            for name in ("zero_shot_accuracy", "retrieval_precision", "retrieval_recall"):
                values = getattr(self, name)
                if values is not None:
                    row[name] = float(values[i])
                    row[f"dense_{name}"] = float(getattr(self, f"dense_{name}"))
            rows.append(row)
        return rows

    def to_frame(self):
        """The sweep as a table.

        Returns
        -------
        frame : pandas.DataFrame
            One row per ``l1``, columns as in :meth:`to_records`.
        """
        pd = import_pandas()
        return pd.DataFrame(self.to_records())

    def _repr_html_(self):
        from dataclasses import fields

        from .._html import html_table

        records = self.to_records()  # every per-l1 field, whatever the sweep holds
        columns = list(records[0]) if records else []
        scalars = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                   if getattr(self, f.name) is not None and np.ndim(getattr(self, f.name)) == 0]
        caption = "SparsitySweep" + (f" ({', '.join(scalars)})" if scalars else "")
        return html_table(columns, [[r[c] for c in columns] for r in records],
                          caption=caption)


def sparsity_sweep(estimator, X, l1_grid, *, y=None, probe=None, cv=5, scoring="accuracy",
                   dense_baseline=False, param="l1", class_embeddings=None, classes=None,
                   retrieval_k=None, retrieval_gallery=None):
    """Mean L0, reconstruction cosine, probe accuracy and retention for each ``l1``.

    The trade-off the SpLiCE paper plots: a larger ``l1`` gives fewer
    concepts, a worse reconstruction and (usually) a less accurate probe.
    With ``class_embeddings`` or ``retrieval_k`` it also measures how much of
    the embedding's use the reconstructions keep, as the paper's
    ``experiments/zero_shot.py`` and ``experiments/retrieval.py`` do: zero-shot
    accuracy and retrieval precision of the reconstructions, next to the same
    of the dense embeddings.

    Parameters
    ----------
    estimator : SpliceTransformer
        Cloned and refitted with ``param`` set to each value.
    X : array-like of shape (n_samples, n_features), or images or texts
        Inputs.  Each ``l1`` transforms ``X`` once, so pass embeddings
        (``estimator.fit(X).embed(X)``) to encode images only once.
    l1_grid : sequence of float
        Values of ``l1``.
    y : array-like of shape (n_samples,), default=None
        Labels; when given, a probe is cross-validated on the codes (unless
        ``probe="drop"``).  The true classes for ``class_embeddings`` and the
        labels that ``retrieval_k`` compares.
    probe : classifier or "drop", default=None
        Probe estimator (default ``LogisticRegression(max_iter=1000)``);
        ``"drop"`` runs no probe (e.g. one sample per class, where only the
        zero-shot and retrieval measures make sense).
    cv : int or cross-validation splitter, default=5
        Folds of the probe's cross-validation.
    scoring : str or callable, default="accuracy"
        Score of the probe (as in ``cross_val_score``).
    dense_baseline : bool, default=False
        Also cross-validate the probe on the (normalised) embeddings.  (The
        zero-shot and retrieval measures always come with their dense
        baselines: they cost one pass.)
    param : str, default="l1"
        Name of the sparsity parameter of ``estimator`` (e.g. ``"n_nonzero"``
        to sweep a target number of concepts instead; the grid values are
        passed as given).
    class_embeddings : array-like of shape (n_classes, n_features), default=None
        A zero-shot head (one text embedding per class, e.g. CLIP's ImageNet
        head transposed): gives ``zero_shot_accuracy``, the
        :class:`~sksplice.ZeroShotClassifier` accuracy of the
        reconstructions against ``y``.
    classes : array-like of shape (n_classes,), default=None
        Labels of the rows of ``class_embeddings`` (default
        ``0 .. n_classes - 1``); every entry of ``y`` must be one of them.
    retrieval_k : int, default=None
        Gives ``retrieval_precision``: each sample's reconstruction queries
        the dense embeddings of the other samples, and precision@k is the
        fraction of its ``retrieval_k`` nearest by cosine that share its label
        in ``y``.
    retrieval_gallery : tuple (embeddings, labels), default=None
        A second modality to retrieve from (e.g. caption embeddings labelled
        by the index of their image, or class texts labelled by class): gives
        ``retrieval_recall``, the fraction of reconstructions whose
        ``retrieval_k`` nearest gallery items include one with their label,
        the paper's image-to-text recall@k.  Needs ``retrieval_k``.

    Returns
    -------
    sweep : SparsitySweep
        One entry per value of the grid.

    Notes
    -----
    The codes for each ``l1`` are computed once on all of ``X`` and the probe
    is cross-validated on them.  A SpliceTransformer decomposes each sample
    on its own and fits nothing on the labels, so this equals (and is
    ``cv`` times cheaper than) cross-validating
    ``make_pipeline(SpliceTransformer(l1=...), probe)``; with
    ``image_mean="fit"`` the centring mean sees all of ``X`` (no labels).

    The reconstructions are ``estimator.inverse_transform`` of the codes
    (unit-norm, the mean added back), the embeddings SpLiCE stands in for.
    Ranking sorts the cosines stably: ties go to the candidate that comes
    first.

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

    Zero-shot and retrieval retention, with the dense embeddings' own:

    >>> head = X[:3] + 0.1                     # three "class texts"
    >>> y = np.arange(30) % 3
    >>> sweep = sparsity_sweep(st, X, [0.05, 5.0], y=y, probe="drop",
    ...                        class_embeddings=head, retrieval_k=5)
    >>> sorted(sweep.to_frame().columns)[:4]
    ['cosine', 'dense_retrieval_precision', 'dense_zero_shot_accuracy', 'l1']
    """
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

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
    use_probe = y is not None and not (isinstance(probe, str) and probe == "drop")
    if isinstance(probe, str) and probe != "drop":
        raise ValueError(f"probe={probe!r}: pass a classifier, None (logistic regression) "
                         "or 'drop' (no probe).")
    if probe is None:
        from sklearn.linear_model import LogisticRegression

        probe = LogisticRegression(max_iter=1000)
    for name, given in (("class_embeddings", class_embeddings is not None),
                        ("retrieval_k", retrieval_k is not None)):
        if given and y is None:
            raise ValueError(f"{name} needs the true labels: pass y=.")
    if retrieval_gallery is not None and retrieval_k is None:
        raise ValueError("retrieval_gallery needs retrieval_k, the number of gallery items "
                         "retrieved per query (e.g. retrieval_k=5).")
    mean_l0, cosine, zero_frac, acc, acc_std = [], [], [], [], []
    zs, prec, rec = [], [], []
    X_emb = head = dense_X = None
    for value in values:
        value = value.item() if isinstance(value, np.generic) else value
        est = clone(estimator).set_params(**{param: value}).fit(X)
        if X_emb is None:
            X_emb = np.asarray(est.embed(X))
            dense_X = core.normalize_rows(np.asarray(X_emb, dtype=np.float64))
            if y is not None:
                y = check_labels(y, X_emb.shape[0], "y")
            head, gallery, retrieval_k = _retention_setup(
                class_embeddings, classes, retrieval_k, retrieval_gallery, dense_X, y)
        # the downstream features, as a pipeline's next step sees them; they have the
        # exact weights' sparsity pattern and reconstruct the same
        codes = sp.csr_matrix(est.transform(X))
        codes.eliminate_zeros()
        l0 = np.diff(codes.indptr)
        mean_l0.append(float(l0.mean()))
        zero_frac.append(float(np.mean(l0 == 0)))
        X_hat = est.inverse_transform(codes)
        cosine.append(float(np.mean(core.reconstruction_cosine(X_emb, X_hat))))
        if use_probe:
            scores = cross_val_score(clone(probe), codes, y, cv=cv, scoring=scoring)
            acc.append(float(scores.mean()))
            acc_std.append(float(scores.std()))
        if head is not None:
            zs.append(float(head.score(X_hat, y)))
        if retrieval_k is not None:
            prec.append(precision_at_k(X_hat, dense_X, y, retrieval_k))
        if gallery is not None:
            rec.append(recall_at_k(X_hat, y, *gallery, retrieval_k))
    dense = dense_std = None
    if dense_baseline:
        if not use_probe:
            raise ValueError("dense_baseline=True needs labels y and a probe (not 'drop').")
        scores = cross_val_score(clone(probe), dense_X, y, cv=cv, scoring=scoring)
        dense, dense_std = float(scores.mean()), float(scores.std())
    return SparsitySweep(
        l1=grid, mean_l0=np.asarray(mean_l0), cosine=np.asarray(cosine),
        zero_fraction=np.asarray(zero_frac),
        accuracy=np.asarray(acc) if use_probe else None,
        accuracy_std=np.asarray(acc_std) if use_probe else None,
        dense_accuracy=dense, dense_accuracy_std=dense_std,
        scoring=(scoring if isinstance(scoring, str) else getattr(scoring, "__name__", "score"))
        if use_probe else None,
        zero_shot_accuracy=np.asarray(zs) if head is not None else None,
        dense_zero_shot_accuracy=float(head.score(dense_X, y)) if head is not None else None,
        retrieval_precision=np.asarray(prec) if retrieval_k is not None else None,
        dense_retrieval_precision=precision_at_k(dense_X, dense_X, y, retrieval_k)
        if retrieval_k is not None else None,
        retrieval_recall=np.asarray(rec) if gallery is not None else None,
        dense_retrieval_recall=recall_at_k(dense_X, y, *gallery, retrieval_k)
        if gallery is not None else None,
        retrieval_k=retrieval_k,
    )


def _retention_setup(class_embeddings, classes, retrieval_k, retrieval_gallery, dense_X, y):
    """(fitted zero-shot head, (gallery, labels), k) for the retention measures, checked."""
    head = gallery = None
    if class_embeddings is not None:
        from ..zero_shot import ZeroShotClassifier

        head = ZeroShotClassifier(class_embeddings, classes=classes).fit(dense_X, y)
    if retrieval_k is not None:
        retrieval_k = check_k(retrieval_k, dense_X.shape[0] - 1, "other samples")
    if retrieval_gallery is not None:
        gallery = check_gallery(retrieval_gallery, y, dense_X.shape[1])
        retrieval_k = check_k(retrieval_k, gallery[0].shape[0], "gallery items")
    return head, gallery, retrieval_k
