"""Images -> exact SpLiCE codes with the estimator's public API, and the run's settings."""

from __future__ import annotations

import copy
import hashlib
import json
import weakref

import numpy as np
import scipy.sparse as sp

from .. import _defaults
from ..core import recompose, reconstruction_cosine
from ._files import read_images

__all__ = [
    "config_digest",
    "decompose_embeddings",
    "decompose_image_files",
    "embed_images",
    "image_transformer",
    "run_config",
]


def image_transformer(encoder, dictionary, image_mean, **params):
    """A fitted ``SpliceTransformer`` for images embedded by ``encoder``.

    Nothing is encoded: the dictionary and the mean are given, so fitting
    (``fit()`` without data) only validates them.  The transformer takes
    embeddings (``input="embedding"``); :func:`decompose_image_files` and
    :func:`~sksplice.shards.decompose_to_shards` embed image files with its
    ``encoder``.

    Parameters
    ----------
    encoder : Encoder
        The image encoder (kept as the transformer's ``encoder``).
    dictionary : ConceptDictionary
        Built with the same encoder (:func:`sksplice.build_dictionary`).
    image_mean : ndarray of shape (n_features,) or None
        The image mean subtracted before decomposing.
    **params : dict
        Other ``SpliceTransformer`` parameters (``l1``, ``solver``, ...).

    Returns
    -------
    transformer : SpliceTransformer
        Fitted, with ``input="embedding"``.
    """
    from ..transformer import SpliceTransformer

    est = SpliceTransformer(dictionary=dictionary, encoder=encoder, image_mean=image_mean,
                            input="embedding", **params)
    return est.fit(None)


def decompose_embeddings(estimator, X_emb):
    """The exact SpLiCE weights of embeddings, whatever input kind the estimator takes.

    Parameters
    ----------
    estimator : SpliceTransformer
        Fitted.
    X_emb : ndarray of shape (n_samples, n_features)
        Embeddings.

    Returns
    -------
    codes : scipy.sparse.csr_matrix of shape (n_samples, n_concepts)
        The weights, never rescaled.
    """
    codes, _ = estimator.decompose_embeddings(X_emb)
    return sp.csr_matrix(codes)


def embed_images(estimator, images, encoder=None):
    """Embed decoded images with the estimator's encoder (or ``encoder``).

    Parameters
    ----------
    estimator : SpliceTransformer
        Fitted; a view of it taking images embeds them (its encoder is loaded
        once and shared with ``estimator``).
    images : list of PIL.Image.Image
        Decoded images.
    encoder : Encoder, default=None
        Overrides the estimator's encoder.

    Returns
    -------
    X_emb : ndarray of shape (n_images, n_features)
        The image embeddings.
    """
    if encoder is not None:
        return np.asarray(encoder.encode_images(images, batch_size=max(len(images), 1)))
    if getattr(estimator, "input", None) not in ("image", "auto"):
        estimator = _image_view(estimator)
    return np.asarray(estimator.embed(list(images)))


_VIEWS = weakref.WeakKeyDictionary()


def _image_view(estimator):
    """A copy of a fitted estimator taking images, made once (it loads its encoder once)."""
    try:
        view = _VIEWS[estimator]
    except (KeyError, TypeError):
        view = None
    if (view is not None and view.encoder is estimator.encoder
            and view.device == estimator.device
            and view.dictionary_ is estimator.dictionary_):
        return view  # still the same model and fit
    view = copy.copy(estimator)  # shares the fitted state
    view.set_params(input="image")
    try:
        _VIEWS[estimator] = view
    except TypeError:  # not weak-referenceable: no cache
        pass
    return view


