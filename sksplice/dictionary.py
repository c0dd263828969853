"""The concept dictionary: concept names and their unit-norm, centred embeddings."""

from __future__ import annotations

import numpy as np

from ._utils import duplicates
from .core import EPS

__all__ = ["FILE_FORMAT", "FILE_VERSION", "ConceptDictionary", "as_concept_dictionary"]

#: What :meth:`ConceptDictionary.save` writes in a file's ``format`` field.
FILE_FORMAT = "sksplice.ConceptDictionary"
#: The version of that file layout; :meth:`ConceptDictionary.load` reads it and older.
FILE_VERSION = 1


class ConceptDictionary:
    """Concept names with their embeddings, prepared as SpLiCE's dictionary ``C``.

    Each embedding is L2-normalised; with ``center=True`` (the default, as in
    the paper) the mean over the vocabulary is subtracted and every row is
    normalised again.

    Parameters
    ----------
    names : sequence of str of length n_concepts
        Unique concept names (they become the transformer's feature names).
    embeddings : array-like of shape (n_concepts, n_features)
        Text embeddings of the concepts (e.g. CLIP's text tower on each name).
    center : bool, default=True
        Subtract the vocabulary mean after the first normalisation.
    metadata : dict, default=None
        Free-form provenance (model, vocabulary, prompt template...).

    Attributes
    ----------
    names : ndarray of shape (n_concepts,), dtype=object
        The concept names.
    embeddings : ndarray of shape (n_concepts, n_features)
        The prepared dictionary: unit-norm (and centred) rows, float64.
    text_mean : ndarray of shape (n_features,)
        Mean of the normalised raw embeddings (the vocabulary's text mean,
        used to centre text inputs).
    n_concepts : int
    n_features : int

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice import ConceptDictionary
    >>> E = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    >>> cd = ConceptDictionary(["cat", "dog", "car"], E)
    >>> cd.n_concepts, cd.n_features
    (3, 3)
    >>> np.allclose(np.linalg.norm(cd.embeddings, axis=1), 1.0)
    True
    """

    def __init__(self, names, embeddings, *, center=True, metadata=None):
        names = _check_names(names)
        E = _check_embeddings(embeddings)
        if len(names) != E.shape[0]:
            raise ValueError(
                f"ConceptDictionary got {len(names)} names but {E.shape[0]} embedding "
                "rows; pass exactly one embedding row per concept name."
            )
        norms = np.linalg.norm(E, axis=1)
        zero = np.flatnonzero(norms <= EPS)
        if zero.size:
            raise ValueError(
                f"the dictionary row(s) for {[names[i] for i in zero[:5]]} are zero; "
                "a concept needs a nonzero embedding: drop these concepts or re-encode them."
            )
        E = E / norms[:, None]
        self.text_mean = E.mean(axis=0)
        if center:
            if E.shape[0] < 2:
                raise ValueError(
                    "centring a dictionary of one concept leaves a zero row; pass "
                    "center=False or give at least two concepts."
                )
            E = E - self.text_mean
            norms = np.linalg.norm(E, axis=1)
            zero = np.flatnonzero(norms <= 1e-8)
            if zero.size:
                raise ValueError(
                    f"after subtracting the vocabulary mean, the row(s) for "
                    f"{[names[i] for i in zero[:5]]} are zero (the embedding equals the "
                    "mean of the vocabulary); drop them or pass center=False."
                )
            E = E / norms[:, None]
        self.names = np.asarray(names, dtype=object)
        self.embeddings = E
        self.center = center
        self.metadata = dict(metadata or {})

    @classmethod
    def from_prepared(cls, names, embeddings, *, text_mean=None, metadata=None):
        """Wrap an already prepared dictionary (unit-norm rows) without reprocessing.

        Parameters
        ----------
        names : sequence of str of length n_concepts
            Unique concept names.
        embeddings : array-like of shape (n_concepts, n_features)
            Rows that are already normalised (and centred if desired).
        text_mean : ndarray of shape (n_features,), default=None
            The vocabulary's text mean (zeros when not given).
        metadata : dict, default=None
            Free-form provenance.

        Returns
        -------
        dictionary : ConceptDictionary
            The dictionary, rows used as given.
        """
        names = _check_names(names)
        E = _check_embeddings(embeddings)
        if len(names) != E.shape[0]:
            raise ValueError(
                f"got {len(names)} names but {E.shape[0]} embedding rows; pass one "
                "row per name."
            )
        norms = np.linalg.norm(E, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-4):
            raise ValueError(
                "from_prepared expects unit-norm rows; use ConceptDictionary(names, "
                "embeddings) to normalise them."
            )
        self = cls.__new__(cls)
        self.names = np.asarray(names, dtype=object)
        self.embeddings = E / norms[:, None]
        self.text_mean = (
            np.zeros(E.shape[1]) if text_mean is None else np.asarray(text_mean, dtype=np.float64)
        )
        self.center = None
        self.metadata = dict(metadata or {})
        return self

    def save(self, path):
        """Write the prepared dictionary to a ``.npz`` file (see :meth:`load`).

        The file holds ``format`` (``"sksplice.ConceptDictionary"``),
        ``version`` (:data:`FILE_VERSION`), ``names`` (unicode strings),
        ``embeddings`` (the prepared rows, float64), ``text_mean``, ``center``
        (1, 0, or -1 for a dictionary made with :meth:`from_prepared`) and
        ``metadata`` (a JSON object: the model identity, the vocabulary, the
        prompt template...).  Nothing in it is pickled.  The file is written
        atomically (a temporary file, then renamed).

        Parameters
        ----------
        path : str or path-like
            The file to write; ``.npz`` is appended when missing, as
            :func:`numpy.savez` does.

        Returns
        -------
        path : pathlib.Path
            The file written.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from sksplice import ConceptDictionary
        >>> cd = ConceptDictionary(["cat", "dog", "car"], [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        ...                        metadata={"encoder": "toy"})
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = cd.save(pathlib.Path(tmp) / "toy.npz")
        ...     back = ConceptDictionary.load(path)
        >>> back == cd, back.metadata["encoder"]
        (True, 'toy')
        """
        import json
        from pathlib import Path

        from ._io import atomic_write

        path = Path(path)
        if path.suffix.lower() != ".npz":
            path = path.with_name(path.name + ".npz")
        metadata = json.dumps(self.metadata, default=str, ensure_ascii=False)
        arrays = {
            "format": np.array(FILE_FORMAT),
            "version": np.array(FILE_VERSION),
            "names": np.array([str(n) for n in self.names], dtype=str),
            "embeddings": np.asarray(self.embeddings, dtype=np.float64),
            "text_mean": np.asarray(self.text_mean, dtype=np.float64),
            "center": np.array(-1 if self.center is None else int(bool(self.center))),
            "metadata": np.array(metadata),
        }
        atomic_write(path, lambda f: np.savez(f, **arrays))
        return path

    @classmethod
    def load(cls, path):
        """Read a dictionary written by :meth:`save`, without unpickling anything.

        Parameters
        ----------
        path : str or path-like
            A ``.npz`` file from :meth:`save`.

        Returns
        -------
        dictionary : ConceptDictionary
            The same names, prepared rows, text mean and metadata.

        Raises
        ------
        FileNotFoundError
            When the file does not exist.
        ValueError
            When the file is not a saved dictionary, comes from a newer
            sksplice, or is damaged; the message says which.
        """
        from ._io import read_npz

        what = "dictionary file"
        arrays = read_npz(path, what)
        where = f"{what} {str(path)!r}"
        if str(arrays.get("format", "")) != FILE_FORMAT:
            raise ValueError(
                f"{where} is not a saved ConceptDictionary (it holds "
                f"{sorted(arrays)[:6]}); write one with ConceptDictionary.save(path), or "
                "build one with sksplice.build_dictionary."
            )
        missing = [k for k in ("version", "names", "embeddings", "text_mean", "center",
                               "metadata") if k not in arrays]
        if missing:
            raise ValueError(f"{where} lacks {missing}: it is damaged; save the dictionary "
                             "again with ConceptDictionary.save(path).")
        version = arrays["version"]
        if version.dtype.kind not in "iu" or version.ndim != 0:
            raise ValueError(f"{where} has an invalid version field; save it again.")
        if int(version) > FILE_VERSION:
            raise ValueError(
                f"{where} has format version {int(version)}, newer than this sksplice reads "
                f"({FILE_VERSION}); upgrade sksplice (pip install -U sksplice)."
            )
        names = arrays["names"]
        if names.dtype.kind != "U" or names.ndim != 1:
            raise ValueError(f"{where}: 'names' must be a 1-D array of strings; save the "
                             "dictionary again.")
        metadata = _read_metadata(arrays["metadata"], where)
        try:
            self = cls.from_prepared(names.tolist(), arrays["embeddings"],
                                     text_mean=arrays["text_mean"], metadata=metadata)
        except ValueError as exc:
            raise ValueError(f"{where} is damaged: {exc}") from None
        if self.text_mean.shape != (self.n_features,) or not np.all(
                np.isfinite(self.text_mean)):
            raise ValueError(f"{where}: 'text_mean' must hold {self.n_features} finite "
                             "values; save the dictionary again.")
        self.embeddings = np.asarray(arrays["embeddings"], dtype=np.float64)  # bit for bit
        center = int(arrays["center"]) if arrays["center"].dtype.kind in "iub" else -1
        self.center = None if center < 0 else bool(center)
        return self

    @property
    def n_concepts(self):
        return self.embeddings.shape[0]

    @property
    def n_features(self):
        return self.embeddings.shape[1]

    def __len__(self):
        return self.n_concepts

    def __repr__(self):
        return f"ConceptDictionary(n_concepts={self.n_concepts}, n_features={self.n_features})"

    def _repr_html_(self):
        from ._html import NOTEBOOK_ROWS, html_table

        caption = (f"ConceptDictionary: {self.n_concepts} concepts, {self.n_features} "
                   "features" + "".join(f"; {k}: {str(v)[:80]}" for k, v in self.metadata.items()))
        rows = [(i, str(n)) for i, n in enumerate(self.names[:NOTEBOOK_ROWS])]
        return html_table(["column", "concept"], rows, caption=caption,
                          n_total=self.n_concepts, hint="the names attribute holds them all")

    def __eq__(self, other):
        if not isinstance(other, ConceptDictionary):
            return NotImplemented
        return (
            self.embeddings.shape == other.embeddings.shape
            and np.array_equal(self.names, other.names)
            and np.array_equal(self.embeddings, other.embeddings)
        )

    __hash__ = None

    def index(self, name):
        """Column index of concept ``name`` (``KeyError`` naming close matches).

        Parameters
        ----------
        name : str
            A concept name.

        Returns
        -------
        index : int
            Its column in the codes.
        """
        from ._utils import suggest

        hits = np.flatnonzero(self.names == name)
        if hits.size == 0:
            raise KeyError(f"concept {name!r} is not in the dictionary.{suggest(name, self.names)}")
        return int(hits[0])


