"""Concept vocabularies: the SpLiCE reference lists, custom lists and files, and a builder.

A vocabulary is a list of concept strings ordered from least to most
frequent, so the ``vocabulary_size`` most frequent concepts are the last
entries (the convention of the SpLiCE reference files).  The built-in
vocabularies are plain data in :data:`VOCABULARIES`, downloaded on first use
and checked against pinned SHA-256 digests (see :mod:`sksplice._download`).

``vocabulary_size`` means the same everywhere: a positive ``n`` keeps the
``n`` most frequent concepts, ``-1`` keeps the whole vocabulary (the SpLiCE
reference code's convention) and ``None`` keeps the vocabulary's default
size (a built-in vocabulary's ``default_size``, everything for a file or a
list).

Reading a file differs from the reference code in one way: blank lines are
skipped.  ``mscoco.txt`` has one, which the reference keeps as an empty
concept (so its indices from there on are shifted by one).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ._defaults import VOCABULARY, VOCABULARY_SIZE
from ._download import DEFAULT_DATA_URL, fetch
from ._io import read_text, split_lines
from ._utils import duplicates, suggest
from .encoders import looks_like_path, shorten

__all__ = [
    "ENGLISH_STOPWORDS",  # noqa: F822 - made on first use, by __getattr__
    "MAX_CONCEPT_LENGTH",
    "VISUAL_WORDS",
    "VOCABULARIES",
    "build_vocabulary",
    "check_vocabulary_size",
    "clean_vocabulary",
    "list_vocabularies",
    "load_vocabulary",
]

#: The SpLiCE reference vocabularies: name -> where to get the file and its pinned digest.
VOCABULARIES = {
    "laion": {
        "path": "vocab/laion.txt",
        "url": DEFAULT_DATA_URL + "vocab/laion.txt",
        "sha256": "aee8e260477dcfbc873f939955ffd472969859054ed46e245bbe8b37d10b508c",
        "description": "37,445 single words from LAION-400m captions (the paper's default: "
                       "the 10,000 most frequent)",
        "size": 262543,
        "default_size": VOCABULARY_SIZE,
    },
    "laion_bigrams": {
        "path": "vocab/laion_bigrams.txt",
        "url": DEFAULT_DATA_URL + "vocab/laion_bigrams.txt",
        "sha256": "6561525228843aa8b0d2b27e731c8c2b18dac0e4bdda40761933b0aecda1e67a",
        "description": "10,000 words and 5,000 two-word phrases from LAION-400m captions",
        "size": 141006,
        "default_size": 15000,
    },
    "mscoco": {
        "path": "vocab/mscoco.txt",
        "url": DEFAULT_DATA_URL + "vocab/mscoco.txt",
        "sha256": "ddd84fc591b2e49c1513cc3dcc199153df276a44686712e21a6efb7711e2d43b",
        "description": "12,832 words from MSCOCO captions (and one blank line, skipped)",
        "size": 94795,
        "default_size": VOCABULARY_SIZE,
    },
}

#: Words of scikit-learn's stop-word list that name or describe things in images
#: ("fire", "top", "front"...): kept as concepts.
VISUAL_WORDS = frozenset({
    "back", "bill", "bottom", "cry", "empty", "fire", "front", "full", "mill", "side", "system",
    "thick", "thin", "top", "well",
})



def __getattr__(name):
    """``ENGLISH_STOPWORDS``, made on first use (scikit-learn's text module loads slowly)."""
    if name == "ENGLISH_STOPWORDS":
        return _english_stopwords()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _english_stopwords():
    """English stop words dropped by ``clean=True`` and by :func:`build_vocabulary`.

    scikit-learn's ``ENGLISH_STOP_WORDS`` less :data:`VISUAL_WORDS` (its own
    documentation warns that the list holds content words); importable as
    ``sksplice.vocabularies.ENGLISH_STOPWORDS``, built on first use so that
    importing this module (as the command line does) does not load
    ``sklearn.feature_extraction``.
    """
    words = globals().get("ENGLISH_STOPWORDS")
    if words is None:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        words = globals()["ENGLISH_STOPWORDS"] = ENGLISH_STOP_WORDS - VISUAL_WORDS
    return words

#: Longest concept accepted (characters); CLIP reads 77 tokens, and longer strings
#: only cost tokenizer time.
MAX_CONCEPT_LENGTH = 1000

#: Largest vocabulary file read (bytes).
MAX_FILE_BYTES = 256 * 1024 * 1024

# words (with inner apostrophes) and single punctuation marks, which break phrases
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]")


