"""Whole pipelines on Dask arrays: fit in memory, predict or transform block by block.

:class:`ParallelPostFit` wraps any fitted scikit-learn estimator or pipeline
so that ``predict``, ``predict_proba``, ``decision_function`` and
``transform`` take a Dask array (rows chunked) and return a lazy Dask array,
one task per row block, on the active scheduler (the estimator reaches the
workers once, through :func:`sksplice._dask.ship`).
"""

from __future__ import annotations

import uuid

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from . import _defaults
from ._dask import import_dask, is_dask_collection, localized, ship

__all__ = ["ParallelPostFit"]

def _materialized(value):
    """A Dask collection computed into memory (numpy, pandas); anything else as it is."""
    if value is not None and is_dask_collection(value):
        return value.compute()
    return value


def _row_blocks(X):
    """A 2-D Dask array with its columns in one block (rows stay chunked)."""
    _, da = import_dask()
    if not isinstance(X, da.Array):
        raise ValueError(  # noqa: TRY004 - as transform's error for the same inputs
            f"ParallelPostFit takes a Dask array (rows chunked); got {type(X).__name__}. "
            "Convert a Dask DataFrame with df.to_dask_array(lengths=True), a bag of rows with "
            "dask.array.stack(...).")
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D Dask array (n_samples, n_features); got shape "
                         f"{X.shape}. Reshape one sample with x.reshape(1, -1).")
    return X.rechunk({1: -1})


def _apply_block(block, estimator, method, width, dtype, sparse):
    if len(block) == 0:
        shape = (0,) if width is None else (0, width)
        return sp.csr_matrix(shape, dtype=dtype) if sparse else np.empty(shape, dtype=dtype)
    out = getattr(localized(estimator), method)(block)
    return sp.csr_matrix(out) if sparse else np.asarray(out)


def _parallel(estimator, method, X):
    """``estimator.method(X)`` for a Dask array, lazily, one task per row block."""
    _, da = import_dask()
    X = _row_blocks(X)
    first = X[:1].compute()
    if len(first) == 0:
        raise ValueError("the Dask array holds no rows; nothing to predict.")
    sample = getattr(estimator, method)(first)  # validates, and gives the output's layout
    sparse = sp.issparse(sample)
    width = None if np.ndim(sample) == 1 else int(sample.shape[1])
    dtype = sample.dtype
    meta = (sp.csr_matrix((0, 0), dtype=dtype) if sparse
            else np.empty((0,) if width is None else (0, 0), dtype=dtype))
    chunks = (X.chunks[0],) if width is None else (X.chunks[0], (width,))
    return da.map_blocks(_apply_block, X, ship(estimator), method, width, dtype, sparse,
                         dtype=dtype, chunks=chunks, drop_axis=1 if width is None else None,
                         meta=meta, name=f"sksplice-{method}-{uuid.uuid4().hex}")


def _has(method):
    def check(self):
        getattr(self.estimator, method)  # AttributeError: the method is not offered
        return True

    return check


