"""The reference's ``load`` and ``SPLICE`` model, over :class:`~sksplice.SpliceTransformer`."""

from __future__ import annotations

import numpy as np

from .. import _defaults
from ..core import normalize_rows, recompose
from ..dictionary import ConceptDictionary
from ..encoders import ENCODER_ALIASES, get_encoder
from ..transformer import SpliceTransformer

__all__ = ["SPLICE", "available_models", "get_vocabulary", "load"]

#: The reference solvers -> sksplice's (both are exact solvers of one problem).
_SOLVERS = {"skl": "auto", "admm": "auto"}


def available_models():
    """The reference code's model names, by library, as its ``available_models()``.

    Returns
    -------
    models : dict of str to list of str
        ``{"clip": ["ViT-B/32", "ViT-B/16", "RN50"], "open_clip": ["ViT-B-32"]}``.

    Examples
    --------
    >>> from sksplice.compat import available_models
    >>> available_models()["clip"]
    ['ViT-B/32', 'ViT-B/16', 'RN50']
    """
    out = {}
    for alias in ENCODER_ALIASES:
        library, sep, model = alias.partition(":")
        if sep and library in ("clip", "open_clip"):
            out.setdefault(library, []).append(model)
    return out


def get_vocabulary(name, vocabulary_size, download_root=None):
    """The concept names of a vocabulary, as the reference's ``get_vocabulary``.

    Parameters
    ----------
    name : str
        ``"laion"``, ``"laion_bigrams"``, ``"mscoco"`` (or a file, or a list).
    vocabulary_size : int
        The most frequent concepts kept; ``-1`` (or any value <= 0, as in the
        reference) for all of them.
    download_root : str, default=None
        The cache folder (``None``: sksplice's, see
        :func:`sksplice.concepts.get_cache_dir`).

    Returns
    -------
    concepts : list of str
        Least to most frequent; blank lines are skipped.
    """
    from ..vocabularies import load_vocabulary

    size = -1 if vocabulary_size is None or vocabulary_size <= 0 else vocabulary_size
    return load_vocabulary(name, size, cache_dir=download_root)


def load(name, vocabulary, vocabulary_size=-1, device="auto", download_root=None, *,
         l1_penalty=0.01, solver="skl", return_weights=False, return_cosine=False,
         decomp_text=False, text_mean=None, image_mean=None, progress=False):
    """A :class:`SPLICE` model from a backbone name and a vocabulary, as the reference's ``load``.

    Parameters
    ----------
    name : str or tuple
        The reference's names (``"clip:ViT-B/32"``, ``"clip:ViT-B/16"``,
        ``"clip:RN50"``, ``"open_clip:ViT-B-32"``), or anything
        :func:`sksplice.get_encoder` accepts (``"ViT-B-32:openai"``, a
        checkpoint, a Hugging Face model...).  ``"ViT-B/32"`` alone is
        ambiguous (OpenAI's or LAION's weights) and raises, listing the choices.
    vocabulary : str, path-like or list of str
        ``"laion"``, ``"laion_bigrams"``, ``"mscoco"``, a file or a list.
    vocabulary_size : int, default=-1
        The most frequent concepts kept; ``-1`` (the reference's default) or
        any value <= 0 keeps the whole vocabulary.
    device : str, default="auto"
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    download_root : str, default=None
        Where vocabularies, means and dictionaries are cached (``None``:
        sksplice's cache folder).
    l1_penalty : float, default=0.01
        The reference's default; sksplice's estimators default to
        ``l1=0.25``.  Same scale in both.
    solver : str, default="skl"
        ``"skl"`` or ``"admm"`` (both run sksplice's exact solver), or a
        name from :func:`sksplice.list_solvers`.
    return_weights : bool, default=False
        ``encode_image`` returns the weights instead of the reconstruction.
    return_cosine : bool, default=False
        ``encode_image`` also returns the batch's summed cosine.
    decomp_text : bool, default=False
        ``encode_text`` decomposes text too.
    text_mean : array-like of shape (d,), default=None
        The text mean for ``decomp_text`` (``None``: the vocabulary's).
    image_mean : array-like of shape (d,), default=None
        The image mean (``None``: the backbone's registered MSCOCO mean).
    progress : bool, default=False
        Show progress bars while the vocabulary is encoded.

    Returns
    -------
    model : SPLICE
        The reference's interface over a fitted :class:`SpliceTransformer`.

    Raises
    ------
    ValueError
        An unknown or ambiguous name, or a backbone without a registered
        image mean (pass ``image_mean=``).
    """
    from ..concepts import build_dictionary
    from ..means import get_reference_mean

    enc = get_encoder(name, device=device)
    size = -1 if vocabulary_size is None or vocabulary_size <= 0 else vocabulary_size
    dictionary = build_dictionary(enc, vocabulary, vocabulary_size=size,
                                  cache_dir=download_root, progress=progress)
    if image_mean is None:
        image_mean = get_reference_mean(enc, cache_dir=download_root)
        if image_mean is None:
            raise ValueError(
                f"no reference image mean is registered for {name!r}; pass image_mean= (e.g. "
                "sksplice.estimate_mean(encoder, mscoco_images)). See sksplice.list_means()."
            )
    return SPLICE(image_mean, dictionary, clip=enc, solver=solver, l1_penalty=l1_penalty,
                  return_weights=return_weights, return_cosine=return_cosine,
                  decomp_text=decomp_text, text_mean=text_mean, device=device)


