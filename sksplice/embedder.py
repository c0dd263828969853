"""``CLIPEmbedder``: images or texts -> normalised CLIP embeddings, as a stateless transformer.

Put it in front of :class:`~sksplice.SpliceTransformer` (with
``input="embedding"``) so a pipeline can cache the expensive encoding step
(``Pipeline(memory=...)``) and grid-search ``l1`` on the embeddings.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from . import _defaults
from ._inputs import as_rows, guess_kind, is_dask_collection

__all__ = ["CLIPEmbedder"]


class CLIPEmbedder(TransformerMixin, BaseEstimator):
    """Map images or texts to unit-norm CLIP embeddings (stateless).

    ``fit`` only validates the parameters and records the embedding
    dimension; the model loads lazily on the first ``transform`` and is never
    pickled (it is reloaded from ``encoder`` on demand).

    Parameters
    ----------
    encoder : str, tuple or Encoder, default="ViT-B-32:laion2b_s34b_b79k"
        Anything :func:`sksplice.get_encoder` accepts.
    input : {"image", "text"}, default="image"
        What ``X`` holds: images (paths, PIL images, uint8 arrays of shape
        (H, W, 3)) or strings.
    batch_size : int, default=64
        Inputs encoded at once.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    progress : bool, default=False
        Show a progress bar.

    Attributes
    ----------
    embed_dim_ : int
        Embedding dimension (number of output features).

    See Also
    --------
    SpliceTransformer : Decomposes the embeddings into sparse concept codes.

    Notes
    -----
    With ``Pipeline(memory=...)`` the cached result is keyed on ``X`` itself:
    for image paths that is the list of path strings, not the files' content.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice import CLIPEmbedder, Encoder
    >>> class Letters:  # a toy "model": counts of a, b, c in the text
    ...     def encode_image(self, images):
    ...         return np.ones((len(images), 3))
    ...     def encode_text(self, texts):
    ...         return np.array([[t.count(c) + 0.1 for c in "abc"] for t in texts])
    >>> emb = CLIPEmbedder(Encoder.from_model(Letters(), device="cpu"), input="text")
    >>> emb.fit_transform(["abc", "cc"]).shape
    (2, 3)
    >>> emb.get_feature_names_out()
    array(['clipembedder0', 'clipembedder1', 'clipembedder2'], dtype=object)
    """

    _doc_link_module = "sksplice"
    _doc_link_template = _defaults.API_PAGE_TEMPLATE

    _parameter_constraints: dict = {
        "encoder": "no_validation",
        "input": [StrOptions({"image", "text"})],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [str],
        "progress": ["boolean"],
    }

    def __init__(self, encoder=_defaults.ENCODER, *, input="image",
                 batch_size=_defaults.IMAGE_BATCH_SIZE,
                 device="auto", progress=False):
        self.encoder = encoder
        self.input = input
        self.batch_size = batch_size
        self.device = device
        self.progress = progress

    def _get_encoder(self):
        """The encoder, reloaded when ``set_params`` changed ``encoder`` or ``device``."""
        from .encoders import estimator_encoder

        return estimator_encoder(self)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Validate the parameters; nothing is encoded.

        Parameters
        ----------
        X : Ignored
            Present for API consistency (nothing is encoded).
        y : Ignored
            Present for API consistency.

        Returns
        -------
        self : CLIPEmbedder
            The fitted embedder.
        """
        self._encoder_obj = None  # a fit reloads the encoder
        self.embed_dim_ = self._get_encoder().embed_dim
        return self

    def transform(self, X):
        """Embed images or texts.

        Parameters
        ----------
        X : sequence of images or str, or a one-column pandas/polars DataFrame or Series
            Inputs of the kind set by ``input``, read row by row.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, embed_dim), dtype float32
            Unit-norm rows.
        """
        if is_dask_collection(X):
            from ._dask import transform_dask

            return transform_dask(self, X)
        return self.encode(X)

    def encode(self, X, *, return_tensor=False):
        """Embed images or texts, as a numpy array or as a tensor on the encoder's device.

        :meth:`transform` is ``encode(X)``; :class:`~sksplice.SpliceTransformer`
        encodes its image and text inputs through this method, and on a GPU
        asks for ``return_tensor=True`` so the embeddings stay there.

        Parameters
        ----------
        X : sequence of images or str, or a one-column pandas/polars DataFrame or Series
            Inputs of the kind set by ``input``, read row by row.
        return_tensor : bool, default=False
            Return a float32 torch tensor on the encoder's device.

        Returns
        -------
        embeddings : ndarray or Tensor of shape (n_samples, embed_dim), dtype float32
            Unit-norm rows.
        """
        enc = self._get_encoder()  # stateless: works without fit
        rows = as_rows(X)  # one row per sample, from any container
        if self.input == "text":
            if isinstance(rows, np.ndarray):
                rows = rows.ravel().tolist()
            bad = next((i for i, t in enumerate(rows) if not isinstance(t, str)), None)
            if bad is not None:
                raise TypeError(
                    f"X[{bad}] is a {type(rows[bad]).__name__}, not a string; with "
                    "input='text' every row must be a text."
                )
            emb = enc.encode_texts(list(rows), batch_size=self.batch_size,
                                   progress=self.progress, return_tensor=return_tensor)
        else:
            if isinstance(rows, np.ndarray) and rows.ndim == 3:
                rows = rows[None]  # one uint8 image
            if isinstance(rows, np.ndarray) and rows.dtype != np.uint8 or (
                isinstance(rows, list) and rows and guess_kind(rows) != "image"
            ):
                raise ValueError(
                    "CLIPEmbedder(input='image') needs images: paths, PIL images or uint8 "
                    f"arrays of shape (H, W, 3); got {_describe_rows(rows)}. For texts pass "
                    "input='text'."
                )
            emb = enc.encode_images(rows, batch_size=self.batch_size, progress=self.progress,
                                    return_tensor=return_tensor)
        if len(emb) != len(rows):
            raise ValueError(
                f"the encoder returned {len(emb)} embeddings for {len(rows)} {self.input} rows; an "
                "encoder must return one row per input."
            )
        return emb

    def get_feature_names_out(self, input_features=None):
        """``clipembedder0`` ... ``clipembedder{d-1}``.

        Parameters
        ----------
        input_features : Ignored
            Present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects of shape (embed_dim,)
            One name per embedding dimension.
        """
        dim = getattr(self, "embed_dim_", None) or self._get_encoder().embed_dim
        return np.asarray([f"clipembedder{i}" for i in range(dim)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_encoder_spec", None)
        state.pop("_encoder_obj", None)  # the model is reloaded on demand, never pickled
        return state


def _describe_rows(rows):
    if isinstance(rows, np.ndarray):
        return f"an array of shape {rows.shape} and dtype {rows.dtype}"
    return f"{len(rows)} rows starting with a {type(rows[0]).__name__}"