def list_vocabularies():
    """Names of the built-in vocabularies.

    Returns
    -------
    names : list of str
        Keys of :data:`VOCABULARIES` (``"laion"``, ``"laion_bigrams"``,
        ``"mscoco"``).

    Examples
    --------
    >>> from sksplice import list_vocabularies
    >>> list_vocabularies()
    ['laion', 'laion_bigrams', 'mscoco']
    """
    return list(VOCABULARIES)


def check_vocabulary_size(vocabulary_size):
    """Validate ``vocabulary_size``: a positive int, ``-1`` (everything) or None (the default).

    Parameters
    ----------
    vocabulary_size : int or None
        The value to check.

    Returns
    -------
    vocabulary_size : int or None
        Unchanged.

    Raises
    ------
    ValueError
        Any other value; the message states the three meanings.

    Examples
    --------
    >>> from sksplice.vocabularies import check_vocabulary_size
    >>> check_vocabulary_size(-1)
    -1
    """
    if vocabulary_size is None:
        return None
    if isinstance(vocabulary_size, bool) or not isinstance(vocabulary_size, int) or (
        vocabulary_size < 1 and vocabulary_size != -1
    ):
        raise ValueError(
            f"vocabulary_size={vocabulary_size!r} must be a positive integer (the most frequent "
            "concepts kept), -1 for the whole vocabulary, or None for the vocabulary's default "
            f"size ({VOCABULARY_SIZE} for {VOCABULARY!r}; everything for a file or a list)."
        )
    return vocabulary_size


def load_vocabulary(vocabulary=VOCABULARY, vocabulary_size=None, *, clean=False, cache_dir=None,
                    offline=None):
    """The concepts of a vocabulary, least to most frequent.

    Parameters
    ----------
    vocabulary : str, path-like or sequence of str, default=sksplice._defaults.VOCABULARY
        A name from :func:`list_vocabularies` (downloaded on first use and
        cached), a text file with one concept a line (least to most frequent,
        UTF-8, a byte-order mark is ignored), or the concepts themselves.  As in
        the SpLiCE reference, a line is stripped and only the text before the
        first ``", "`` is kept; blank lines are skipped (the reference keeps
        them as empty concepts).
    vocabulary_size : int or None, default=None
        Keep the last (most frequent) ``vocabulary_size`` concepts; ``-1``
        keeps the whole vocabulary; ``None`` keeps the registry's default size
        for a built-in vocabulary (10,000 for ``"laion"``) and everything for
        a file or list.
    clean : bool, default=False
        Drop stopwords, numbers and tokens without letters (see
        :func:`clean_vocabulary`) *before* keeping the top ``vocabulary_size``.
        Off by default, to reproduce the paper.
    cache_dir : str or path-like, default=None
        Where built-in vocabularies are cached (see
        :func:`sksplice.concepts.get_cache_dir`).
    offline : bool or None, default=None
        Never download (``None``: ``SKSPLICE_OFFLINE`` / ``HF_HUB_OFFLINE``).

    Returns
    -------
    concepts : list of str
        Unique concept strings, least to most frequent.

    Raises
    ------
    ValueError
        Unknown name (close matches are suggested), empty vocabulary,
        non-string, overlong or duplicate concepts.
    FileNotFoundError
        A built-in vocabulary is not cached and downloads are off.

    Examples
    --------
    >>> from sksplice import load_vocabulary
    >>> load_vocabulary(["sky", "tree", "dog", "cat"], vocabulary_size=2)
    ['dog', 'cat']
    >>> load_vocabulary(["sky", "tree", "dog", "cat"], vocabulary_size=-1)
    ['sky', 'tree', 'dog', 'cat']
    >>> load_vocabulary(["the", "dog", "3", "cat"], clean=True)
    ['dog', 'cat']
    """
    check_vocabulary_size(vocabulary_size)
    if isinstance(vocabulary, str) and len(vocabulary) > 1024:
        raise ValueError(
            f"vocabulary is a string of {len(vocabulary)} characters: pass a name from "
            f"{list_vocabularies()}, a file path, or a list of concepts."
        )
    source, default_size = _describe(vocabulary)
    if isinstance(vocabulary, str) and vocabulary in VOCABULARIES:
        entry = VOCABULARIES[vocabulary]
        path = fetch(entry["path"], entry["sha256"], cache_dir=cache_dir, offline=offline,
                     what=f"vocabulary {vocabulary!r}", url=entry["url"], size=entry["size"])
        concepts = _read_lines(path)
    elif isinstance(vocabulary, (str, os.PathLike)):
        path = Path(vocabulary)
        try:
            exists = path.exists()
        except OSError:  # e.g. a name too long for the file system
            exists = False
        if not exists:
            if isinstance(vocabulary, str) and not looks_like_path(vocabulary):
                raise ValueError(
                    f"unknown vocabulary {shorten(vocabulary)}.{suggest(vocabulary, VOCABULARIES)} "
                    f"Use one of {list_vocabularies()}, a list of concepts, or the path of a "
                    "text file with one concept a line."
                )
            raise FileNotFoundError(
                f"vocabulary file {shorten(str(path), 300)} does not exist; pass an existing "
                f"text file (one concept a line) or one of {list_vocabularies()}."
            )
        concepts = _read_lines(path)
    else:
        concepts = _check_list(vocabulary)
    if clean:
        concepts = clean_vocabulary(concepts)
    size = vocabulary_size if vocabulary_size is not None else default_size
    if size is not None and size != -1:
        concepts = concepts[-size:]
    if not concepts:
        raise ValueError(
            f"the vocabulary ({source}) is empty{' after cleaning' if clean else ''}; give at "
            "least one concept" + (" or pass clean=False." if clean else ".")
        )
    _check_unique(concepts, source)
    return concepts


