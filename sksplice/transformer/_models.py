"""Where the transformer's model pieces come from: encoder, dictionary, mean.

Everything here runs in ``fit`` (or lazily after it) and encodes only what it
must: images are encoded to learn a mean only when no reference mean exists.
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
from sklearn.utils.validation import check_array

from .. import _defaults
from .._inputs import check_dimension, check_mean
from .._utils import user_stacklevel
from ..dictionary import as_concept_dictionary
from ..exceptions import CenteringWarning, ModelMismatchWarning
from ._function import fit_mean

__all__ = ["ModelsMixin"]


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _same(value, default):
    """Whether a parameter is at its default (strings and numbers, never arrays)."""
    return type(value) is type(default) and value == default

logger = logging.getLogger("sksplice")

#: Dictionaries built in this process, by what determines them: clones fitted in
#: one process (cross-validation, grid search) share one, instead of re-reading
#: the disk cache each (other processes share the disk cache, whose build is
#: locked so a cold cache is encoded once).  Only encoders with a stable identity
#: are memoised; a vocabulary file is keyed by its path, size and mtime.
_MEMO = {}
_MEMO_SIZE = 2


def _memo_key(enc, vocabulary, size, template, cache_dir):
    """What determines a built dictionary, or None when it cannot be keyed safely."""
    identity = getattr(enc, "identity", None)
    if identity is None:
        return None
    if isinstance(vocabulary, (list, tuple)):
        vocab = ("list", tuple(vocabulary))
    else:
        path = os.fspath(vocabulary)
        try:
            st = os.stat(path)
        except OSError:  # a registered name (its file is pinned by digest)
            vocab = ("name", path)
        else:
            vocab = ("file", os.path.abspath(path), st.st_size, st.st_mtime_ns)
    precision = getattr(enc, "precision", None)
    return identity, precision, vocab, size, template, os.fspath(cache_dir or "") or (
        os.environ.get("SKSPLICE_CACHE", "")
    )


class ModelsMixin:
    """Encoder, dictionary and mean resolution for :class:`SpliceTransformer`."""

    def _dictionary_source(self):
        if self.dictionary is not None:
            return "the dictionary passed as dictionary=..."
        return f"built with encoder={self.encoder!r}"

    def _get_encoder(self):
        """The CLIP encoder, resolved once per (encoder, device) (weights load lazily)."""
        from ..encoders import estimator_encoder

        return estimator_encoder(self)

    def _encode(self, rows, kind, source=None, return_tensor=False):
        """Encode image or text rows with :class:`~sksplice.CLIPEmbedder` (the one encoder path).

        ``source`` is the model the dictionary or mean came from (in ``fit``,
        what this fit resolved, not a previous fit's).
        """
        from ..embedder import CLIPEmbedder

        if len(rows) == 0:
            raise ValueError(f"X is empty: pass at least one {kind}.")
        enc = self._get_encoder()
        self._warn_model_mismatch(enc, source if source is not None else getattr(
            self, "_model_source", None))
        batch = min(self.batch_size, 256 if kind == "image" else 1024)
        embedder = CLIPEmbedder(enc, input=kind, batch_size=batch, device=self.device,
                                progress=bool(self.verbose))
        return embedder.encode(rows, return_tensor=return_tensor)

    def _warn_unused(self, kind):
        """Warn when ``dictionary=`` is given and a parameter that only builds one is set.

        ``encoder`` still encodes image and text inputs, so it is named only
        when ``fit`` saw embeddings.
        """
        if self.dictionary is None:
            return
        names = ["vocabulary", "vocabulary_size"] + (["encoder"] if kind == "embedding" else [])
        defaults = {"encoder": _defaults.ENCODER, "vocabulary": _defaults.VOCABULARY,
                    "vocabulary_size": _defaults.VOCABULARY_SIZE}
        unused = [f"{n}={_short(getattr(self, n))}" for n in names
                  if not _same(getattr(self, n), defaults[n])]
        if unused:
            one = len(unused) == 1
            warnings.warn(
                f"{', '.join(unused)} {'is' if one else 'are'} unused: dictionary= is given, "
                f"and {'this parameter builds' if one else 'these parameters build'} a "
                "dictionary only when dictionary=None"
                + (" (encoder also encodes image and text inputs, but fit got embeddings)"
                   if any(u.startswith("encoder=") for u in unused) else "")
                + ". Leave it at its default, or pass dictionary=None to build the dictionary "
                "from it.", UserWarning, stacklevel=user_stacklevel(),
            )

    def _warn_model_mismatch(self, enc, source):
        """Warn when ``enc`` is not ``source``, the model the dictionary or mean came from."""
        identity = getattr(enc, "identity", None)
        if source and identity and source != identity:
            warnings.warn(
                f"the inputs are encoded by {identity!r} but the dictionary or mean came "
                f"from {source!r}: codes over another model's concepts are meaningless. "
                "Refit after set_params(encoder=...), or encode with the model the "
                "dictionary was built with.",
                ModelMismatchWarning, stacklevel=user_stacklevel(),
            )

    def _resolve_dictionary(self, n_features=None):
        """The concept dictionary and the identity of the model it came from.

        ``n_features`` (the input embeddings' dimension, when known) is checked
        against the encoder's before the vocabulary is encoded.
        """
        if self.dictionary is not None:
            dictionary = as_concept_dictionary(self.dictionary)
            return dictionary, dictionary.metadata.get("encoder")
        from ..concepts import build_dictionary

        enc = self._get_encoder()
        if n_features is not None and n_features != enc.embed_dim:
            # checked before the vocabulary is encoded (minutes on a CPU)
            raise ValueError(
                f"embedding dimension {n_features} does not match the {enc.embed_dim} of "
                f"encoder={self.encoder!r}: the embeddings come from another model. Pass the "
                "encoder that produced them (e.g. encoder='RN50:openai' for 1024-d OpenAI "
                "RN50 embeddings), or images with input='image'."
            )
        key = _memo_key(enc, self.vocabulary, self.vocabulary_size, self.prompt_template,
                        self.cache_dir)
        dictionary = _MEMO.get(key) if key is not None else None
        if dictionary is None:
            logger.info("building the concept dictionary of %r with %r", self.vocabulary,
                        getattr(enc, "identity", None))
            # ``vocabulary_size=-1`` keeps the whole vocabulary, as in the reference code
            dictionary = build_dictionary(
                enc, self.vocabulary, vocabulary_size=self.vocabulary_size,
                prompt_template=self.prompt_template, cache_dir=self.cache_dir,
                progress=bool(self.verbose),
            )
            if key is not None:
                _MEMO[key] = dictionary
                while len(_MEMO) > _MEMO_SIZE:
                    _MEMO.pop(next(iter(_MEMO)))
        return dictionary, dictionary.metadata.get("encoder") or getattr(enc, "identity", None)

    def _resolve_mean(self, X, rows, kind, X_emb, dictionary, source):
        """(mean, fit embeddings or None, model identity) -- encodes only when needed."""
        mean = self.image_mean
        d = dictionary.n_features
        if mean is None:
            return None, X_emb, source
        if not isinstance(mean, str):
            return check_mean(mean, d), X_emb, source
        if mean == "auto":
            if kind == "text":
                # text is centred like the concepts: on the vocabulary's text mean
                return np.asarray(dictionary.text_mean, dtype=np.float64), X_emb, source
            # embeddings decomposed over a given dictionary need not come from ``encoder``
            if self.dictionary is None or kind == "image":
                from ..means import get_reference_mean

                enc = self._get_encoder()
                ref = get_reference_mean(enc, cache_dir=self.cache_dir)
                if ref is not None and np.size(ref) == d:
                    if kind == "image":
                        self._warn_model_mismatch(enc, source)
                    return check_mean(ref, d), X_emb, source or enc.identity
        if X is None:
            raise ValueError(
                f"image_mean={mean!r} learns the mean from the data passed to fit, but fit "
                "got X=None; pass X, or image_mean=<array> or None."
            )
        if mean == "auto":
            warnings.warn(
                "image_mean='auto' found no reference image mean for these embeddings, "
                "so they are centred on the mean of the data passed to fit. A mean over a "
                "broad reference set (e.g. MSCOCO) is better: centring on one class's "
                "mean removes that class's own concept. Pass image_mean=<array> (e.g. "
                "sksplice.estimate_mean(encoder, reference_images)), image_mean='fit' to "
                "silence this, or image_mean=None.",
                CenteringWarning,
                stacklevel=user_stacklevel(),
            )
        if X_emb is None:
            X_emb = check_array(self._encode(rows, kind, source or ""),
                                dtype=[np.float64, np.float32])
            check_dimension(X_emb.shape[1], d, self._dictionary_source())
        return fit_mean(X_emb), X_emb, source
