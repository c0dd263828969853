"""``CLIPEmbedder``: images or texts -> normalised CLIP embeddings, as a stateless transformer.

Put it in front of :class:`~sksplice.SpliceTransformer` (with
``input="embedding"``) so a pipeline can cache the expensive encoding step
(``Pipeline(memory=...)``) and grid-search ``l1`` on the embeddings.
"""

from __future__ import annotations

import numbers
import os

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

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

    _parameter_constraints: dict = {
        "encoder": "no_validation",
        "input": [StrOptions({"image", "text"})],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [str],
        "progress": ["boolean"],
    }

    def __init__(self, encoder="ViT-B-32:laion2b_s34b_b79k", *, input="image", batch_size=64,
                 device="auto", progress=False):
        self.encoder = encoder
        self.input = input
        self.batch_size = batch_size
        self.device = device
        self.progress = progress

    def _get_encoder(self):
        enc = getattr(self, "_encoder_obj", None)
        if enc is None:
            from .encoders import get_encoder

            enc = get_encoder(self.encoder, device=self.device)
            self._encoder_obj = enc
        return enc

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Validate the parameters; nothing is encoded.

        Parameters
        ----------
        X : Ignored
        y : Ignored

        Returns
        -------
        self : CLIPEmbedder
        """
        self._encoder_obj = None
        self.embed_dim_ = self._get_encoder().embed_dim
        return self

    def transform(self, X):
        """Embed images or texts.

        Parameters
        ----------
        X : sequence of images or str
            Inputs of the kind set by ``input``.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, embed_dim), dtype float32
            Unit-norm rows.
        """
        from .transformer import _is_dask_collection

        if _is_dask_collection(X):
            from ._dask import transform_dask

            return transform_dask(self, X)
        enc = self._get_encoder()  # stateless: works without fit
        if self.input == "text":
            if isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[1] == 1:
                X = X.ravel()  # a one-column frame / array of strings
            return enc.encode_texts(_as_list(X), batch_size=self.batch_size,
                                    progress=self.progress)
        return enc.encode_images(X if isinstance(X, np.ndarray) else _as_list(X),
                                 batch_size=self.batch_size, progress=self.progress)

    def get_feature_names_out(self, input_features=None):
        """``clipembedder0`` ... ``clipembedder{d-1}``.

        Parameters
        ----------
        input_features : Ignored

        Returns
        -------
        feature_names_out : ndarray of str objects of shape (embed_dim,)
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
        state.pop("_encoder_obj", None)  # the model is reloaded on demand, never pickled
        return state


def _as_list(X):
    if isinstance(X, (str, os.PathLike)):
        return [X]
    if hasattr(X, "tolist") and not isinstance(X, np.ndarray):
        return X.tolist()  # pandas Series
    return list(X)