def _describe(vocabulary):
    if isinstance(vocabulary, str) and vocabulary in VOCABULARIES:
        return f"built-in {vocabulary!r}", VOCABULARIES[vocabulary]["default_size"]
    if isinstance(vocabulary, (str, os.PathLike)):
        return f"file {str(vocabulary)!r}", None
    return "list", None


def _read_lines(path):
    what = "vocabulary file"
    try:  # refuses a directory, a pipe or a device by name, before opening it
        text = read_text(path, what, MAX_FILE_BYTES, encoding="utf-8-sig")  # a BOM is no concept
    except UnicodeDecodeError:
        raise ValueError(
            f"vocabulary file {str(path)!r} is not UTF-8 text; save it as UTF-8 with one "
            "concept a line."
        ) from None
    concepts = []
    for number, line in enumerate(split_lines(text, f"{what} {str(path)!r}"), start=1):
        concept = line.strip().split(", ")[0]
        if len(concept) > MAX_CONCEPT_LENGTH:
            raise ValueError(
                f"line {number} of vocabulary file {str(path)!r} holds a concept of "
                f"{len(concept)} characters (at most {MAX_CONCEPT_LENGTH}); a vocabulary is one "
                "short concept a line."
            )
        if concept:
            concepts.append(concept)
    return concepts


def _check_list(vocabulary):
    if vocabulary is None:
        raise ValueError(
            "vocabulary=None: pass a built-in name "
            f"({list_vocabularies()}), a list of concepts or a text file."
        )
    try:
        concepts = list(vocabulary)
    except TypeError:
        raise ValueError(
            f"vocabulary must be a name, a path or a list of strings; got "
            f"{type(vocabulary).__name__}."
        ) from None
    bad = [c for c in concepts if not isinstance(c, str)]
    if bad:
        raise ValueError(
            f"concepts must be strings; got {type(bad[0]).__name__} {bad[0]!r}. Convert "
            "them with [str(c) for c in vocabulary]."
        )
    long = [i for i, c in enumerate(concepts) if len(c) > MAX_CONCEPT_LENGTH]
    if long:
        raise ValueError(
            f"concept number {long[0]} has {len(concepts[long[0]])} characters (at most "
            f"{MAX_CONCEPT_LENGTH}); concepts are short texts."
        )
    blank = [i for i, c in enumerate(concepts) if not c.strip()]
    if blank:
        raise ValueError(
            f"concept number {blank[0]} is blank; every concept needs some text (drop the "
            "empty strings)."
        )
    return [str(c) for c in concepts]


def _check_unique(concepts, source):
    dup = duplicates(concepts)
    if dup:
        raise ValueError(
            f"the vocabulary ({source}) repeats {dup[:5]}; each concept must appear once "
            "(deduplicate it, e.g. list(dict.fromkeys(concepts)))."
        )


def _is_junk(concept, stopwords):
    words = concept.lower().split()
    if not words:
        return True
    if not any(ch.isalpha() for ch in concept):  # numbers, punctuation, symbols
        return True
    return all(w in stopwords for w in words)