def _read_metadata(value, where):
    import json

    if value.dtype.kind != "U" or value.ndim != 0:
        raise ValueError(f"{where}: 'metadata' must be a JSON string; save the dictionary "
                         "again.")
    try:
        metadata = json.loads(str(value))
    except (json.JSONDecodeError, RecursionError):
        raise ValueError(f"{where}: 'metadata' is not valid JSON; save the dictionary "
                         "again.") from None
    if not isinstance(metadata, dict):
        raise ValueError(  # noqa: TRY004 - a bad file, as every other
            f"{where}: 'metadata' must be a JSON object; save the dictionary again.")
    return metadata


def _check_names(names):
    if isinstance(names, str):
        raise ValueError("names must be a sequence of concept names, not one string.")  # noqa: TRY004 - as every bad value
    try:
        names = [n for n in names]
    except TypeError:
        raise ValueError("names must be a sequence of concept names (strings).") from None
    bad = [n for n in names if not isinstance(n, (str, np.str_))]
    if bad:
        raise ValueError(
            f"concept names must be strings; got {type(bad[0]).__name__} {bad[0]!r}. "
            "Convert them with [str(n) for n in names]."
        )
    names = [str(n) for n in names]
    if not names:
        raise ValueError("the dictionary is empty: give at least one concept name.")
    dup = duplicates(names)
    if dup:
        raise ValueError(
            f"duplicate concept names {dup[:5]}: each concept must appear once "
            "(deduplicate the vocabulary, e.g. with dict.fromkeys(names))."
        )
    return names


