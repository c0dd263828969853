"""``SpliceTransformer`` and its function form ``splice_encode``."""

from __future__ import annotations

import numbers
import os
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ._utils import resolve_device
from .core import center_embeddings, recompose
from .exceptions import CenteringWarning
from .dictionary import ConceptDictionary, as_concept_dictionary
from .solvers import SOLVERS, get_solver, solve_batched

__all__ = ["SpliceTransformer", "splice_encode", "CenteringWarning"]

_INPUT_KINDS = ("auto", "embedding", "image", "text")


class SpliceTransformer(TransformerMixin, BaseEstimator):
    """Sparse, nonnegative concept codes for CLIP embeddings (SpLiCE).

    Each input ``x`` is normalised, the modality mean ``mu`` is subtracted and
    the result normalised again (``z``); its codes solve::

        w = argmin_{w >= 0} ||z - C^T w||^2 + l1 * ||w||_1

    over the concept dictionary ``C`` (unit-norm, centred concept
    embeddings).  The codes are sparse and each column is a named concept.

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
        Keep the ``vocabulary_size`` most frequent concepts (the last lines).
    prompt_template : str, default="{}"
        Template applied to each concept before encoding.
    image_mean : "auto", "fit", ndarray of shape (n_features,) or None, default="auto"
        Modality mean subtracted from inputs.  ``"auto"`` uses the encoder's
        reference image mean when one exists (the vocabulary's text mean for
        text inputs), otherwise the mean of the data passed to ``fit`` (with a
        :class:`CenteringWarning`); ``"fit"`` always uses the fit data's mean;
        ``None`` disables centring.
    input : {"auto", "embedding", "image", "text"}, default="auto"
        What ``X`` holds.  ``"auto"``: 2-D numeric arrays are embeddings,
        paths, PIL images and uint8 arrays are images; text must be asked for.
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
    n_jobs : int, default=None
        Parallel workers for the ``"sklearn"`` solver.
    cache_dir : str or path, default=None
        Where vocabularies, means and dictionaries are cached
        (``SKSPLICE_CACHE``, else the user cache directory).

    Attributes
    ----------
    dictionary_ : ConceptDictionary
        The prepared concept dictionary.
    concept_names_ : ndarray of shape (n_concepts,)
        Concept names (also :meth:`get_feature_names_out`).
    image_mean_ : ndarray of shape (n_features,) or None
        The mean subtracted from inputs.
    input_kind_ : str
        What ``fit`` saw: ``"embedding"``, ``"image"`` or ``"text"``.
    solver_ : BaseSolver
        The solver instance (it caches the dictionary factorisation).
    n_features_in_ : int
        Embedding dimension.

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
    """

    _parameter_constraints: dict = {
        "l1": [Interval(numbers.Real, 0, None, closed="left")],
        "n_nonzero": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "dictionary": [ConceptDictionary, tuple, list, None],
        "encoder": "no_validation",
        "vocabulary": [str, list, tuple, os.PathLike],
        "vocabulary_size": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "prompt_template": [str],
        "image_mean": [StrOptions({"auto", "fit"}), "array-like", None],
        "input": [StrOptions(set(_INPUT_KINDS))],
        "solver": [StrOptions({"auto", *SOLVERS})],
        "device": [str],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "sparse_output": ["boolean"],
        "n_jobs": [numbers.Integral, None],
        "cache_dir": [str, os.PathLike, None],
    }

    def __init__(
        self,
        l1=0.25,
        *,
        n_nonzero=None,
        dictionary=None,
        encoder="ViT-B-32:laion2b_s34b_b79k",
        vocabulary="laion",
        vocabulary_size=10000,
        prompt_template="{}",
        image_mean="auto",
        input="auto",
        solver="auto",
        device="auto",
        batch_size=1024,
        max_iter=None,
        tol=1e-6,
        sparse_output=True,
        n_jobs=None,
        cache_dir=None,
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
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Prepare the dictionary and the modality mean.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of images or texts
            Embeddings, or raw inputs for the encoder (see ``input``).
        y : Ignored
            Present for API consistency.

        Returns
        -------
        self : SpliceTransformer
            The fitted transformer.
        """
        # Everything is computed into locals first: a failing fit leaves the
        # estimator exactly as it was (nothing half-written).
        device = resolve_device(self.device)
        kind = self._input_kind(X)
        X_emb = self._embed(X, kind)
        dictionary = self._resolve_dictionary(X_emb.shape[1] if kind == "embedding" else None)
        _check_dimension(X_emb.shape[1], dictionary.n_features, self._dictionary_source())
        image_mean = self._resolve_mean(X_emb, kind, dictionary)
        solver = get_solver(
            self.solver, tol=self.tol, max_iter=self.max_iter, device=str(device),
            batch_size=self.batch_size, n_jobs=self.n_jobs,
        )
        if kind == "embedding":
            validate_data(self, X, reset=True, skip_check_array=True)
            self.n_features_in_ = X_emb.shape[1]
        self.input_kind_ = kind
        self.dictionary_ = dictionary
        self.concept_names_ = dictionary.names
        self.image_mean_ = image_mean
        self.solver_ = solver
        return self

    # ------------------------------------------------------------ transform
    def transform(self, X):
        """Decompose ``X`` into sparse concept codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of images or texts
            Inputs of the kind seen in ``fit``.

        Returns
        -------
        codes : scipy.sparse.csr_matrix or ndarray of shape (n_samples, n_concepts)
            Nonnegative concept weights, dtype following the input (float32
            or float64).
        """
        check_is_fitted(self, "dictionary_")
        if _is_dask_collection(X):
            from ._dask import transform_dask

            return transform_dask(self, X)
        kind = self._input_kind(X)
        X_emb = self._embed(X, kind, fitted=True)
        codes, _ = solve_batched(
            X_emb, self.dictionary_.embeddings, self.l1, self.image_mean_,
            self.solver_, self.sparse_output, n_nonzero=self.n_nonzero,
        )
        return codes

    def decompose(self, X):
        """Codes together with the solver's per-sample diagnostics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of images or texts

        Returns
        -------
        codes : scipy.sparse.csr_matrix or ndarray of shape (n_samples, n_concepts)
        info : SolverResult
            Per-sample iterations, objective, relative duality gap and
            convergence flags (``info.codes`` is dropped to save memory).
        """
        check_is_fitted(self, "dictionary_")
        kind = self._input_kind(X)
        X_emb = self._embed(X, kind, fitted=True)
        return solve_batched(
            X_emb, self.dictionary_.embeddings, self.l1, self.image_mean_,
            self.solver_, self.sparse_output, n_nonzero=self.n_nonzero,
        )

    def embed(self, X):
        """The embeddings of ``X`` as this transformer decomposes them.

        Images and texts are encoded with the fitted encoder; embeddings are
        validated (dimension, finiteness) and returned as given.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of images or texts

        Returns
        -------
        X_emb : ndarray of shape (n_samples, n_features)
            Float32 or float64 embeddings (not yet normalised or centred).
        """
        check_is_fitted(self, "dictionary_")
        return self._embed(X, self._input_kind(X), fitted=True)

    def inverse_transform(self, X):
        """Dense reconstructions ``normalize(normalize(codes @ C) + mu)``.

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
        check_is_fitted(self, "dictionary_")
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

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or list of images or texts
        y : Ignored

        Returns
        -------
        score : float
        """
        check_is_fitted(self, "dictionary_")
        kind = self._input_kind(X)
        X_emb = self._embed(X, kind, fitted=True)
        codes, _ = solve_batched(
            X_emb, self.dictionary_.embeddings, self.l1, self.image_mean_,
            self.solver_, True, n_nonzero=self.n_nonzero,
        )
        X_hat = self.inverse_transform(codes)
        Xn = center_embeddings(X_emb, None)
        return float(np.mean(np.sum(Xn * X_hat, axis=1)))

    def get_feature_names_out(self, input_features=None):
        """Concept names, one per output column.

        Parameters
        ----------
        input_features : Ignored

        Returns
        -------
        feature_names_out : ndarray of str objects of shape (n_concepts,)
        """
        check_is_fitted(self, "dictionary_")
        return np.asarray(self.concept_names_, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def __getstate__(self):
        state = super().__getstate__()
        # a loaded CLIP model is rebuilt on demand, never pickled
        state.pop("_encoder_obj", None)
        return state

    # ------------------------------------------------------------ inputs
    def _input_kind(self, X):
        if self.input != "auto":
            return self.input
        return _guess_input_kind(X)

    def _embed(self, X, kind, *, fitted=False):
        """Validated embeddings for ``X`` of the given kind."""
        if kind == "embedding":
            X_emb = _check_embeddings(X)
            if fitted:
                _check_dimension(X_emb.shape[1], self.dictionary_.n_features, self._dictionary_source())
                validate_data(self, X, reset=False, skip_check_array=True)
            return X_emb
        emb = self._encode_raw(X, kind)
        X_emb = check_array(emb, dtype=[np.float64, np.float32])
        if fitted:
            _check_dimension(X_emb.shape[1], self.dictionary_.n_features, self._dictionary_source())
        return X_emb

    def _dictionary_source(self):
        if self.dictionary is not None:
            return "the dictionary passed as dictionary=..."
        return f"built with encoder={self.encoder!r}"

    # --- issue 3: encoders (begin) -------------------------------------------
    def _get_encoder(self):
        """The CLIP encoder, resolved once per (encoder, device) (open_clip weights load lazily)."""
        enc = getattr(self, "_encoder_obj", None)
        spec = getattr(self, "_encoder_spec", None)
        # set_params may have changed the encoder or the device since it was loaded
        stale = enc is None or spec is None or spec[1] != self.device or (
            spec[0] is not self.encoder and spec[0] != self.encoder
        )
        if stale:
            from .encoders import get_encoder

            # model weights live in open_clip's cache; ``cache_dir`` holds sksplice's data
            enc = get_encoder(self.encoder, device=self.device)
            self._encoder_obj = enc
            self._encoder_spec = (self.encoder, self.device)
        return enc

    def _encode_raw(self, X, kind):
        enc = self._get_encoder()
        if isinstance(X, (str, bytes, os.PathLike)):
            items = [X]
        elif isinstance(X, np.ndarray) and kind == "image":
            items = X  # one uint8 image, or a uint8 batch of shape (n, H, W, 3)
        else:
            items = list(X)
        if len(items) == 0:
            raise ValueError(f"X is empty: pass at least one {kind}.")
        if kind == "image":
            return enc.encode_images(items, batch_size=min(self.batch_size, 256))
        if isinstance(items, np.ndarray):
            items = items.ravel().tolist()
        return enc.encode_texts(items, batch_size=min(self.batch_size, 1024))

    def _resolve_dictionary(self, n_features=None):
        """The concept dictionary: given, or built (disk-cached) from the vocabulary.

        ``n_features`` (the input embeddings' dimension, when known) is checked
        against the encoder's before the vocabulary is encoded.
        """
        if self.dictionary is not None:
            return as_concept_dictionary(self.dictionary)
        from .concepts import build_dictionary

        enc = self._get_encoder()
        if n_features is not None and n_features != enc.embed_dim:
            # checked before the vocabulary is encoded (minutes on a CPU)
            raise ValueError(
                f"embedding dimension {n_features} does not match the {enc.embed_dim} of "
                f"encoder={self.encoder!r}: the embeddings come from another model. Pass the "
                "encoder that produced them (e.g. encoder='RN50:openai' for 1024-d OpenAI "
                "RN50 embeddings), or images with input='image'."
            )
        return build_dictionary(
            enc, self.vocabulary, vocabulary_size=self.vocabulary_size,
            prompt_template=self.prompt_template, cache_dir=self.cache_dir,
        )

    def _resolve_mean(self, X_emb, kind, dictionary):
        mean = self.image_mean
        d = dictionary.n_features
        if mean is None:
            return None
        if isinstance(mean, str) and mean == "fit":
            return center_embeddings(X_emb.astype(np.float64), None).mean(axis=0)
        if isinstance(mean, str) and mean == "auto":
            if kind == "text":
                # text is centred like the concepts: on the vocabulary's text mean
                return np.asarray(dictionary.text_mean, dtype=np.float64)
            ref = None
            # embeddings decomposed over a given dictionary need not come from ``encoder``
            if self.dictionary is None or kind == "image":
                from .means import get_reference_mean

                ref = get_reference_mean(self._get_encoder(), cache_dir=self.cache_dir)
            if ref is not None:
                return _check_mean(ref, d)
            warnings.warn(
                "image_mean='auto' found no reference image mean for these embeddings, "
                "so they are centred on the mean of the data passed to fit. A mean over a "
                "broad reference set (e.g. MSCOCO) is better: centring on one class's "
                "mean removes that class's own concept. Pass image_mean=<array> (e.g. "
                "sksplice.estimate_mean(encoder, reference_images)), image_mean='fit' to "
                "silence this, or image_mean=None.",
                CenteringWarning,
                stacklevel=3,
            )
            return center_embeddings(X_emb.astype(np.float64), None).mean(axis=0)
        return _check_mean(mean, d)

    # --- issue 3: encoders (end) ---------------------------------------------


def _check_embeddings(X):
    """2-D finite float32/float64 embeddings, or a ValueError naming the fix."""
    dtype = getattr(X, "dtype", None)
    if dtype is not None and (dtype.kind in "USO" and dtype != object):
        raise ValueError(
            f"X holds {dtype} data, not numeric embeddings; for texts pass input='text', "
            "for images a list of image paths (or input='image')."
        )
    try:
        return check_array(X, dtype=[np.float64, np.float32], ensure_min_samples=1)
    except ValueError as exc:
        if "convert" in str(exc) and "float" in str(exc) or "decimal numbers" in str(exc):
            raise ValueError(
                "X must be numeric embeddings of shape (n_samples, n_features); it holds "
                "non-numeric values. For texts pass input='text', for images a list of "
                "image paths (or input='image')."
            ) from exc
        raise


def _check_dimension(n_features, d, source):
    if n_features != d:
        raise ValueError(
            f"X has {n_features} features, but SpliceTransformer is expecting {d} "
            f"features as input: embedding dimension {n_features} does not match the "
            f"dictionary's {d}, so the embeddings come from another model than the "
            f"dictionary ({source}); encode both with the same CLIP model."
        )


def _check_mean(mean, d):
    mean = np.asarray(mean, dtype=np.float64).ravel() if not hasattr(mean, "numpy") else (
        np.asarray(mean.detach().cpu().numpy(), dtype=np.float64).ravel()
    )
    if mean.shape != (d,):
        raise ValueError(
            f"image_mean has shape {mean.shape} but the embeddings have {d} features; "
            "pass the mean of the same CLIP model's image embeddings."
        )
    if not np.all(np.isfinite(mean)):
        raise ValueError("image_mean contains NaN or inf; pass a finite mean vector.")
    return mean


def _is_dask_collection(X):
    return type(X).__module__.split(".")[0] == "dask"


def _guess_input_kind(X):
    """'embedding' for numeric 2-D data, 'image' for paths / PIL images / uint8 images."""
    if isinstance(X, (str, os.PathLike)):
        return "image"
    if isinstance(X, np.ndarray):
        if X.dtype == np.uint8 and X.ndim in (3, 4):
            return "image"
        return "embedding"
    if sp.issparse(X) or hasattr(X, "__array__") and not isinstance(X, (list, tuple)):
        return "embedding"
    if isinstance(X, (list, tuple)) and len(X) > 0:
        first = X[0]
        if isinstance(first, (str, os.PathLike)):
            if isinstance(first, str) and not _looks_like_path(first):
                raise ValueError(
                    f"X holds strings that are not image files (e.g. {first!r}); to "
                    "decompose text, pass input='text'."
                )
            return "image"
        if type(first).__module__.startswith("PIL"):
            return "image"
        if isinstance(first, np.ndarray) and first.dtype == np.uint8 and first.ndim == 3:
            return "image"
    return "embedding"


def _looks_like_path(s):
    return os.path.exists(s) or os.path.splitext(s)[1].lower() in {
        ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
    }


def splice_encode(X, dictionary, *, l1=0.25, image_mean=None, solver="auto", device="auto",
                  batch_size=1024, max_iter=None, tol=1e-6, sparse_output=True, n_jobs=None,
                  return_diagnostics=False, n_nonzero=None):
    """Decompose embeddings into sparse concept codes (function form).

    Shares its code path with :class:`SpliceTransformer` (it fits one on
    ``X`` and transforms ``X``).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Embeddings.
    dictionary : ConceptDictionary or (names, embeddings)
        The concept dictionary.
    l1 : float, default=0.25
        Sparsity penalty (reference-implementation scale).
    image_mean : ndarray of shape (n_features,), "fit" or None, default=None
        Modality mean subtracted before decomposition.
    solver, device, batch_size, max_iter, tol, sparse_output, n_jobs, n_nonzero
        As in :class:`SpliceTransformer`.
    return_diagnostics : bool, default=False
        Also return the solver's :class:`~sksplice.solvers.SolverResult`.

    Returns
    -------
    codes : scipy.sparse.csr_matrix or ndarray of shape (n_samples, n_concepts)
    info : SolverResult
        Only when ``return_diagnostics=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice import splice_encode
    >>> E = np.eye(4)
    >>> W = splice_encode(np.array([[2.0, 1.0, 0.0, 0.0]]), (["a", "b", "c", "d"], E),
    ...                   l1=0.1, device="cpu", sparse_output=False)
    >>> np.round(W, 3)
    array([[0.7  , 0.312, 0.   , 0.   ]])
    """
    est = SpliceTransformer(
        l1=l1, dictionary=dictionary, image_mean=image_mean, input="embedding",
        solver=solver, device=device, batch_size=batch_size, max_iter=max_iter, tol=tol,
        sparse_output=sparse_output, n_jobs=n_jobs, n_nonzero=n_nonzero,
    ).fit(X)
    codes, info = est.decompose(X)
    return (codes, info) if return_diagnostics else codes