def clean_vocabulary(concepts, stopwords=None):
    """Drop stopwords, numbers and punctuation-only entries, keeping the order.

    Parameters
    ----------
    concepts : sequence of str
        The concepts to filter.
    stopwords : collection of str, default=None
        Words to drop (lower case); ``None`` uses :data:`ENGLISH_STOPWORDS`.
        A multi-word concept is dropped only when all its words are
        stopwords.

    Returns
    -------
    concepts : list of str
        The concepts kept, in their order.

    Examples
    --------
    >>> from sksplice.vocabularies import clean_vocabulary
    >>> clean_vocabulary(["-", "of", "2", "red car", "in the", "dog"])
    ['red car', 'dog']
    """
    stop = _english_stopwords() if stopwords is None else frozenset(w.lower() for w in stopwords)
    return [c for c in concepts if not _is_junk(c, stop)]


def build_vocabulary(captions, n_words=10000, n_bigrams=5000, *, stopwords=None, min_count=1):
    """Build a SpLiCE-style vocabulary from a caption corpus.

    The paper's recipe: lower-case each caption, split it into word tokens,
    drop stopwords and tokens that are not purely alphabetic, count the
    remaining words and the two-word phrases formed by adjacent kept tokens,
    and keep the ``n_words`` most frequent words and ``n_bigrams`` most
    frequent bigrams.  Counting is scikit-learn's ``CountVectorizer`` (over
    the terms of each caption); the stop words are its ``ENGLISH_STOP_WORDS``
    less a few words that name things in images (:data:`VISUAL_WORDS`).
    A dropped token or a punctuation mark breaks a phrase: ``"dog on the
    beach"`` gives no ``"dog beach"``.

    Parameters
    ----------
    captions : iterable of str
        The corpus, one caption per item.
    n_words : int, default=10000
        Number of single words to keep.
    n_bigrams : int, default=5000
        Number of two-word phrases to keep (``0`` for words only).
    stopwords : collection of str, default=None
        Words to drop; ``None`` uses :data:`ENGLISH_STOPWORDS`.
    min_count : int, default=1
        Drop terms seen fewer times.

    Returns
    -------
    concepts : list of str
        Words and bigrams ordered from least to most frequent (the order of
        the reference vocabularies: the top concepts are the last entries;
        ties keep first-seen terms nearer the end).

    Examples
    --------
    >>> from sksplice import build_vocabulary
    >>> caps = ["A red car on the road", "red car, parked",
    ...         "a dog in a red car", "Dog 2024!"]
    >>> build_vocabulary(caps, n_words=3, n_bigrams=1)
    ['dog', 'red car', 'car', 'red']
    """
    for name, value in (("n_words", n_words), ("n_bigrams", n_bigrams), ("min_count", min_count)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}={value!r} must be a nonnegative integer.")
    if isinstance(captions, str):
        raise ValueError(  # noqa: TRY004 - as every bad value
            "captions must be an iterable of caption strings, not one string.")
    stop = _english_stopwords() if stopwords is None else frozenset(w.lower() for w in stopwords)
    first_seen = {}  # term -> order of first appearance (ties keep it)

    def terms(caption):
        if not isinstance(caption, str):
            raise ValueError(  # noqa: TRY004 - a ValueError, as for every bad caption
                f"captions must be strings; got {type(caption).__name__} {caption!r}."
            )
        out, prev = [], None
        for token in _TOKEN.findall(caption.lower()):
            if not token.isalpha() or token in stop:
                prev = None  # a dropped token or a punctuation mark breaks the phrase
                continue
            out.append(token)
            if prev is not None:
                out.append(f"{prev} {token}")
            prev = token
        for term in out:
            first_seen.setdefault(term, len(first_seen))
        return out

    captions = list(captions)
    if not captions:
        raise ValueError("captions is empty: pass at least one caption.")
    from sklearn.feature_extraction.text import CountVectorizer

    counter = CountVectorizer(analyzer=terms)
    try:
        counts = counter.fit_transform(captions)
    except ValueError as e:
        if "empty vocabulary" not in str(e):
            raise
        counts, names = None, []
    else:
        names = counter.get_feature_names_out()
    totals = [] if counts is None else counts.sum(axis=0).A1.tolist()
    kept = [(t, c) for t, c in zip(names, totals, strict=False) if c >= max(min_count, 1)]
    def rank(tc):
        return -tc[1], first_seen[tc[0]]

    words = sorted((tc for tc in kept if " " not in tc[0]), key=rank)
    bigrams = sorted((tc for tc in kept if " " in tc[0]), key=rank)
    top = words[:n_words] + (bigrams[:n_bigrams] if n_bigrams else [])
    # stable sort, most frequent first (ties: words before bigrams, first seen first)
    top.sort(key=lambda tc: -tc[1])
    concepts = [str(t) for t, _ in reversed(top)]
    if not concepts:
        raise ValueError(
            "no concept survived tokenising and stopword removal; check the captions or "
            "lower min_count."
        )
    return concepts
