"""The ``SpliceTransformer`` estimator."""

from __future__ import annotations

import logging
import numbers
import os
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .. import _defaults
from .._inputs import (
    INPUT_KINDS,
    as_rows,
    check_dimension,
    guess_kind,
    is_dask_collection,
    ordered,
)
from .._utils import resolve_device, to_numpy, user_stacklevel
from ..core import recompose, reconstruction_cosine
from ..dictionary import ConceptDictionary
from ..solvers import SOLVERS, BaseSolver
from ._array_api import array_api_target, from_working, to_host, to_working
from ._checks import check_encode_input, check_fitted, named, on_accelerator, ready
from ._function import resolve_solver, splice_encode
from ._models import ModelsMixin
from ._output import OutputMixin

__all__ = ["SpliceTransformer"]

logger = logging.getLogger("sksplice")


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
    solver : str or BaseSolver, default="auto"
        A solver name (``"auto"`` picks the fastest exact solver for the
        device; see :func:`sksplice.list_solvers`) or a configured instance
        such as ``ActiveSetSolver(working_set=32)``, used with its own
        ``tol``, ``max_iter``, ``device`` and ``batch_size`` (``fit`` works
        on a copy; the instance passed is never changed).
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
        Deprecated (a ``FutureWarning`` when set): pass
        ``solver=LassoSolver(n_jobs=...)``.  Parallel workers for the
        ``"sklearn"`` solver.
    cache_dir : str or path, default=None
        Where vocabularies, means and dictionaries are cached
        (``SKSPLICE_CACHE``, else the user cache directory).
    verbose : int, default=0
        ``0`` is silent; ``1`` shows progress bars while the vocabulary and
        the inputs are encoded and while 1,000 rows or more are decomposed,
        and logs to the ``"sksplice"`` logger.

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

    _doc_link_module = "sksplice"
    _doc_link_template = _defaults.API_PAGE_TEMPLATE

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
        "solver": [StrOptions({"auto", *SOLVERS}), BaseSolver],
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
        self._fit(ordered(X))  # a generator is read once; a set is refused
        return self

    @_fit_context(prefer_skip_nested_validation=True)
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
        encoded = self._fit(X := ordered(X))  # a generator is read once, for both steps
        if encoded is None:
            return self.transform(X)  # wrapped for set_output there
        codes, _ = self._decompose(encoded)  # the embeddings fit computed: encoded once
        return self._wrap_output(self._scaled(codes), X)

    def _fit(self, X):
        """Fit; returns the embeddings of image or text ``X`` when fit encoded them, else None.

        Everything is computed into locals first: a failing fit leaves the
        estimator exactly as it was (nothing half-written).
        """
        if self.n_jobs is not None:
            warnings.warn(
                "SpliceTransformer(n_jobs=...) is deprecated and will be removed; pass "
                f"solver=LassoSolver(n_jobs={self.n_jobs!r}) instead (only the 'sklearn' "
                "solver reads it).", FutureWarning, stacklevel=user_stacklevel(),
            )
        resolve_device(self.device)
        target = array_api_target(X, self.image_mean)
        X = to_working(X, target)
        rows = kind = X_emb = None
        if X is not None:
            rows = as_rows(X)
            kind = self.input if self.input != "auto" else guess_kind(rows)
            if kind == "embedding":
                X_emb = check_encode_input(rows)
        self._warn_unused(kind)
        dictionary, source = self._resolve_dictionary(
            None if X_emb is None else X_emb.shape[1]
        )
        if X_emb is not None:
            check_dimension(X_emb.shape[1], dictionary.n_features, self._dictionary_source())
        image_mean, X_emb, source = self._resolve_mean(
            X, rows, kind, X_emb, dictionary, source)
        solver = self.build_solver()
        if kind == "embedding":
            validate_data(self, named(X, X_emb), reset=True, skip_check_array=True)
        else:
            self.n_features_in_ = dictionary.n_features
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        self.input_kind_ = kind or self.input
        self.dictionary_ = dictionary
        # under array_api_dispatch the fitted mean follows the input's namespace
        self.image_mean_ = from_working(image_mean, target)
        self.solver_ = solver
        self._model_source = source
        logger.info("fitted SpliceTransformer: %d concepts, %d features, input %s",
                    dictionary.n_concepts, dictionary.n_features, self.input_kind_)
        return X_emb if kind in ("image", "text") else None

    @property
    def concept_names_(self):
        """ndarray of shape (n_concepts,): the concept names (``dictionary_.names``)."""
        check_is_fitted(self, "dictionary_")
        return self.dictionary_.names

    def build_solver(self):
        """A solver configured from this estimator's parameters.

        Returns
        -------
        solver : BaseSolver
            What :meth:`fit` stores in ``solver_``: a copy of a ``solver``
            instance, or one built from the name with ``tol``, ``max_iter``,
            ``device`` and ``batch_size``; ``device="auto"`` resolves to the
            best device the solver runs on, where this is called.
        """
        return resolve_solver(self.solver, tol=self.tol, max_iter=self.max_iter,
                              device=self.device, batch_size=self.batch_size,
                              n_jobs=self.n_jobs)

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
            or float64; float16 and bfloat16 give float32).  Use
            :meth:`decompose` for the unscaled weights.
        """
        check_fitted(self)
        X = ordered(X)  # a generator is read once, in order; a set is refused
        if is_dask_collection(X):
            from .._dask import transform_dask

            return transform_dask(self, X)
        target = None if self.sparse_output else array_api_target(X)
        codes, _ = self._decompose(self._embed(to_working(X, target)))
        if target is not None:
            return from_working(self._scaled(codes), target)
        return self._wrap_output(self._scaled(codes), X)

    def _scaled(self, codes):
        """``output_scale`` times the weights, in place."""
        if self.output_scale != 1:
            if sp.issparse(codes):
                codes.data *= codes.dtype.type(self.output_scale)
            else:
                codes *= codes.dtype.type(self.output_scale)
        return codes

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
            convergence flags (``info.codes`` is ``codes`` itself).
        """
        check_fitted(self)
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
        check_fitted(self)
        if not ready(X, self.dictionary_.n_features):
            X = check_encode_input(X, self.dictionary_.n_features, self._dictionary_source())
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
        check_fitted(self)
        return to_numpy(self._embed(X))

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
        check_fitted(self)
        target = array_api_target(X)
        W = check_array(to_working(X, target), accept_sparse="csr",
                        dtype=[np.float64, np.float32])
        k = self.dictionary_.n_concepts
        if W.shape[1] != k:
            raise ValueError(
                f"codes have {W.shape[1]} columns but the dictionary has {k} concepts; "
                "pass codes produced by this transformer."
            )
        C = self.dictionary_.embeddings.astype(W.dtype, copy=False)
        mean = self._host_mean()
        mean = None if mean is None else mean.astype(W.dtype)
        return from_working(recompose(W, C, mean), target)

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
        check_fitted(self)
        X_emb = self._embed(to_working(X, array_api_target(X)))
        codes, _ = self._decompose(X_emb)
        return float(np.mean(reconstruction_cosine(to_numpy(X_emb),
                                                   self.inverse_transform(codes))))

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
        check_fitted(self)
        return np.asarray(self.concept_names_, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        # dense codes follow the input's namespace and device; CSR codes stay scipy
        tags.array_api_support = not self.sparse_output
        return tags

    def __getstate__(self):
        state = super().__getstate__()
        # a loaded CLIP model is rebuilt on demand, never pickled
        for name in ("_encoder_obj", "_encoder_spec"):
            state.pop(name, None)
        return state

    # --------------------------------------------------------- internals
    def _decompose(self, X_emb):
        """The exact codes of validated embeddings: :func:`splice_encode`, nothing validated."""
        return splice_encode(
            X_emb, self.dictionary_, l1=self.l1, image_mean=self._host_mean(),
            solver=self.solver_, sparse_output=self.sparse_output, n_nonzero=self.n_nonzero,
            return_diagnostics=True, check_input=False, verbose=self.verbose,
        )

    def _host_mean(self):
        """``image_mean_`` as numpy (it follows the input's namespace under Array API fits)."""
        mean = self.image_mean_
        if mean is None or type(mean) is np.ndarray:
            return mean
        return to_host(mean)

    def _embed(self, X):
        """Validated embeddings for ``X`` (encoded when it holds images or texts).

        On a GPU, image and text embeddings stay there (a torch tensor).
        """
        if (
            type(X) is np.ndarray and X.ndim == 2 and X.dtype.kind == "f"
            and self.input in ("auto", "embedding")
        ):  # the hot path: a float array of embeddings
            rows, kind = X, "embedding"
        else:
            rows = as_rows(X) if not on_accelerator(X) else X
            kind = self.input if self.input != "auto" else guess_kind(rows)
        d = self.dictionary_.n_features
        if ready(X, d) and "feature_names_in_" not in self.__dict__:
            return X  # nothing check_array would change or refuse: validated once, here
        if kind == "embedding":
            X_emb = check_encode_input(rows, d, self._dictionary_source())
            if not on_accelerator(X_emb):
                validate_data(self, named(X, X_emb), reset=False, skip_check_array=True)
            return X_emb
        if isinstance(rows, np.ndarray) and kind == "image" and rows.ndim == 3:
            rows = rows[None]  # one uint8 image
        on_gpu = resolve_device(getattr(self.solver_, "device", "cpu")).type != "cpu"
        X_emb = self._encode(rows, kind, return_tensor=on_gpu)
        if not on_gpu:
            X_emb = check_array(X_emb, dtype=[np.float64, np.float32])
        check_dimension(X_emb.shape[1], d, self._dictionary_source())
        return X_emb
