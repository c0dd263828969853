"""Sparsity, fidelity and probe accuracy over a grid of ``l1``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .. import core
from ._common import check_labels, import_pandas

__all__ = ["SparsitySweep", "sparsity_sweep"]


@dataclass
class SparsitySweep:
    """Sparsity, fidelity and probe accuracy over a grid of ``l1``.

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
        """One dict per ``l1``.

        Returns
        -------
        records : list of dict
            ``{"l1", "mean_l0", "cosine", "zero_fraction"}``, plus
            ``"accuracy"`` and ``"accuracy_std"`` when the sweep has labels.
        """
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
                   dense_baseline=False, param="l1"):
    """Mean L0, reconstruction cosine and probe accuracy for each ``l1``.

    The trade-off the SpLiCE paper plots: a larger ``l1`` gives fewer
    concepts, a worse reconstruction and (usually) a less accurate probe.

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
        Labels; when given, a probe is cross-validated on the codes.
    probe : classifier, default=None
        Probe estimator (default ``LogisticRegression(max_iter=1000)``).
    cv : int or cross-validation splitter, default=5
        Folds of the probe's cross-validation.
    scoring : str or callable, default="accuracy"
        Score of the probe (as in ``cross_val_score``).
    dense_baseline : bool, default=False
        Also cross-validate the probe on the (normalised) embeddings.
    param : str, default="l1"
        Name of the sparsity parameter of ``estimator`` (e.g. ``"n_nonzero"``
        to sweep a target number of concepts instead; the grid values are
        passed as given).

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
            X_emb = np.asarray(est.embed(X))
            if y is not None:
                y = check_labels(y, X_emb.shape[0], "y")
        # the downstream features, as a pipeline's next step sees them; they have the
        # exact weights' sparsity pattern and reconstruct the same
        codes = sp.csr_matrix(est.transform(X))
        codes.eliminate_zeros()
        l0 = np.diff(codes.indptr)
        mean_l0.append(float(l0.mean()))
        zero_frac.append(float(np.mean(l0 == 0)))
        X_hat = est.inverse_transform(codes)
        cosine.append(float(np.mean(core.reconstruction_cosine(X_emb, X_hat))))
        if y is not None:
            scores = cross_val_score(clone(probe), codes, y, cv=cv, scoring=scoring)
            acc.append(float(scores.mean()))
            acc_std.append(float(scores.std()))
    dense = dense_std = None
    if dense_baseline:
        if y is None:
            raise ValueError("dense_baseline=True needs labels y.")
        dense_X = core.normalize_rows(X_emb)
        scores = cross_val_score(clone(probe), dense_X, y, cv=cv, scoring=scoring)
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
