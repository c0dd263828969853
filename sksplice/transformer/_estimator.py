"""The ``SpliceTransformer`` estimator."""

from __future__ import annotations

import logging
import numbers
import os
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .. import _defaults
from .._inputs import (
    INPUT_KINDS,
    as_rows,
    check_dimension,
    check_embeddings,
    guess_kind,
    is_dask_collection,
    same_rows,
)
from .._utils import progress_bar, resolve_device, user_stacklevel
from ..core import degenerate_rows, recompose, reconstruction_cosine
from ..dictionary import ConceptDictionary
from ..exceptions import DegenerateInputWarning
from ..solvers import SOLVERS, get_solver, solve_batched
from ._models import ModelsMixin
from ._output import OutputMixin

__all__ = ["SpliceTransformer"]

logger = logging.getLogger("sksplice")

#: transforms of more rows than this show a progress bar when ``verbose``
_PROGRESS_MIN_ROWS = 2048


class SpliceTransformer(ModelsMixin, OutputMixin, TransformerMixin, BaseEstimator,
                        auto_wrap_output_keys=None):
    """Sparse, nonnegative concept codes for CLIP embeddings (SpLiCE).

    Each input ``x`` is normalised, the modality mean ``mu`` is subtracted and
    the result normalised again (``z``); its codes solve::

        w = argmin_{w >= 0} ||z - C^T w||^2 + l1 * ||w||_1

    over the concept dictionary ``C`` (unit-norm, centred concept
    embeddings).  The codes are sparse and each column is a named concept.

    :meth:`transform` returns ``output_scale * w``, features of order one for
    a downstream linear model (``make_pipeline(SpliceTransformer(),
    LogisticRegression())`` needs no scaler); :meth:`decompose` returns the
    exact weights ``w``.  Both have the same sparsity pattern and
    :meth:`inverse_transform` gives the same reconstruction from either.

    Degenerate rows: the codes depend only on each row's direction, so a
    finite row of any norm (``1e-300`` or ``1e300`` included) is decomposed
    exactly, without overflow.  A row whose entries are all zero has no
    direction: its codes are zero and a :class:`~sksplice.DegenerateInputWarning`
    names it.  NaN or infinite entries raise a ValueError.

    Parameters
    ----------
    l1 : float, default=0.25
        Sparsity penalty, on the scale of the SpLiCE reference implementation
        (``0.25`` gives roughly 5-30 concepts with the 10k LAION vocabulary).
        scikit-learn's ``Lasso(alpha=l1 / (2 * d), positive=True,
        fit_intercept=False)`` solves the same problem.
    n_nonzero : int, default=None
        Target sparsity: when set, ``l1`` is ignored and each sample gets
        its own penalty, the one giving exactly ``n_nonzero`` concepts (the
        midpoint of that interval of the solution path; see
        :func:`sksplice.solvers.solve_n_nonzero` for ties and unreachable
        sizes).  The penalties are in ``decompose(X)[1].extra["l1"]``.
    dictionary : ConceptDictionary or (names, embeddings), default=None
        The concept dictionary.  ``None`` builds it from ``vocabulary`` with
        ``encoder`` (cached on disk).
    encoder : str, tuple or object, default="ViT-B-32:laion2b_s34b_b79k"
        The CLIP model: ``"MODEL"``, ``"MODEL:TAG"``, ``(MODEL, TAG or
        checkpoint path)``, or an object with ``encode_image``/``encode_text``.
        Used to build the dictionary and to encode image and text inputs.
    vocabulary : str, list of str or path, default="laion"
        Registered vocabulary name, a list of concepts or a text file (one
        concept a line, least to most frequent).
    vocabulary_size : int, default=10000
        Keep the ``vocabulary_size`` most frequent concepts (the last lines);
        ``-1`` (as in the reference code) keeps the whole vocabulary, ``None``
        the vocabulary's own default size (10,000 for the built-in ones).
    prompt_template : str, default="{}"
        Template applied to each concept before encoding.
    image_mean : "auto", "fit", ndarray of shape (n_features,) or None, default="auto"
        Modality mean subtracted from inputs.  ``"auto"`` uses the encoder's
        reference image mean when one exists (the vocabulary's text mean for
        text inputs), otherwise the mean of the data passed to ``fit`` (with a
        :class:`CenteringWarning`); ``"fit"`` always uses the fit data's mean;
        ``None`` disables centring.
    input : {"auto", "embedding", "image", "text"}, default="auto"
        What ``X`` holds.  ``"auto"``: numeric arrays (and per-row arrays)
        are embeddings; image paths, PIL images and uint8 arrays are images;
        text must be asked for.  ``X`` may be a list, a numpy array, a torch
        tensor, or a one-column pandas/polars DataFrame or Series (read row
        by row).
    solver : str, default="auto"
        ``"auto"`` picks the fastest exact solver for the device; see
        :func:`sksplice.list_solvers`.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    batch_size : int, default=1024
        Samples decomposed at once; bounds memory.
    max_iter : int, default=None
        Iteration budget per sample (``None``: the solver's default).
    tol : float, default=1e-6
        Target relative duality gap.
    sparse_output : bool, default=True
        Return ``scipy.sparse.csr_matrix`` codes (else a dense ndarray).
    output_scale : float, default=30.0
        :meth:`transform` multiplies the exact weights by this factor (a
        positive constant: the sparsity pattern and the reconstruction are
        unchanged).  The default puts the codes on the scale a
        ``LogisticRegression()`` with default ``C`` needs (measured on real
        CLIP embeddings, see the user guide); ``1.0`` returns the exact
        SpLiCE weights.
    n_jobs : int, default=None
        Parallel workers for the ``"sklearn"`` solver.
    cache_dir : str or path, default=None
        Where vocabularies, means and dictionaries are cached
        (``SKSPLICE_CACHE``, else the user cache directory).
    verbose : int, default=0
        ``0`` is silent; ``1`` shows progress bars while the vocabulary is
        encoded and on long transforms, and logs to the ``"sksplice"`` logger.

    Attributes
    ----------
    dictionary_ : ConceptDictionary
        The prepared concept dictionary.
    concept_names_ : ndarray of shape (n_concepts,)
        Concept names (also :meth:`get_feature_names_out`).
    image_mean_ : ndarray of shape (n_features,) or None
        The mean subtracted from inputs.
    input_kind_ : str
        What ``fit`` saw: ``"embedding"``, ``"image"`` or ``"text"`` (the
        ``input`` parameter, or ``"auto"``, when ``fit`` got no ``X``).
    solver_ : BaseSolver
        The solver instance (it caches the dictionary factorisation).
    n_features_in_ : int
        Embedding dimension.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names of a DataFrame of embeddings passed to ``fit``.

    See Also
    --------
    splice_encode : Function form sharing the same code path.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice import SpliceTransformer, ConceptDictionary
    >>> rng = np.random.default_rng(0)
    >>> E = rng.normal(size=(20, 8))
    >>> names = [f"concept_{i}" for i in range(20)]
    >>> X = E[[3, 7]] + 0.01 * rng.normal(size=(2, 8))
    >>> st = SpliceTransformer(l1=0.1, dictionary=ConceptDictionary(names, E),
    ...                        image_mean=None, device="cpu")
    >>> W = st.fit_transform(X)
    >>> W.shape
    (2, 20)
    >>> st.get_feature_names_out()[np.asarray(W[0].toarray()).argmax()]
    'concept_3'
    >>> codes, info = st.decompose(X)  # the exact SpLiCE weights
    >>> np.allclose(W.toarray(), st.output_scale * codes.toarray())
    True
    """

    _parameter_constraints: dict = {
        "l1": [Interval(numbers.Real, 0, None, closed="left")],
        "n_nonzero": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "dictionary": [ConceptDictionary, tuple, list, None],
        "encoder": "no_validation",
        "vocabulary": [str, list, tuple, os.PathLike],
        "vocabulary_size": [
            Interval(numbers.Integral, 1, None, closed="left"),
            Options(numbers.Integral, {-1}), None,
        ],
        "prompt_template": [str],
        "image_mean": [StrOptions({"auto", "fit"}), "array-like", None],
        "input": [StrOptions(set(INPUT_KINDS))],
        "solver": [StrOptions({"auto", *SOLVERS})],
        "device": [str],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "sparse_output": ["boolean"],
        "output_scale": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_jobs": [numbers.Integral, None],
        "cache_dir": [str, os.PathLike, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        l1=_defaults.L1,
        *,
        n_nonzero=None,
        dictionary=None,
        encoder=_defaults.ENCODER,
        vocabulary=_defaults.VOCABULARY,
        vocabulary_size=_defaults.VOCABULARY_SIZE,
        prompt_template=_defaults.PROMPT_TEMPLATE,
        image_mean="auto",
        input="auto",
        solver="auto",
        device="auto",
        batch_size=_defaults.BATCH_SIZE,
        max_iter=None,
        tol=_defaults.TOL,
        sparse_output=True,
        output_scale=_defaults.OUTPUT_SCALE,
        n_jobs=None,
        cache_dir=None,
        verbose=0,
    ):
        self.l1 = l1
        self.n_nonzero = n_nonzero
        self.dictionary = dictionary
        self.encoder = encoder
        self.vocabulary = vocabulary
        self.vocabulary_size = vocabulary_size
        self.prompt_template = prompt_template
        self.image_mean = image_mean
        self.input = input
        self.solver = solver
        self.device = device
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.sparse_output = sparse_output
        self.output_scale = output_scale
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Prepare the dictionary, the modality mean and the solver.

        Images and texts in ``X`` are encoded only when the mean must be
        learnt from them (``image_mean="fit"``, or ``"auto"`` without a
        reference mean); embeddings are only validated.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), list of images or texts, or None
            Embeddings, or raw inputs for the encoder (see ``input``).
            ``None`` fits on the dictionary and the reference mean alone.
        y : Ignored
            Present for API consistency.

        Returns
        -------
        self : SpliceTransformer
            The fitted transformer.
        """
        # Everything is computed into locals first: a failing fit leaves the
        # estimator exactly as it was (nothing half-written).
        resolve_device(self.device)
        rows = kind = X_emb = None
        if X is not None:
            rows = as_rows(X)
            kind = self.input if self.input != "auto" else guess_kind(rows)
            if kind == "embedding":
                X_emb = check_embeddings(rows)
        dictionary, source = self._resolve_dictionary(
            None if X_emb is None else X_emb.shape[1]
        )
        if X_emb is not None:
            check_dimension(X_emb.shape[1], dictionary.n_features, self._dictionary_source())
        image_mean, X_emb, source = self._resolve_mean(X, rows, kind, X_emb, dictionary, source)
        solver = self.build_solver()
        if kind == "embedding":
            validate_data(self, _named(X, X_emb), reset=True, skip_check_array=True)
        else:
            self.n_features_in_ = dictionary.n_features
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        self.input_kind_ = kind or self.input
        self.dictionary_ = dictionary
        self.concept_names_ = dictionary.names
        self.image_mean_ = image_mean
        self.solver_ = solver
        self._model_source = source
        # fit_transform reuses the embeddings fit computed (each image encoded once)
        keep = getattr(self, "_keep_fit_embeddings", False) and kind in ("image", "text")
        self._fit_embeddings = (rows, X_emb) if keep and X_emb is not None else None
        logger.info("fitted SpliceTransformer: %d concepts, %d features, input %s",
                    dictionary.n_concepts, dictionary.n_features, self.input_kind_)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """Fit, then transform ``X``, encoding each image or text once.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of images or texts
            Embeddings, or raw inputs for the encoder (see ``input``).
        y : Ignored
            Present for API consistency.
        **fit_params : dict
            Unused; present for API consistency.

        Returns
        -------
        codes : scipy.sparse.csr_matrix or ndarray of shape (n_samples, n_concepts)
            As :meth:`transform`.
        """
        self._keep_fit_embeddings = True
        try:
            self.fit(X, y)
            return self.transform(X)  # wrapped for set_output there
        finally:
            del self._keep_fit_embeddings
            self._fit_embeddings = None

    def build_solver(self):
        """A solver configured from this estimator's parameters.

        Returns
        -------
        solver : BaseSolver
            What :meth:`fit` stores in ``solver_``; ``device="auto"`` resolves
            to the best device the solver runs on, where this is called.
        """
        return get_solver(
            self.solver, tol=self.tol, max_iter=self.max_iter,
            device=str(self.device), batch_size=self.batch_size,
            n_jobs=self.n_jobs,
        )

    # ------------------------------------------------------------ transform
    def transform(self, X):
        """Concept codes for ``X``: ``output_scale`` times the exact SpLiCE weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of images or texts
            Inputs of the kind seen in ``fit`` (any container, see ``input``),
            or a Dask array or bag (a lazy Dask array is returned).

        Returns
        -------
        codes : scipy.sparse.csr_matrix or ndarray of shape (n_samples, n_concepts)
            Nonnegative concept features, dtype following the input (float32
            or float64).  Use :meth:`decompose` for the unscaled weights.
        """
        _check_fitted(self)
        if is_dask_collection(X):
            from .._dask import transform_dask

            return transform_dask(self, X)
        codes, _ = self._decompose(self._embed(X))
        if self.output_scale != 1:
            if sp.issparse(codes):
                codes.data *= codes.dtype.type(self.output_scale)
            else:
                codes *= codes.dtype.type(self.output_scale)
        return self._wrap_output(codes, X)

    def decompose(self, X):
        """The exact SpLiCE weights together with the solver's per-sample diagnostics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of images or texts
            Inputs of the kind seen in ``fit``.

        Returns
        -------
        codes : scipy.sparse.csr_matrix or ndarray of shape (n_samples, n_concepts)
            The weights ``w`` (never rescaled by ``output_scale``).
        info : SolverResult
            Per-sample iterations, objective, relative duality gap and
            convergence flags (``info.codes`` is dropped to save memory).
        """
        _check_fitted(self)
        return self._decompose(self._embed(X))

    def decompose_embeddings(self, X):
        """:meth:`decompose` for embeddings the caller already holds (nothing is encoded).

        Works whatever input kind ``fit`` saw (e.g. image embeddings computed
        once and decomposed at several settings).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings from the dictionary's CLIP model (any container).

        Returns
        -------
        codes : scipy.sparse.csr_matrix or ndarray of shape (n_samples, n_concepts)
            The exact weights.
        info : SolverResult
            The solver's per-sample diagnostics.
        """
        _check_fitted(self)
        if not _ready(X, self.dictionary_.n_features):
            X = check_embeddings(as_rows(X))
            check_dimension(X.shape[1], self.dictionary_.n_features, self._dictionary_source())
        return self._decompose(X)

    def embed(self, X):
        """The embeddings of ``X`` as this transformer decomposes them.

        Images and texts are encoded with the fitted encoder; embeddings are
        validated (dimension, finiteness) and returned as given.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of images or texts
            Inputs of the kind seen in ``fit``.

        Returns
        -------
        X_emb : ndarray of shape (n_samples, n_features)
            Float32 or float64 embeddings (not yet normalised or centred).
        """
        _check_fitted(self)
        return self._embed(X)

    def inverse_transform(self, X):
        """Dense reconstructions ``normalize(normalize(codes @ C) + mu)``.

        The reconstruction does not depend on a positive scale of each row,
        so codes from :meth:`transform` and weights from :meth:`decompose`
        give the same result.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_concepts)
            Concept codes.

        Returns
        -------
        X_hat : ndarray of shape (n_samples, n_features)
            Unit-norm reconstructed embeddings; all-zero codes give
            ``normalize(image_mean_)``.
        """
        _check_fitted(self)
        W = check_array(X, accept_sparse="csr", dtype=[np.float64, np.float32])
        k = self.dictionary_.n_concepts
        if W.shape[1] != k:
            raise ValueError(
                f"codes have {W.shape[1]} columns but the dictionary has {k} concepts; "
                "pass codes produced by this transformer."
            )
        C = self.dictionary_.embeddings.astype(W.dtype, copy=False)
        mean = None if self.image_mean_ is None else self.image_mean_.astype(W.dtype)
        return recompose(W, C, mean)

    def score(self, X, y=None):
        """Mean cosine similarity between each input and its reconstruction.

        Computed with :func:`sksplice.reconstruction_cosine`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of images or texts
            Inputs of the kind seen in ``fit``.
        y : Ignored
            Present for API consistency.

        Returns
        -------
        score : float
            The mean reconstruction cosine (1 is perfect).
        """
        _check_fitted(self)
        X_emb = self._embed(X)
        codes, _ = self._decompose(X_emb)
        return float(np.mean(reconstruction_cosine(X_emb, self.inverse_transform(codes))))

    def get_feature_names_out(self, input_features=None):
        """Concept names, one per output column.

        Parameters
        ----------
        input_features : Ignored
            Present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects of shape (n_concepts,)
            The concept names.
        """
        _check_fitted(self)
        return np.asarray(self.concept_names_, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def __getstate__(self):
        state = super().__getstate__()
        # a loaded CLIP model is rebuilt on demand, never pickled; nor are cached inputs
        for name in ("_encoder_obj", "_encoder_spec", "_fit_embeddings",
                     "_keep_fit_embeddings"):
            state.pop(name, None)
        return state

    # --------------------------------------------------------- internals
    def _decompose(self, X_emb):
        """The exact codes of validated embeddings (one solve_batched per block)."""
        zero = degenerate_rows(X_emb)
        if zero.size:
            warnings.warn(
                f"{zero.size} input row(s) are all zero and have no direction to decompose "
                f"(rows {zero[:10].tolist()}{' ...' if zero.size > 10 else ''}); their codes "
                "are zero. Drop them, or check how they were produced.",
                DegenerateInputWarning, stacklevel=user_stacklevel(),
            )
        n = X_emb.shape[0]
        step = n if not self.verbose or n < _PROGRESS_MIN_ROWS else max(self.batch_size, 1)
        blocks, infos = [], []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            with progress_bar(n, self.verbose and n >= _PROGRESS_MIN_ROWS,
                              "decomposing", "row") as bar:
                for start in range(0, max(n, 1), step):
                    codes, info = solve_batched(
                        X_emb[start:start + step], self.dictionary_.embeddings, self.l1,
                        self.image_mean_, self.solver_, self.sparse_output,
                        n_nonzero=self.n_nonzero,
                    )
                    blocks.append(codes)
                    infos.append(info)
                    bar.update(codes.shape[0])
        for w in caught:  # re-issued at the user's call
            warnings.warn(w.message, w.category, stacklevel=user_stacklevel())
        if len(blocks) == 1:
            return blocks[0], infos[0]
        codes = sp.vstack(blocks, format="csr") if self.sparse_output else np.concatenate(blocks)
        return codes, type(infos[0]).concatenate(infos)

    def _embed(self, X):
        """Validated embeddings for ``X`` (encoded when it holds images or texts)."""
        if (
            type(X) is np.ndarray and X.ndim == 2 and X.dtype.kind == "f"
            and self.input in ("auto", "embedding")
        ):  # the hot path: a float array of embeddings
            rows, kind = X, "embedding"
        else:
            rows = as_rows(X)
            kind = self.input if self.input != "auto" else guess_kind(rows)
        d = self.dictionary_.n_features
        if _ready(X, d) and not hasattr(self, "feature_names_in_"):
            return X  # nothing check_array would change or refuse: validated once, here
        if kind == "embedding":
            X_emb = check_embeddings(rows)
            check_dimension(X_emb.shape[1], d, self._dictionary_source())
            validate_data(self, _named(X, X_emb), reset=False, skip_check_array=True)
            return X_emb
        cached = getattr(self, "_fit_embeddings", None)
        if cached is not None and same_rows(cached[0], rows):
            return cached[1]  # fit_transform: encoded once, in fit
        X_emb = check_array(self._encode(rows, kind), dtype=[np.float64, np.float32])
        check_dimension(X_emb.shape[1], d, self._dictionary_source())
        return X_emb


def _named(X, X_emb):
    """``X`` when it is a frame whose columns are the embedding's (for feature names)."""
    if hasattr(X, "columns") and X.shape[1] == X_emb.shape[1]:
        return X
    return X_emb


def _check_fitted(est):
    """``check_is_fitted`` on the hot path: one attribute lookup when fitted."""
    if "dictionary_" not in est.__dict__:
        check_is_fitted(est, "dictionary_")


def _ready(X, d):
    """Whether ``X`` is already what validation would return (the batch-1 hot path)."""
    return (
        type(X) is np.ndarray and X.ndim == 2 and X.dtype in (np.float32, np.float64)
        and X.shape[1] == d and X.shape[0] > 0 and bool(np.isfinite(X).all())
    )
