"""``ConceptEditor``: remove (or keep) named concepts from SpLiCE codes and embeddings.

A meta-estimator around a :class:`~sksplice.SpliceTransformer`, in the way
:class:`~sklearn.feature_selection.SelectFromModel` wraps an estimator.  It
decomposes each input, zeroes the weights of the removed concepts and returns
either the edited codes or an edited CLIP embedding.

Two ways to turn edited codes back into an embedding
----------------------------------------------------
Write ``x`` for an input embedding, ``mu`` for the modality mean, ``C`` for
the dictionary (rows are unit-norm centred concept embeddings) and ``w`` for
the codes of ``x``.  SpLiCE decomposes the centred input::

    s = ||normalize(x) - mu||,     z = (normalize(x) - mu) / s,     z ~ w C

``mode="recompose"`` (the paper's editing): zero the removed weights and
recompose from the codes alone::

    x' = normalize(normalize(w' C) + mu)

Everything the codes do not explain (the residual ``z - w C``, large for
sparse codes) is dropped, so even an edit that removes nothing changes the
embedding.

``mode="residual"``: subtract only the removed concepts' contribution from
the centred input and undo the centring with the input's own scale::

    z' = z - w_removed C_removed,     x' = normalize(s z' + mu)

Since ``s z + mu = normalize(x)``, an edit whose removed concepts have zero
weight returns ``normalize(x)`` unchanged; otherwise only the removed
concepts' direction is taken out, and the residual and the other concepts'
contributions are kept.
"""

from __future__ import annotations

import re

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_array,
    check_is_fitted,
)

from . import _defaults
from ._utils import suggest
from .core import EPS, normalize_rows

__all__ = ["ConceptEditor", "match_concepts"]


def match_concepts(names, concept_names, *, match="exact"):
    """Column indices of the concepts named by ``names``.

    Parameters
    ----------
    names : str or sequence of str
        Concept names (``match="exact"``) or words (``match="word"``).
    concept_names : sequence of str of length n_concepts
        The dictionary's concept names (e.g. ``get_feature_names_out()``).
    match : {"exact", "word"}, default="exact"
        ``"exact"``: each name must be a concept.  ``"word"``: every concept
        that contains the word (or phrase) as whole words, ignoring case and
        treating ``_`` as a space, so ``"dog"`` matches ``"hot dog"`` and
        ``"dog_collar"`` but not ``"dogsled"``.

    Returns
    -------
    indices : ndarray of shape (n_matched,), dtype=int
        Sorted, unique column indices.

    Raises
    ------
    ValueError
        If a name matches no concept (with close matches suggested).

    Examples
    --------
    >>> from sksplice.editing import match_concepts
    >>> vocab = ["dog", "hot dog", "dogsled", "cat"]
    >>> match_concepts(["cat"], vocab)
    array([3])
    >>> match_concepts("dog", vocab, match="word")
    array([0, 1])
    """
    if isinstance(names, (str, np.str_)):
        names = [names]
    names = list(names)
    bad = [n for n in names if not isinstance(n, (str, np.str_))]
    if bad:
        raise ValueError(
            f"concept names must be strings; got {type(bad[0]).__name__} {bad[0]!r}. "
            "Pass a list of concept names, e.g. remove=['glasses']."
        )
    concept_names = np.asarray(concept_names, dtype=object)
    if match not in ("exact", "word"):
        raise ValueError(f"match={match!r} is not supported; use 'exact' or 'word'.")
    found = []
    if match == "exact":
        lookup = {str(n): i for i, n in enumerate(concept_names)}
        for name in names:
            idx = lookup.get(str(name))
            if idx is None:
                raise ValueError(_unknown_message(name, concept_names, match))
            found.append(idx)
    else:
        folded = [str(n).replace("_", " ").lower() for n in concept_names]
        for name in names:
            word = " ".join(str(name).replace("_", " ").lower().split())
            if not word:
                raise ValueError("an empty word matches every concept; pass a real word.")
            pattern = re.compile(r"(?<![0-9a-z])" + re.escape(word) + r"(?![0-9a-z])")
            hits = [i for i, f in enumerate(folded) if pattern.search(f)]
            if not hits:
                raise ValueError(_unknown_message(name, concept_names, match))
            found.extend(hits)
    return np.unique(np.asarray(found, dtype=np.intp))