class ParallelPostFit(MetaEstimatorMixin, BaseEstimator):
    """Fit in memory, then predict or transform Dask arrays block by block.

    A whole pipeline (``make_pipeline(SpliceTransformer(...),
    LogisticRegression())``) cannot take a Dask array: the first step returns a
    lazy Dask array the next step does not understand.  Wrapped in
    ``ParallelPostFit``, the fitted pipeline runs as one function on each row
    block, in parallel, on the active Dask scheduler (threads, or a
    ``distributed`` cluster: the fitted estimator is sent to every worker
    once).  This is dask-ml's ``ParallelPostFit`` for Dask arrays, kept small
    and without dask-ml's dependencies (dask.dataframe, hence pyarrow).

    Parameters
    ----------
    estimator : estimator object
        Any scikit-learn estimator or pipeline.  Fitted or not: an estimator
        that is already fitted is used as it is until :meth:`fit` is called.

    Attributes
    ----------
    estimator_ : estimator object
        The fitted clone of ``estimator`` (after :meth:`fit`).
    classes_ : ndarray of shape (n_classes,)
        The fitted estimator's classes (classifiers only).
    n_features_in_ : int
        The number of input features.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sksplice import ParallelPostFit, SpliceTransformer
    >>> rng = np.random.default_rng(0)
    >>> E = rng.normal(size=(20, 8))
    >>> X, y = E[rng.integers(0, 20, 60)] + 0.1 * rng.normal(size=(60, 8)), np.arange(60) % 2
    >>> pipe = make_pipeline(SpliceTransformer(dictionary=([f"c{i}" for i in range(20)], E),
    ...                                        image_mean=None, l1=0.1),
    ...                      LogisticRegression(max_iter=1000))
    >>> model = ParallelPostFit(pipe).fit(X, y)
    >>> labels = model.predict(da.from_array(X, chunks=(20, 8)))  # lazy, one task per block
    >>> labels.chunks, bool((labels.compute() == model.estimator_.predict(X)).all())
    (((20, 20, 20),), True)
    """

    _doc_link_module = "sksplice"
    _doc_link_template = _defaults.API_PAGE_TEMPLATE

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y=None, **fit_params):
        """Fit a clone of ``estimator`` on ``X`` in memory (Dask inputs are computed first).

        Parameters
        ----------
        X : array-like, DataFrame or Dask collection of shape (n_samples, n_features)
            Training data; it must fit in memory.
        y : array-like or Dask collection of shape (n_samples,), default=None
            Targets.
        **fit_params : dict
            Passed to ``estimator.fit``.

        Returns
        -------
        self : ParallelPostFit
            Fitted.
        """
        self.estimator_ = clone(self.estimator).fit(_materialized(X), _materialized(y),
                                                    **fit_params)
        return self

    def _fitted(self):
        if hasattr(self, "estimator_"):
            return self.estimator_
        check_is_fitted(self.estimator, msg=(
            "This ParallelPostFit wraps an estimator that is not fitted: call fit(X, y) "
            "first, or wrap an already fitted estimator."))
        return self.estimator

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)  # what the wrapped estimator is and accepts
        tags.estimator_type = inner.estimator_type
        tags.input_tags.sparse = inner.input_tags.sparse
        tags.input_tags.allow_nan = inner.input_tags.allow_nan
        tags.target_tags.required = inner.target_tags.required
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        tags.transformer_tags = inner.transformer_tags
        return tags

    def __sklearn_is_fitted__(self):
        try:
            self._fitted()
        except NotFittedError:
            return False
        return True

    @property
    def classes_(self):
        """The fitted estimator's classes."""
        return self._fitted().classes_

    @property
    def n_features_in_(self):
        """The number of input features the fitted estimator saw."""
        return self._fitted().n_features_in_

    def _apply(self, method, X):
        estimator = self._fitted()
        if not is_dask_collection(X):
            return getattr(estimator, method)(X)
        return _parallel(estimator, method, X)

    @available_if(_has("predict"))
    def predict(self, X):
        """Predictions: a lazy Dask array for a Dask input, computed one task per block.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Inputs; a Dask array is chunked along rows.

        Returns
        -------
        y : ndarray or dask.array.Array of shape (n_samples,)
            ``estimator.predict`` of each block, in row order.
        """
        return self._apply("predict", X)

    @available_if(_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities, block by block for a Dask input.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        proba : ndarray or dask.array.Array of shape (n_samples, n_classes)
            ``estimator.predict_proba`` of each block.
        """
        return self._apply("predict_proba", X)

    @available_if(_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities, block by block for a Dask input.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        log_proba : ndarray or dask.array.Array of shape (n_samples, n_classes)
            ``estimator.predict_log_proba`` of each block.
        """
        return self._apply("predict_log_proba", X)

    @available_if(_has("decision_function"))
    def decision_function(self, X):
        """Decision function, block by block for a Dask input.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        scores : ndarray or dask.array.Array of shape (n_samples,) or (n_samples, n_classes)
            ``estimator.decision_function`` of each block.
        """
        return self._apply("decision_function", X)

    @available_if(_has("transform"))
    def transform(self, X):
        """Transform, block by block for a Dask input (sparse blocks stay sparse).

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        Xt : ndarray, sparse matrix or dask.array.Array of shape (n_samples, n_outputs)
            ``estimator.transform`` of each block.
        """
        return self._apply("transform", X)

    @available_if(_has("score"))
    def score(self, X, y=None):
        """The fitted estimator's score, on ``X`` and ``y`` computed into memory.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Inputs.
        y : array-like or Dask collection of shape (n_samples,), default=None
            Targets.

        Returns
        -------
        score : float
            ``estimator.score(X, y)``.
        """
        return self._fitted().score(_materialized(X), _materialized(y))