def _torch():
    import torch

    return torch


def _as_numpy(x):
    torch = _torch()
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


class SPLICE:
    """The reference code's ``SPLICE`` model, computed by a :class:`SpliceTransformer`.

    Parameters
    ----------
    image_mean : array-like or torch.Tensor of shape (d,)
        The image mean subtracted before decomposing.
    dictionary : ConceptDictionary, or array-like / torch.Tensor of shape (n_concepts, d)
        A :class:`~sksplice.ConceptDictionary`, or (as in the reference) the
        prepared dictionary itself: unit-norm, centred concept rows.
    clip : Encoder, str or object, default=None
        The backbone (anything :func:`sksplice.get_encoder` accepts).  ``None``:
        inputs are embeddings.
    solver : str, default="skl"
        ``"skl"`` or ``"admm"`` (both run sksplice's exact solver), or a name
        from :func:`sksplice.list_solvers`.
    l1_penalty : float, default=0.01
        Sparsity penalty (the reference's and sksplice's scale).
    return_weights : bool, default=False
        ``encode_image`` returns weights, not reconstructions.
    return_cosine : bool, default=False
        ``encode_image`` returns ``(output, cosine)``: the cosine between each
        normalised input and its reconstruction, summed over the batch.
    decomp_text : bool, default=False
        ``encode_text`` decomposes (else it returns normalised embeddings).
    text_mean : array-like or torch.Tensor of shape (d,), default=None
        Text mean for ``decomp_text`` (``None``: the dictionary's text mean).
    device : str, default="cpu"
        Where the decomposition and the returned tensors live.

    Attributes
    ----------
    transformer : SpliceTransformer
        The fitted estimator doing the work (``transformer.decompose_embeddings``).
    concepts : list of str
        The concept names, one per dictionary row.
    image_mean, dictionary, text_mean : torch.Tensor
        As in the reference.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice.compat import SPLICE
    >>> rng = np.random.default_rng(0)
    >>> C = rng.normal(size=(20, 8))
    >>> C /= np.linalg.norm(C, axis=1, keepdims=True)
    >>> model = SPLICE(np.zeros(8), C, l1_penalty=0.05, device="cpu")
    >>> model.return_weights = True
    >>> model.encode_image(C[[3]]).argmax().item()
    3
    """

    def __init__(self, image_mean, dictionary, clip=None, solver="skl", l1_penalty=0.01,
                 return_weights=False, return_cosine=False, decomp_text=False, text_mean=None,
                 device="cpu"):
        torch = _torch()
        if not isinstance(dictionary, ConceptDictionary):
            C = _as_numpy(dictionary)
            names = [f"concept_{i}" for i in range(C.shape[0])]
            dictionary = ConceptDictionary(names, C, center=False)
        self.concept_dictionary = dictionary
        self.concepts = dictionary.names.tolist()
        self.device = device
        self.clip = None if clip is None else get_encoder(clip, device=device)
        self.l1_penalty = l1_penalty
        self.solver = solver
        self.return_weights = return_weights
        self.return_cosine = return_cosine
        self.decomp_text = decomp_text
        mean = _as_numpy(image_mean).ravel()
        tmean = dictionary.text_mean if text_mean is None else _as_numpy(text_mean).ravel()
        self._mean = mean
        self._text_mean = tmean
        self.transformer = self._fitted(mean)
        self._raw = self._fitted(None)
        self._text = self._fitted(tmean)
        def as_t(a):
            return torch.tensor(np.asarray(a, dtype=np.float32))

        self.image_mean = as_t(mean)
        self.text_mean = as_t(tmean)
        self.dictionary = as_t(dictionary.embeddings)

    def _fitted(self, mean):
        solver = _SOLVERS.get(self.solver, self.solver)
        st = SpliceTransformer(
            l1=self.l1_penalty, dictionary=self.concept_dictionary, image_mean=mean,
            input="embedding", solver=solver, device=self.device, sparse_output=False,
            tol=_defaults.TOL,
        )
        return st.fit(None)

    # ----------------------------------------------------------- embeddings
    def _embed_images(self, image):
        torch = _torch()
        if isinstance(image, (torch.Tensor, np.ndarray)) and np.ndim(image) == 2:
            return _as_numpy(image)
        if self.clip is None:
            raise ValueError(
                "this SPLICE model has no backbone (clip=None): pass CLIP embeddings of shape "
                "(n, d), or build it with load(name, ...) to encode images."
            )
        if isinstance(image, torch.Tensor) and image.ndim == 4 and image.is_floating_point():
            model = self.clip.model  # preprocessed images, as the reference takes them
            with torch.inference_mode():
                out = model.encode_image(image.to(self.clip.device))
            return _as_numpy(getattr(out, "pooler_output", out))
        return self.clip.encode_images(image).astype(np.float64)

    def _embed_texts(self, text):
        torch = _torch()
        if isinstance(text, (torch.Tensor, np.ndarray)) and np.ndim(text) == 2 and not (
            isinstance(text, torch.Tensor) and not text.is_floating_point()
        ):
            return _as_numpy(text)
        if self.clip is None:
            raise ValueError(
                "this SPLICE model has no backbone (clip=None): pass text embeddings of shape "
                "(n, d), or build it with load(name, ...) to encode texts."
            )
        if isinstance(text, torch.Tensor):  # token ids, as the reference takes them
            with torch.inference_mode():
                out = self.clip.model.encode_text(text.to(self.clip.device))
            return _as_numpy(out)
        return self.clip.encode_texts([text] if isinstance(text, str) else list(text)).astype(
            np.float64)

    def _out(self, a):
        return _torch().tensor(np.asarray(a, dtype=np.float32))

    def _recompose(self, weights, mean):
        """``normalize(normalize(w @ C) + mean)`` of torch or numpy weights, as a tensor."""
        return self._out(recompose(_as_numpy(weights), self.concept_dictionary.embeddings,
                                   mean))

    # -------------------------------------------------------- the reference API
    def decompose(self, embedding):
        """Weights of centred embeddings (the reference's ``decompose``: no centring here).

        Parameters
        ----------
        embedding : torch.Tensor or ndarray of shape (n, d)
            Centred, unit-norm embeddings (rows are normalised first).

        Returns
        -------
        weights : torch.Tensor of shape (n, n_concepts)
            The exact nonnegative weights.
        """
        codes, _ = self._raw.decompose_embeddings(_as_numpy(embedding))
        return self._out(codes)

    def recompose_image(self, weights):
        """Dense reconstructions ``normalize(normalize(w @ C) + image_mean)``.

        Parameters
        ----------
        weights : torch.Tensor or ndarray of shape (n, n_concepts)
            Concept weights.

        Returns
        -------
        recon_image : torch.Tensor of shape (n, d)
            Unit-norm reconstructions.
        """
        return self._recompose(weights, self._mean)

    def recompose_text(self, weights):
        """Dense text reconstructions ``normalize(normalize(w @ C) + text_mean)``.

        Parameters
        ----------
        weights : torch.Tensor or ndarray of shape (n, n_concepts)
            Concept weights.

        Returns
        -------
        recon_text : torch.Tensor of shape (n, d)
            Unit-norm reconstructions.
        """
        return self._recompose(weights, self._text_mean)

    def encode_image(self, image):
        """Decompose images: reconstructions, or weights with ``return_weights``.

        Parameters
        ----------
        image : torch.Tensor of shape (n, 3, H, W), embeddings of shape (n, d), or images
            Preprocessed image tensors (as the reference takes), CLIP image
            embeddings, or paths / PIL images / uint8 arrays.

        Returns
        -------
        output : torch.Tensor or tuple
            The reconstructions (n, d), or the weights (n, n_concepts) when
            ``return_weights``; with ``return_cosine``, ``(output, cosine)``
            where ``cosine`` is the summed cosine between each normalised
            input and its reconstruction (a 0-d tensor).
        """
        emb = normalize_rows(self._embed_images(image))
        weights, _ = self.transformer.decompose_embeddings(emb)
        if self.return_weights and not self.return_cosine:
            return self._out(weights)
        recon = recompose(weights, self.concept_dictionary.embeddings, self._mean)
        out = self._out(weights) if self.return_weights else self._out(recon)
        if self.return_cosine:
            return out, _torch().as_tensor(float(np.sum(recon * emb)))
        return out

    def encode_text(self, text):
        """Text embeddings, decomposed when ``decomp_text``.

        Parameters
        ----------
        text : list of str, token ids (torch.Tensor of int), or embeddings of shape (n, d)
            The texts.

        Returns
        -------
        output : torch.Tensor
            Normalised embeddings; with ``decomp_text``, the weights (when
            ``return_weights``) or the reconstructions around the text mean.
        """
        emb = normalize_rows(self._embed_texts(text))
        if not self.decomp_text:
            return self._out(emb)
        weights, _ = self._text.decompose_embeddings(emb)
        if self.return_weights:
            return self._out(weights)
        return self.recompose_text(weights)

    def intervene_image(self, image, intervention_indices):
        """Decompose images with some concepts' weights set to zero.

        Parameters
        ----------
        image : torch.Tensor, ndarray or images
            As :meth:`encode_image` takes.
        intervention_indices : list of int
            Concept indices whose weights are zeroed after the decomposition.

        Returns
        -------
        output : torch.Tensor
            The edited weights (``return_weights``) or their reconstructions.
        """
        emb = normalize_rows(self._embed_images(image))
        weights, _ = self.transformer.decompose_embeddings(emb)
        weights = np.array(weights, dtype=np.float64)
        weights[:, list(intervention_indices)] = 0.0
        if self.return_weights:
            return self._out(weights)
        return self.recompose_image(weights)

    def forward(self, image, text):
        """Both encoders, as the reference's ``forward``.

        Parameters
        ----------
        image : torch.Tensor, ndarray or images
            As :meth:`encode_image` takes.
        text : list of str, token ids or embeddings
            As :meth:`encode_text` takes.

        Returns
        -------
        image, text : torch.Tensor
            :meth:`encode_image` and :meth:`encode_text` of the inputs.
        """
        return self.encode_image(image), self.encode_text(text)

    __call__ = forward

    def eval(self):
        """No-op, as ``torch.nn.Module.eval`` (the reference calls it); returns self.

        Returns
        -------
        self : SPLICE
            Unchanged.
        """
        return self

    def __repr__(self):
        return (f"SPLICE({len(self.concepts)} concepts, l1_penalty={self.l1_penalty}, "
                f"clip={self.clip!r})")
