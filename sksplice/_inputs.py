"""What the estimators' ``X`` holds, read row by row from any container.

:func:`as_rows` turns the containers users pass (lists, numpy arrays, pandas
and polars frames and series, torch tensors) into one of two things: a 2-D
numpy array (embeddings, or a uint8 image batch) or a list with one item per
row (paths, texts, PIL images, per-row arrays).  :func:`guess_kind` then says
whether those rows are embeddings, images or texts, and names the first row
that does not fit.  Nothing here encodes or loads an image.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MappingView, Set

import numpy as np
from sklearn.utils.validation import check_array

from ._dask import is_dask_collection
from ._defaults import IMAGE_EXTENSIONS

__all__ = [
    "INPUT_KINDS",
    "as_rows",
    "check_dimension",
    "check_embeddings",
    "check_mean",
    "guess_kind",
    "is_dask_collection",
    "looks_like_image_path",
    "ordered",
    "same_rows",
]

INPUT_KINDS = ("auto", "embedding", "image", "text")


def looks_like_image_path(s):
    """Whether the string or path names an image file (existing, or by its suffix)."""
    s = os.fspath(s)
    if isinstance(s, bytes):
        return False
    return os.path.splitext(s)[1].lower() in IMAGE_EXTENSIONS or os.path.isfile(s)


def _torch_to_numpy(X):
    """A torch tensor as numpy (detached, on the CPU; bfloat16 becomes float32)."""
    import torch

    T = X.detach()
    if T.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
        T = T.to(torch.float32)
    return T.cpu().numpy()


def _is_torch(X):
    return type(X).__module__.split(".")[0] == "torch" and hasattr(X, "detach")


def _frame_column(X, library):
    """The one column of a DataFrame, or None when it has several numeric columns."""
    n_cols = X.shape[1]
    if n_cols == 1:
        return X[X.columns[0]] if library == "pandas" else X.to_series(0)
    return None


def _column_values(col, library):
    """A pandas or polars Series as numpy (numeric) or a list of its cells."""
    if library == "pandas":
        if col.dtype.kind in "biuf":
            return col.to_numpy()
        return col.tolist()
    import polars as pl

    if col.dtype.is_numeric():
        return col.to_numpy()
    if isinstance(col.dtype, (pl.List, pl.Array)):
        return [np.asarray(v) if v is not None else None for v in col.to_list()]
    return col.to_list()


def _numeric_frame(X, library):
    """A DataFrame of several columns as a numeric (n, n_columns) array, or a clear error."""
    if library == "pandas":
        numeric = all(dtype.kind in "biuf" for dtype in X.dtypes)
    else:
        numeric = all(dtype.is_numeric() for dtype in X.dtypes)
    if not numeric:
        raise ValueError(
            f"X is a DataFrame of {X.shape[1]} columns, not all numeric: pass one column of "
            "paths, texts or per-row embeddings (e.g. df['image']), a frame of numeric "
            "embedding columns, or use a ColumnTransformer to give SpliceTransformer one "
            "column of a wider table."
        )
    return X.to_numpy()


def _library(X):
    module = type(X).__module__.split(".")[0]
    if module == "pandas":
        return "pandas"
    if module == "polars":
        return "polars"
    return None


def ordered(X):
    """``X`` with an iterator read into a list, in order; an unordered container refused.

    Parameters
    ----------
    X : object
        What the user passed as ``X``.

    Returns
    -------
    X : object
        ``list(X)`` for an iterator (a generator, ``map(...)``: consumed once,
        in order), else ``X`` itself.

    Raises
    ------
    TypeError
        For a set, a dict or a dict view: they have no row order, so output
        rows could not be matched to inputs.
    """
    if isinstance(X, (Set, Mapping, MappingView)) and not hasattr(X, "shape"):  # not dok
        raise TypeError(
            f"X is a {type(X).__name__}, which has no row order, so the output rows could "
            "not be matched to the inputs; pass a list, an array or another ordered "
            "sequence (e.g. sorted(X), or list(d.values()) for a dict)."
        )
    if isinstance(X, Iterator):
        return list(X)
    return X


def as_rows(X):
    """``X`` as a 2-D (or uint8 image) numpy array, or a list with one item per row.

    Parameters
    ----------
    X : array-like, list, pandas/polars DataFrame or Series, torch tensor, str or path
        One row per sample; a single string or path is one row.  An iterator
        (a generator, ``map(...)``) is consumed once, in order; a set, a dict
        or a dict view has no row order and is refused with a ``TypeError``.

    Returns
    -------
    rows : ndarray or list
        A numeric ndarray (embeddings or a uint8 image batch) or a list of row
        items (paths, texts, PIL images or per-row arrays).
    """
    if isinstance(X, (str, bytes, os.PathLike)):
        return [X]
    if _is_torch(X):
        return _torch_to_numpy(X)
    library = _library(X)
    if library is not None:
        if hasattr(X, "columns"):
            col = _frame_column(X, library)
            if col is None:  # several columns: numeric embeddings, one per column
                return _numeric_frame(X, library)
        else:
            col = X
        values = _column_values(col, library)
        if hasattr(X, "columns") and isinstance(values, np.ndarray):
            return values.reshape(-1, 1)  # one numeric column: 1-d embeddings
        if isinstance(values, list) and values and all(
            isinstance(v, np.ndarray) or _is_torch(v) for v in values
        ):
            return _stack_rows(values)
        return values
    if isinstance(X, np.ndarray):
        if X.dtype.kind in "USO" and X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]  # a one-column array of paths or texts
        if X.dtype.kind in "USO" and X.ndim == 1:
            values = X.tolist()
            if values and all(isinstance(v, np.ndarray) for v in values):
                return _stack_rows(values)
            return values
        return X
    X = ordered(X)
    if isinstance(X, (list, tuple)):
        if X and all(_is_torch(v) for v in X):
            return _stack_rows([_torch_to_numpy(v) for v in X])
        return list(X)
    return X


def _stack_rows(values):
    """Per-row arrays (one embedding a cell) stacked into (n, d); images stay a list."""
    values = [_torch_to_numpy(v) if _is_torch(v) else np.asarray(v) for v in values]
    if all(v.ndim == 1 and v.dtype.kind in "biuf" for v in values):
        dims = {v.shape[0] for v in values}
        if len(dims) != 1:
            raise ValueError(
                f"the per-row arrays have different lengths {sorted(dims)[:5]}; every "
                "embedding row must have the same dimension."
            )
        return np.stack(values)
    return values


def same_rows(a, b):
    """Whether two outputs of :func:`as_rows` hold the same inputs (same objects or paths).

    Parameters
    ----------
    a, b : ndarray or list
        Rows from :func:`as_rows`.

    Returns
    -------
    same : bool
        True when every row is the same object, or an equal string or path.
    """
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
            and a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
        )
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=False):
        if x is y:
            continue
        if (
            isinstance(x, (str, os.PathLike)) and isinstance(y, (str, os.PathLike))
            and os.fspath(x) == os.fspath(y)
        ):
            continue
        return False
    return True


def _item_kind(item):
    """The kind of one row item, or None when it is no known kind."""
    if isinstance(item, (str, os.PathLike)):
        return "path" if looks_like_image_path(item) else "string"
    if type(item).__module__.startswith("PIL"):
        return "image"
    if isinstance(item, np.ndarray):
        if item.ndim == 3 and item.dtype == np.uint8:
            return "image"
        if item.ndim == 3 and item.dtype.kind == "f":
            return "float image"
        if item.ndim == 1 and item.dtype.kind in "biuf":
            return "embedding"
    if isinstance(item, (list, tuple)) or np.isscalar(item) and not isinstance(item, str):
        return "embedding"
    return None


_KIND_OF_ITEM = {"path": "image", "image": "image", "string": "text", "embedding": "embedding"}


def guess_kind(rows):
    """``"embedding"``, ``"image"`` or ``"text"`` for rows returned by :func:`as_rows`.

    Strings are images when they name image files; other strings need
    ``input="text"``.  Mixed rows raise a ValueError naming the first row of
    another kind.

    Parameters
    ----------
    rows : ndarray or list
        The output of :func:`as_rows`.

    Returns
    -------
    kind : str
    """
    if isinstance(rows, np.ndarray) or not isinstance(rows, list):
        arr = rows
        dtype = getattr(arr, "dtype", None)
        ndim = getattr(arr, "ndim", None)
        if dtype is not None and ndim in (3, 4):
            if dtype == np.uint8:
                return "image"
            if dtype.kind == "f":
                raise ValueError(
                    f"X is a {ndim}-D {dtype} array: images must be uint8 of shape (H, W, 3) "
                    "or (n, H, W, 3) (convert with (255 * x).round().astype(np.uint8)), and "
                    "embeddings a 2-D array of shape (n_samples, n_features)."
                )
        return "embedding"
    if not rows:
        return "embedding"  # empty: check_embeddings names the problem
    first = _item_kind(rows[0])
    if first == "string":
        raise ValueError(
            f"X holds strings that are not image files (e.g. {rows[0]!r}); to decompose "
            "text, pass input='text'; for images pass existing paths with an image suffix "
            f"({', '.join(IMAGE_EXTENSIONS[:4])}, ...)."
        )
    if first == "float image":
        raise ValueError(
            f"X[0] is a float array of shape {rows[0].shape}: images must be uint8 arrays "
            "of shape (H, W, 3) (convert with (255 * x).round().astype(np.uint8)) or PIL "
            "images or paths."
        )
    kind = _KIND_OF_ITEM.get(first, "embedding")
    for i, item in enumerate(rows):
        k = _item_kind(item)
        k = _KIND_OF_ITEM.get(k, k)
        if k != kind and not (kind == "image" and k == "text" and isinstance(item, str)):
            raise ValueError(
                f"X mixes input kinds: X[0] is {_describe(rows[0])} but X[{i}] is "
                f"{_describe(item)}; pass one kind per call (embeddings, images or texts)."
            )
        if kind == "image" and isinstance(item, str) and k != "image":
            raise ValueError(
                f"X[{i}]={item!r} is not an image file although X[0] is; pass only image "
                "paths (or input='text' for texts)."
            )
    return kind


def _describe(item):
    if isinstance(item, np.ndarray):
        return f"an array of shape {item.shape} and dtype {item.dtype}"
    text = repr(item)
    return f"a {type(item).__name__} ({text[:60]})"


def check_embeddings(X):
    """2-D finite float32/float64 embeddings, or a ValueError naming the fix.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Embeddings (float16 and integers become float64; rows are made C-contiguous, so
        a column-major frame gives bit-for-bit the codes of its row-major array).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        float32 stays float32; everything else is float64.
    """
    dtype = getattr(X, "dtype", None)
    if dtype is not None and dtype.kind in "US":
        raise ValueError(
            f"X holds {dtype} data, not numeric embeddings; for texts pass input='text', "
            "for images a list of image paths (or input='image')."
        )
    try:
        return check_array(X, dtype=[np.float64, np.float32], order="C", ensure_min_samples=1)
    except ValueError as exc:
        msg = str(exc)
        if "convert" in msg and "float" in msg or "decimal numbers" in msg:
            raise ValueError(
                "X must be numeric embeddings of shape (n_samples, n_features); it holds "
                "non-numeric values. For texts pass input='text', for images a list of "
                "image paths (or input='image')."
            ) from exc
        raise


def check_dimension(n_features, d, source):
    """Raise a ValueError naming both models when the dimensions differ.

    Parameters
    ----------
    n_features : int
        The inputs' embedding dimension.
    d : int
        The dictionary's.
    source : str
        Where the dictionary came from (for the message).
    """
    if n_features != d:
        raise ValueError(
            f"X has {n_features} features, but SpliceTransformer is expecting {d} "
            f"features as input: embedding dimension {n_features} does not match the "
            f"dictionary's {d}, so the embeddings come from another model than the "
            f"dictionary ({source}); encode both with the same CLIP model."
        )


def check_mean(mean, d):
    """A finite float64 mean vector of length ``d`` (numpy or torch input).

    Parameters
    ----------
    mean : array-like or torch tensor of shape (d,)
        The modality mean.
    d : int
        The embedding dimension.

    Returns
    -------
    mean : ndarray of shape (d,), dtype float64
    """
    if _is_torch(mean):
        mean = _torch_to_numpy(mean)
    mean = np.asarray(mean, dtype=np.float64).ravel()
    if mean.shape != (d,):
        raise ValueError(
            f"image_mean has shape {mean.shape} but the embeddings have {d} features; "
            "pass the mean of the same CLIP model's image embeddings."
        )
    if not np.all(np.isfinite(mean)):
        raise ValueError("image_mean contains NaN or inf; pass a finite mean vector.")
    return mean