def decompose_image_files(estimator, paths, *, encoder=None,
                          batch_size=_defaults.IMAGE_BATCH_SIZE, strict=False,
                          progress=None):
    """Embed and decompose image files, skipping (and reporting) unreadable ones.

    The shared per-batch path of ``sksplice decompose``, ``decompose-dir`` and
    :func:`~sksplice.shards.decompose_to_shards`: at most ``batch_size``
    decoded images are in memory at once.

    Parameters
    ----------
    estimator : SpliceTransformer
        Fitted; its encoder embeds the images (or pass ``encoder``).
    paths : sequence of str or path
        Image files.
    encoder : Encoder, default=None
        Overrides the estimator's encoder.
    batch_size : int, default=64
        Images decoded and embedded at once.
    strict : bool, default=False
        Raise :class:`~sksplice.exceptions.BadImageError` on the first
        unreadable file instead of skipping it.
    progress : callable, default=None
        Called with the number of files handled after each batch.

    Returns
    -------
    codes : scipy.sparse.csr_matrix of shape (n_ok, n_concepts)
        Exact SpLiCE weights of the images that could be read, in input order.
    cosine : ndarray of shape (n_ok,)
        Cosine between each image embedding and its SpLiCE reconstruction.
    ok : ndarray of shape (n_ok,)
        Positions in ``paths`` of the rows of ``codes``.
    bad : list of (int, str)
        Positions in ``paths`` of the files that could not be read, with the
        error.
    """
    paths = list(paths)
    embs, ok, bad = [], [], []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images, ok_chunk, bad_chunk = read_images(chunk, strict)
        if images:
            embs.append(embed_images(estimator, images, encoder))
        ok.extend(start + i for i in ok_chunk)
        bad.extend((start + i, msg) for i, msg in bad_chunk)
        del images
        if progress is not None:
            progress(len(chunk))
    k = estimator.dictionary_.n_concepts
    if not embs:
        return sp.csr_matrix((0, k), dtype=np.float32), np.zeros(0), np.zeros(0, int), bad
    E = np.concatenate(embs)
    codes, cosine = codes_and_cosine(estimator, E)
    return codes, cosine, np.asarray(ok, dtype=int), bad


def codes_and_cosine(estimator, X_emb):
    """Exact weights of embeddings and the cosine of each to its reconstruction.

    Parameters
    ----------
    estimator : SpliceTransformer
        Fitted.
    X_emb : ndarray of shape (n_samples, n_features)
        Embeddings.

    Returns
    -------
    codes : scipy.sparse.csr_matrix of shape (n_samples, n_concepts)
        The exact weights.
    cosine : ndarray of shape (n_samples,)
        ``cos(x, recompose(codes))`` per row.
    """
    codes = decompose_embeddings(estimator, X_emb)
    X_hat = recompose(codes, estimator.dictionary_.embeddings, estimator.image_mean_)
    return codes, reconstruction_cosine(X_emb, X_hat)


def _names_digest(names):
    h = hashlib.sha256()
    for n in names:
        h.update(str(n).encode("utf-8") + b"\0")
    return h.hexdigest()


def run_config(estimator, encoder_identity, shard_size):
    """The settings that determine a decomposition's codes (compared on resume).

    Parameters
    ----------
    estimator : SpliceTransformer
        Fitted.
    encoder_identity : str
        What names the encoder's weights.
    shard_size : int or None
        Images per shard (``None`` for Dask bags: their partitions).

    Returns
    -------
    config : dict
        Plain JSON values.
    """
    mean = estimator.image_mean_
    return {
        "encoder": str(encoder_identity),
        "n_concepts": int(estimator.dictionary_.n_concepts),
        "concepts_sha256": _names_digest(estimator.dictionary_.names),
        "dictionary_sha256": hashlib.sha256(
            np.ascontiguousarray(estimator.dictionary_.embeddings).tobytes()
        ).hexdigest(),
        "image_mean_sha256": None if mean is None else hashlib.sha256(
            np.ascontiguousarray(mean, dtype=np.float64).tobytes()
        ).hexdigest(),
        "l1": float(estimator.l1),
        "n_nonzero": getattr(estimator, "n_nonzero", None),
        "solver": str(estimator.solver),
        "tol": float(estimator.tol),
        "max_iter": estimator.max_iter,
        "shard_size": None if shard_size is None else int(shard_size),
    }


def config_digest(config):
    """A digest of :func:`run_config`'s settings, stored in every shard.

    Parameters
    ----------
    config : dict
        The run's settings.

    Returns
    -------
    digest : str
        Hex SHA-256 of the settings as canonical JSON.
    """
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode("utf-8")).hexdigest()
