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

from .._inputs import check_dimension, check_mean
from .._utils import user_stacklevel
from ..core import center_embeddings
from ..dictionary import as_concept_dictionary
from ..exceptions import CenteringWarning, ModelMismatchWarning

__all__ = ["ModelsMixin"]

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
        from ..encoders._factory import estimator_encoder

        return estimator_encoder(self)

    def _encode(self, rows, kind, source=None):
        """Encode image or text rows (one encoder call per batch); checks the row count."""
        if isinstance(rows, np.ndarray) and kind == "image" and rows.ndim == 3:
            rows = rows[None]  # one uint8 image
        if len(rows) == 0:
            raise ValueError(f"X is empty: pass at least one {kind}.")
        enc = self._get_encoder()
        # in fit, compare with what this fit resolved (``source``), not a previous fit
        self._warn_model_mismatch(enc, source if source is not None else getattr(
            self, "_model_source", None))
        progress = bool(self.verbose)
        if kind == "image":
            emb = enc.encode_images(rows, batch_size=min(self.batch_size, 256),
                                    progress=progress)
        else:
            if isinstance(rows, np.ndarray):
                rows = rows.ravel().tolist()
            emb = enc.encode_texts(list(rows), batch_size=min(self.batch_size, 1024),
                                   progress=progress)
        if len(emb) != len(rows):
            raise ValueError(
                f"the encoder returned {len(emb)} embeddings for {len(rows)} {kind} rows; "
                "an encoder must return one row per input."
            )
        return emb

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
        return center_embeddings(X_emb.astype(np.float64), None).mean(axis=0), X_emb, source