def _check_embeddings(embeddings):
    try:
        E = np.asarray(embeddings, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            "dictionary embeddings must be a numeric array of shape (n_concepts, "
            "n_features)."
        ) from None
    if E.ndim != 2:
        raise ValueError(
            f"dictionary embeddings must be 2-D (n_concepts, n_features); got shape "
            f"{E.shape}."
        )
    if E.shape[0] == 0 or E.shape[1] == 0:
        raise ValueError(f"dictionary embeddings are empty (shape {E.shape}).")
    if not np.all(np.isfinite(E)):
        raise ValueError("dictionary embeddings contain NaN or inf; re-encode those concepts.")
    return E


def as_concept_dictionary(dictionary):
    """Coerce a ``ConceptDictionary`` or a ``(names, embeddings)`` pair.

    Parameters
    ----------
    dictionary : ConceptDictionary or tuple of (names, embeddings)
        The dictionary, or the pieces to build one from.

    Returns
    -------
    dictionary : ConceptDictionary
        The prepared dictionary (the same object when one was given).
    """
    if isinstance(dictionary, ConceptDictionary):
        return dictionary
    if isinstance(dictionary, (tuple, list)) and len(dictionary) == 2:
        return ConceptDictionary(dictionary[0], dictionary[1])
    raise ValueError(
        f"dictionary must be a ConceptDictionary or a (names, embeddings) pair; got "
        f"{type(dictionary).__name__}."
    )
