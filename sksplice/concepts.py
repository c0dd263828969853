"""Building concept dictionaries from a vocabulary and a CLIP encoder, cached on disk.

This module owns :func:`build_dictionary`, the one way the package turns a
vocabulary and an encoder into a :class:`~sksplice.ConceptDictionary` (the
data class itself, and its maths, live in :mod:`sksplice.dictionary`).
:func:`build_dictionary` encodes each concept (through the prompt template)
with the encoder's text tower, normalises the embeddings, and builds the
:class:`~sksplice.ConceptDictionary` (subtract the vocabulary mean,
normalise).  The normalised embeddings are cached under
``<cache_dir>/dictionaries/`` keyed by everything that changes them: the
encoder's identity (model and tag, or the checkpoint's SHA-256), the
vocabulary's content, the prompt template, the encoding precision and the
sksplice version.  A cache entry is written to a temporary file and moved
into place atomically, so an interrupted run never leaves a corrupt entry; a
damaged entry is detected on load and rebuilt.

Concurrent builds of one entry (``GridSearchCV(n_jobs=2)`` on a cold cache,
or several processes) wait on a lock file under ``<cache_dir>/locks/``: the
first encodes the vocabulary, the others then read its entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings

import numpy as np

from ._defaults import PROMPT_TEMPLATE, VOCABULARY
from ._download import get_cache_dir
from ._io import MAX_ARRAY_BYTES, atomic_write, open_regular
from ._version import __version__
from .dictionary import ConceptDictionary
from .vocabularies import check_vocabulary_size, load_vocabulary

__all__ = ["build_dictionary", "dictionary_cache_key", "get_cache_dir", "vocabulary_digest"]

_FORMAT = 1

#: Longest prompt template accepted (characters).
MAX_TEMPLATE_LENGTH = 1000

#: Seconds a build waits for another process building the same entry.
LOCK_TIMEOUT = 3600


def vocabulary_digest(concepts):
    """SHA-256 of a concept list (order and content).

    Parameters
    ----------
    concepts : sequence of str
        The concepts, in order.

    Returns
    -------
    digest : str
        64 hexadecimal digits; any change of content or order changes it.

    Examples
    --------
    >>> from sksplice.concepts import vocabulary_digest
    >>> vocabulary_digest(["cat", "dog"]) == vocabulary_digest(["cat", "dog"])
    True
    >>> vocabulary_digest(["cat", "dog"]) == vocabulary_digest(["dog", "cat"])
    False
    """
    h = hashlib.sha256()
    for c in concepts:
        h.update(c.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def dictionary_cache_key(identity, concepts, prompt_template=PROMPT_TEMPLATE, precision="fp32"):
    """The cache key of a concept dictionary (a SHA-256 hex string).

    Parameters
    ----------
    identity : str
        The encoder's :attr:`~sksplice.encoders.Encoder.identity`.
    concepts : sequence of str
        The vocabulary, in order.
    prompt_template : str, default=sksplice._defaults.PROMPT_TEMPLATE
        The template each concept is encoded through.
    precision : str, default="fp32"
        The encoding precision (``"fp32"`` or ``"fp16"``).

    Returns
    -------
    key : str
        SHA-256 over these fields, the cache format and the sksplice version.
    """
    fields = {
        "format": _FORMAT,
        "encoder": identity,
        "vocabulary": vocabulary_digest(concepts),
        "prompt_template": prompt_template,
        "precision": precision,
        "sksplice": __version__,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _check_template(prompt_template):
    import string

    if not isinstance(prompt_template, str):
        raise ValueError(  # noqa: TRY004 - as every bad value
            f"prompt_template={prompt_template!r} must be a string such as '{{}}'.")
    if len(prompt_template) > MAX_TEMPLATE_LENGTH:
        raise ValueError(
            f"prompt_template has {len(prompt_template)} characters (at most "
            f"{MAX_TEMPLATE_LENGTH}); CLIP reads 77 tokens: use a short template such as "
            "'a photo of {}'."
        )
    bad_format = ValueError(
        f"prompt_template={prompt_template!r} is not a valid format string; use one '{{}}' "
        "for the concept and escape literal braces as '{{{{' and '}}}}'."
    )
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(prompt_template)
                  if f is not None]
    except ValueError:
        raise bad_format from None
    if [f for f, _, _ in fields] != [""]:
        raise ValueError(
            f"prompt_template={prompt_template!r} must contain exactly one '{{}}' where the "
            "concept goes, e.g. '{}' (the paper) or 'a photo of {}'."
        )
    _, spec, conv = fields[0]
    if spec or conv:  # '{:>999999999}' would allocate gigabytes per concept
        raise ValueError(
            f"prompt_template={prompt_template!r} has a format specification or conversion in "
            "its '{}'; use a plain '{}' where the concept goes."
        )


def build_dictionary(encoder, vocabulary=VOCABULARY, *, vocabulary_size=None,
                     prompt_template=PROMPT_TEMPLATE, clean=False, cache_dir=None, offline=None,
                     progress=False, batch_size=256, cache=True):
    """The SpLiCE concept dictionary of a vocabulary under a CLIP encoder (disk-cached).

    Parameters
    ----------
    encoder : Encoder, str or tuple
        The backbone (anything :func:`sksplice.get_encoder` accepts).
    vocabulary : str, path-like or sequence of str, default=sksplice._defaults.VOCABULARY
        A built-in vocabulary name, a text file or a list of concepts (see
        :func:`sksplice.load_vocabulary`).
    vocabulary_size : int or None, default=None
        Keep the ``vocabulary_size`` most frequent concepts; ``-1``: the whole
        vocabulary; ``None``: the vocabulary's default size (10,000 for
        ``"laion"``, everything for a file or a list).
    prompt_template : str, default=sksplice._defaults.PROMPT_TEMPLATE
        Each concept is encoded as ``prompt_template.format(concept)``: one
        plain ``{}``, no format specification.
    clean : bool, default=False
        Drop stopwords, numbers and punctuation-only concepts first.
    cache_dir : str or path-like, default=None
        Where vocabularies and dictionaries are cached (see
        :func:`get_cache_dir`).
    offline : bool or None, default=None
        Never download (``None``: ``SKSPLICE_OFFLINE`` / ``HF_HUB_OFFLINE``).
    progress : bool, default=False
        Show tqdm progress bars (on stderr) while encoding the vocabulary
        (nothing is shown on a cache hit).
    batch_size : int, default=256
        Concepts encoded at once.
    cache : bool, default=True
        Read and write the disk cache.  Encoders without a stable identity
        (random weights, unnamed user objects) are never cached.

    Returns
    -------
    dictionary : ConceptDictionary
        ``metadata`` records the encoder, vocabulary, prompt template and the
        cache file (``metadata["cache_hit"]`` says whether it was loaded).

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice import Encoder, build_dictionary
    >>> class Letters:  # a toy "model": counts of a, b, c in the text
    ...     def encode_image(self, images):
    ...         return np.ones((len(images), 3))
    ...     def encode_text(self, texts):
    ...         return np.array([[t.count(c) + 0.1 for c in "abc"] for t in texts])
    >>> enc = Encoder.from_model(Letters(), name="letters", device="cpu")
    >>> cd = build_dictionary(enc, ["aa", "bb", "cc"], cache=False)
    >>> cd.names.tolist(), cd.embeddings.shape
    (['aa', 'bb', 'cc'], (3, 3))
    """
    from .encoders import get_encoder

    _check_template(prompt_template)
    check_vocabulary_size(vocabulary_size)
    enc = get_encoder(encoder, offline=offline)
    concepts = load_vocabulary(vocabulary, vocabulary_size, clean=clean, cache_dir=cache_dir,
                               offline=offline)
    # the model the concepts came from: recorded even when the cache is off, so a
    # later encoder can be compared with it (a model without an identity has none)
    identity = enc.identity
    metadata = {
        "encoder": identity,
        "vocabulary": vocabulary if isinstance(vocabulary, str) else (
            os.fspath(vocabulary) if isinstance(vocabulary, os.PathLike) else "<list>"),
        "vocabulary_size": len(concepts),
        "prompt_template": prompt_template,
        "cache_hit": False,
        "cache_file": None,
    }
    path = None
    if cache and identity is not None:
        key = dictionary_cache_key(identity, concepts, prompt_template, enc.precision)
        path = get_cache_dir(cache_dir) / "dictionaries" / f"{key[:40]}.npz"
        metadata["cache_file"] = str(path)
        raw = _read_entry(path, key, concepts)
        if raw is not None:
            metadata["cache_hit"] = True
            return ConceptDictionary(concepts, raw, metadata=metadata)
        with _build_lock(get_cache_dir(cache_dir) / "locks" / f"{key[:40]}.lock"):
            raw = _read_entry(path, key, concepts)  # another process may have built it
            if raw is not None:
                metadata["cache_hit"] = True
                return ConceptDictionary(concepts, raw, metadata=metadata)
            raw = _encode(enc, concepts, prompt_template, batch_size, progress)
            _write_entry(path, key, concepts, raw, identity, prompt_template)
        return ConceptDictionary(concepts, raw, metadata=metadata)
    raw = _encode(enc, concepts, prompt_template, batch_size, progress)
    return ConceptDictionary(concepts, raw, metadata=metadata)


def _encode(enc, concepts, prompt_template, batch_size, progress):
    texts = [prompt_template.format(c) for c in concepts]
    return enc.encode_texts(texts, batch_size=batch_size, progress=progress)


def _build_lock(path):
    """A cross-process lock on ``path`` (a no-op context when the folder is not writable)."""
    import contextlib

    from filelock import FileLock

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=LOCK_TIMEOUT)
        lock.acquire()
    except OSError:  # read-only or invalid cache folder: build without the lock
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def held():
        try:
            yield
        finally:
            lock.release()

    return held()


def _read_entry(path, key, concepts):
    """The cached normalised embeddings, or None (a damaged entry is removed)."""
    if not path.is_file():
        return None
    try:
        with open_regular(path, "dictionary cache entry", MAX_ARRAY_BYTES) as f, \
                np.load(f, allow_pickle=False) as data:
            stored_key = str(data["key"])
            names = data["names"]
            raw = np.asarray(data["embeddings"], dtype=np.float32)
        ok = (
            stored_key == key
            and names.shape == (len(concepts),)
            and names.tolist() == list(concepts)
            and raw.ndim == 2 and raw.shape[0] == len(concepts)
            and bool(np.all(np.isfinite(raw)))
        )
    except Exception as e:  # noqa: BLE001 - truncated zip, missing array, bad dtype...
        ok = False
        reason = f"{type(e).__name__}: {e}"
    else:
        reason = "its content does not match its key"
    if ok:
        return raw
    warnings.warn(
        f"the cached concept dictionary {path} is damaged ({reason}); it is removed and "
        "the dictionary re-encoded.",
        RuntimeWarning,
        stacklevel=3,
    )
    try:
        path.unlink()
    except OSError:
        pass
    return None


def _write_entry(path, key, concepts, raw, identity, prompt_template):
    """Write a cache entry atomically (temporary file + ``os.replace``); failures only warn."""
    try:
        atomic_write(path, lambda f: np.savez(
            f, key=np.asarray(key), names=np.asarray(list(concepts), dtype=str),
            embeddings=np.asarray(raw, dtype=np.float32),
            encoder=np.asarray(identity), prompt_template=np.asarray(prompt_template),
            version=np.asarray(__version__),
        ))
    except OSError as e:
        warnings.warn(f"cannot write the dictionary cache {path} ({e}); the dictionary "
                      "will be re-encoded next time. Set cache_dir or SKSPLICE_CACHE to a "
                      "writable folder.", RuntimeWarning, stacklevel=3)