def _unknown_message(name, concept_names, match):
    if match == "exact":
        hint = suggest(name, concept_names)
        word = str(name).replace("_", " ").lower()
        if any(word in str(c).replace("_", " ").lower() for c in concept_names):
            hint += f" Some concepts contain {name!r}: pass match='word' to select all of them."
        return (
            f"concept {name!r} is not in the dictionary of {len(concept_names)} "
            f"concepts.{hint or ' Check the spelling against get_feature_names_out().'}"
        )
    words = sorted({w for c in concept_names for w in re.split(r"[^0-9a-z]+", str(c).lower()) if w})
    hint = suggest(str(name).lower(), words)
    return (
        f"no concept contains the word {name!r} (match='word').{hint or ''} Check the "
        "spelling against get_feature_names_out()."
    )


class ConceptEditor(TransformerMixin, BaseEstimator):
    """Remove (or keep only) named concepts from SpLiCE codes or embeddings.

    Wraps a concept transformer (normally :class:`~sksplice.SpliceTransformer`):
    ``fit`` fits a clone of it, ``transform`` decomposes ``X`` and zeroes the
    weights of the removed concepts.

    Parameters
    ----------
    estimator : SpliceTransformer
        The concept transformer to wrap (cloned in ``fit``).  Any transformer
        with ``get_feature_names_out`` works for ``output="codes"``; embedding
        outputs need a SpliceTransformer (its dictionary and mean).
    remove : str or list of str, default=None
        Concepts to remove.  ``None`` (with ``keep=None``) removes nothing.
    keep : str or list of str, default=None
        Concepts to keep; every other concept is removed.  Give ``remove`` or
        ``keep``, not both.
    match : {"exact", "word"}, default="exact"
        ``"exact"``: names must be concepts.  ``"word"``: each name selects
        every concept containing it as whole words (case-insensitive, ``_``
        read as a space), so ``remove=["dog"]`` removes ``"dog"``, ``"hot
        dog"`` and ``"dog_collar"`` but not ``"dogsled"``.
    output : {"codes", "embedding"}, default="codes"
        ``"codes"``: the estimator's ``transform`` output (a
        ``scipy.sparse.csr_matrix`` unless it has ``sparse_output=False``)
        with the removed columns zero, a drop-in replacement for it in a
        pipeline; a SpliceTransformer with ``output_scale=1`` gives the
        exact SpLiCE weights.  ``"embedding"``: dense edited embeddings, a drop-in
        replacement for CLIP embeddings.
    mode : {"recompose", "residual"}, default="recompose"
        How ``output="embedding"`` builds the embedding (see the module
        docstring).  ``"recompose"`` (the paper's): ``normalize(normalize(w' C)
        + mu)`` from the edited codes only.  ``"residual"``: subtract the
        removed concepts' contribution ``w_removed C_removed`` from the centred
        input and undo the centring, so nothing but the removed concepts
        changes.  Ignored for ``output="codes"``.

    Attributes
    ----------
    estimator_ : SpliceTransformer
        The fitted clone of ``estimator``.
    removed_indices_ : ndarray of shape (n_removed,), dtype=int
        Columns (concepts) whose weights are zeroed.
    removed_concepts_ : ndarray of shape (n_removed,), dtype=object
        Their names.
    concept_names_ : ndarray of shape (n_concepts,), dtype=object
        All concept names of the wrapped estimator.
    n_features_in_ : int
        Embedding dimension (when the estimator records it).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names of ``X`` when it was a DataFrame with string columns.

    See Also
    --------
    sksplice.SpliceTransformer : The wrapped transformer.
    sksplice.analysis.concept_association : Find the concepts worth removing.

    Notes
    -----
    Decomposing a ``mode="residual"`` edit again: at the lasso optimum the
    residual's correlation with every used concept sits exactly at the
    activation threshold ``l1 / 2``, and the residual edit keeps that
    residual, so a new decomposition of the edited embedding may return the
    removed concepts with weights at solver precision (far below their
    original weights).  To drop them exactly from codes, edit the codes
    (``output="codes"``).

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice import ConceptDictionary, SpliceTransformer
    >>> from sksplice.editing import ConceptEditor
    >>> names = ["cat", "dog", "car", "tree"]
    >>> cd = ConceptDictionary(names, np.eye(4), center=False)
    >>> X = np.array([[0.8, 0.5, 0.0, 0.3], [0.0, 0.2, 0.9, 0.0]])
    >>> st = SpliceTransformer(l1=0.1, dictionary=cd, image_mean=None, device="cpu")
    >>> editor = ConceptEditor(st, remove=["dog"]).fit(X)
    >>> editor.removed_concepts_
    array(['dog'], dtype=object)
    >>> W = editor.transform(X)  # st.transform(X) with the "dog" column zeroed
    >>> (W.toarray() > 0).astype(int)
    array([[1, 0, 0, 1],
           [0, 0, 1, 0]])
    >>> E = ConceptEditor(st, remove=["dog"], output="embedding", mode="residual").fit(X)
    >>> np.round(E.transform(X), 2)
    array([[0.93, 0.06, 0.  , 0.35],
           [0.  , 0.05, 1.  , 0.  ]])

    The residual mode keeps what the codes do not explain (here the part of
    "dog" that the l1 penalty shrank away); ``mode="recompose"`` drops it.
    """

    _doc_link_module = "sksplice"
    _doc_link_template = _defaults.API_PAGE_TEMPLATE

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "transform"])],
        "remove": [str, "array-like", None],
        "keep": [str, "array-like", None],
        "match": [StrOptions({"exact", "word"})],
        "output": [StrOptions({"codes", "embedding"})],
        "mode": [StrOptions({"recompose", "residual"})],
    }

    def __init__(self, estimator, *, remove=None, keep=None, match="exact", output="codes",
                 mode="recompose"):
        self.estimator = estimator
        self.remove = remove
        self.keep = keep
        self.match = match
        self.output = output
        self.mode = mode

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit a clone of the estimator and resolve the concepts to remove.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images or texts
            What the wrapped estimator accepts.
        y : Ignored
            Passed on to the estimator's ``fit``.

        Returns
        -------
        self : ConceptEditor
            The fitted editor.
        """
        if self.remove is not None and self.keep is not None:
            raise ValueError(
                "give remove=... or keep=..., not both: keep=[...] already removes every "
                "other concept."
            )
        est = clone(self.estimator).fit(X, y)
        if not hasattr(est, "get_feature_names_out"):
            raise ValueError(
                f"{type(est).__name__} has no get_feature_names_out(), so concepts cannot "
                "be named; wrap a SpliceTransformer."
            )
        names = np.asarray(est.get_feature_names_out(), dtype=object)
        if self.output == "embedding" and not _is_splice_like(est):
            raise ValueError(
                f"output='embedding' needs the dictionary and mean of a SpliceTransformer; "
                f"{type(est).__name__} has no dictionary_/image_mean_. Use output='codes' "
                "or wrap a SpliceTransformer."
            )
        if self.keep is not None:
            kept = match_concepts(self.keep, names, match=self.match)
            if kept.size == 0:
                raise ValueError("keep=[] would remove every concept; name at least one.")
            removed = np.setdiff1d(np.arange(names.size), kept)
        elif self.remove is not None:
            removed = match_concepts(self.remove, names, match=self.match)
        else:
            removed = np.zeros(0, dtype=np.intp)
        self.estimator_ = est
        self.concept_names_ = names
        self.removed_indices_ = removed.astype(np.intp)
        self.removed_concepts_ = names[self.removed_indices_]
        if hasattr(est, "n_features_in_"):
            self.n_features_in_ = est.n_features_in_
        if hasattr(est, "feature_names_in_"):
            self.feature_names_in_ = est.feature_names_in_
        return self

    def transform(self, X):
        """Decompose ``X`` and remove the concepts.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or images or texts
            Inputs of the kind the estimator was fitted on.

        Returns
        -------
        X_edited : scipy.sparse.csr_matrix or ndarray
            ``output="codes"``: codes of shape (n_samples, n_concepts) with
            the removed columns zero.  ``output="embedding"``: ndarray of
            shape (n_samples, n_features), unit-norm edited embeddings.
        """
        check_is_fitted(self, "estimator_")
        est = self.estimator_
        if self.output == "codes":
            return self.edit_codes(est.transform(X))
        if self.mode == "recompose":
            return est.inverse_transform(self.edit_codes(est.transform(X)))
        X_emb = np.asarray(est.embed(X))
        codes, _ = est.decompose_embeddings(X_emb)
        return residual_edit(
            X_emb, codes, est.dictionary_.embeddings, est.image_mean_, self.removed_indices_
        )

    def edit_codes(self, codes):
        """Zero the removed columns of already computed codes.

        Parameters
        ----------
        codes : {array-like, sparse matrix} of shape (n_samples, n_concepts)
            Codes from the wrapped estimator (a nested list is read as an
            array).

        Returns
        -------
        edited : ndarray or scipy.sparse.csr_matrix of shape (n_samples, n_concepts)
            A copy with the removed columns set to zero: CSR for sparse
            input, an ndarray otherwise.

        Raises
        ------
        ValueError
            If ``codes`` are not a 2-D numeric array with one column per
            concept.
        """
        check_is_fitted(self, "estimator_")
        k = self.concept_names_.size
        try:
            codes = check_array(codes, accept_sparse=True, dtype=None, ensure_2d=False,
                                ensure_all_finite=False, ensure_min_samples=0)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"codes must be a 2-D numeric array or sparse matrix of shape (n_samples, "
                f"{k}), e.g. editor.estimator_.transform(X); could not read them ({exc})."
            ) from None
        if codes.dtype.kind not in "fiub":
            raise ValueError(
                f"codes must be numeric; got dtype {codes.dtype}. Pass the codes of "
                "editor.estimator_.transform(X)."
            )
        if codes.ndim != 2 or codes.shape[1] != k:
            raise ValueError(
                f"codes have shape {codes.shape} but the dictionary has {k} concepts; pass "
                "codes of shape (n_samples, n_concepts) produced by this editor's "
                "estimator_ (for one sample, codes.reshape(1, -1))."
            )
        return _zero_columns(codes, self.removed_indices_)

    def get_feature_names_out(self, input_features=None):
        """Output column names.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Input embedding column names (only used with
            ``output="embedding"``, whose columns are the input's).

        Returns
        -------
        feature_names_out : ndarray of str objects
            The concept names (``output="codes"``, removed ones included, as
            all-zero columns), or the embedding column names.
        """
        check_is_fitted(self, "estimator_")
        if self.output == "codes":
            return np.asarray(self.concept_names_, dtype=object)
        if input_features is None and not hasattr(self, "n_features_in_"):
            # fitted on images or texts: the output columns are the embedding's
            d = self.estimator_.dictionary_.n_features
            return np.asarray([f"x{i}" for i in range(d)], dtype=object)
        return _check_feature_names_in(self, input_features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.input_tags.sparse = inner.input_tags.sparse
        tags.input_tags.allow_nan = inner.input_tags.allow_nan
        if tags.transformer_tags is not None and inner.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = list(inner.transformer_tags.preserves_dtype)
        return tags


def _is_splice_like(est):
    return hasattr(est, "dictionary_") and hasattr(est, "image_mean_")


def _zero_columns(codes, columns):
    columns = np.asarray(columns, dtype=np.intp)
    if sp.issparse(codes):
        out = sp.csr_matrix(codes, copy=True)
        if columns.size:
            out.data[np.isin(out.indices, columns)] = 0
            out.eliminate_zeros()
        return out
    out = np.array(codes, copy=True)
    if columns.size:
        out[:, columns] = 0
    return out


def residual_edit(X, codes, dictionary, mean, removed):
    """Remove concepts from embeddings, keeping what the codes do not explain.

    Computes ``x' = normalize(s (z - w_removed C_removed) + mu)`` with
    ``z = (normalize(x) - mu) / s`` and ``s = ||normalize(x) - mu||``.  Rows
    whose removed weights are zero come back as ``normalize(x)``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Input embeddings.
    codes : {ndarray, sparse matrix} of shape (n_samples, n_concepts)
        Their codes.
    dictionary : ndarray of shape (n_concepts, n_features)
        Unit-norm (centred) concept rows ``C``.
    mean : ndarray of shape (n_features,) or None
        The modality mean used to centre ``X`` (``None``: no centring).
    removed : array-like of int
        Columns of the removed concepts.

    Returns
    -------
    X_edited : ndarray of shape (n_samples, n_features)
        Unit-norm edited embeddings, dtype of ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> from sksplice.editing import residual_edit
    >>> C = np.eye(3)
    >>> X = np.array([[3.0, 4.0, 0.0]])
    >>> residual_edit(X, np.array([[0.6, 0.8, 0.0]]), C, None, [1])
    array([[1., 0., 0.]])
    >>> residual_edit(X, np.array([[0.6, 0.8, 0.0]]), C, None, [2])
    array([[0.6, 0.8, 0. ]])
    """
    X = np.asarray(X)
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    Xn = normalize_rows(np.asarray(X, dtype=np.float64))
    removed = np.asarray(removed, dtype=np.intp)
    if mean is None:
        scale = np.ones(Xn.shape[0])
        Z = Xn.copy()
        mean = np.zeros(Xn.shape[1])
    else:
        mean = np.asarray(mean, dtype=np.float64)
        R = Xn - mean
        scale = np.linalg.norm(R, axis=1)
        Z = R / np.maximum(scale, EPS)[:, None]
        Z[scale <= EPS] = 0.0
    if removed.size:
        W = codes[:, removed]
        W = W.toarray() if sp.issparse(W) else np.asarray(W)
        Z -= W.astype(np.float64) @ np.asarray(dictionary, dtype=np.float64)[removed]
    out = scale[:, None] * Z + mean
    return normalize_rows(out, copy=False).astype(dtype, copy=False)

