"""Dask support: decompose (and embed) collections larger than one machine.

``SpliceTransformer.transform`` (and ``CLIPEmbedder.transform``) hand Dask
collections to :func:`transform_dask`, which returns a lazy Dask array whose
blocks are computed in parallel by whatever scheduler is active -- the local
threaded scheduler, or a ``dask.distributed`` cluster.

* The fitted estimator (with its dictionary) travels to the workers once:
  with a ``distributed`` client it is one task's result (``client.submit``,
  with ``retries``) that every task refers to, fetched once per worker; on
  the local schedulers it is a single graph key shared by all tasks.  Unlike
  scattered data, a task's result survives the loss of the workers holding
  it: the scheduler recomputes it elsewhere, so a worker killed mid-transform
  (even during the hand-over) changes nothing in the result.
* On each worker, an estimator fitted with ``device="auto"`` picks that
  worker's device (a GPU worker uses its GPU), once per worker.
* Sparse outputs stay sparse: blocks are ``scipy.sparse.csr_matrix`` and the
  array's ``meta`` says so.

This module knows estimators only by what they offer (duck typing: a
``dictionary_`` and ``build_solver()`` for a SpLiCE transformer, an
``encoder`` to reopen on a worker's device); it imports neither the
estimators nor the shards.  Image collections written to disk as shards
(:func:`sksplice.decompose_to_shards`) use :func:`ship` and
:func:`localized` from ``sksplice.shards``.
"""

from __future__ import annotations

import copy
import threading
import uuid
import weakref

import numpy as np
import scipy.sparse as sp

__all__ = ["import_dask", "is_dask_collection", "localized", "ship", "transform_dask"]


def import_dask():
    """``(dask, dask.array)``, or an ImportError naming the extra to install.

    Returns
    -------
    modules : tuple
        The ``dask`` and ``dask.array`` modules.
    """
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - dask is a dev dependency here
        raise ImportError(
            "Dask inputs need dask: pip install \"sksplice[dask]\"."
        ) from exc
    return dask, da


def is_dask_collection(X):
    """Whether ``X`` is a Dask collection (array, bag, dataframe, delayed).

    Parameters
    ----------
    X : object
        Anything.

    Returns
    -------
    is_dask : bool
        True for a Dask collection.

    Examples
    --------
    >>> import numpy as np
    >>> is_dask_collection(np.zeros(3))
    False
    """
    if type(X).__module__.split(".")[0] != "dask":
        return False
    try:
        import dask
    except ImportError:  # pragma: no cover
        return False
    return dask.is_dask_collection(X)


# ----------------------------------------------------------------- shipping
def _active_client():
    """The ``distributed`` client that will run ``.compute()``, or None."""
    try:
        import dask
        from distributed import default_client
    except ImportError:
        return None
    try:
        client = default_client()
    except ValueError:
        return None
    scheduler = dask.base.get_scheduler()
    if getattr(scheduler, "__self__", None) is client:
        return client
    return None


def ship(obj):
    """Put ``obj`` where every task can reach it, once.

    With an active ``distributed`` client the object becomes the result of
    one task (``client.submit``) and its Future is returned: workers fetch
    it once each, and if every worker holding it dies the scheduler
    recomputes it from the task (a scattered object would be lost, and a
    broadcast to a dying worker fails or waits on it).  Otherwise a
    ``dask.delayed`` wrapping it (one graph key, shared by every task).

    Parameters
    ----------
    obj : object
        Usually a fitted estimator.

    Returns
    -------
    ref : distributed.Future or dask.delayed.Delayed
        What tasks take in place of ``obj``.
    """
    dask, _ = import_dask()
    client = _active_client()
    if client is not None:
        return client.submit(_held, obj, key=f"sksplice-estimator-{uuid.uuid4().hex}",
                             pure=False, retries=SHIP_RETRIES)
    return dask.delayed(obj, name=f"sksplice-estimator-{uuid.uuid4().hex}", traverse=False)


#: Times the task holding a shipped object is retried when it fails (lost workers
#: are handled by the scheduler regardless).
SHIP_RETRIES = 3


def _held(obj):
    """The task whose result is a shipped object (recomputed if its workers die)."""
    return obj


_LOCAL = weakref.WeakKeyDictionary()
_LOCAL_LOCK = threading.Lock()


def localized(estimator):
    """The estimator as this worker should run it (its device resolved here).

    An estimator with ``device="auto"`` was fitted where ``"auto"`` may have
    meant the CPU; on a GPU worker its solver is rebuilt for the GPU.  The
    result is cached per estimator object, so a worker does this (and loads
    the encoder, or factors the dictionary) once, not once per task.

    Parameters
    ----------
    estimator : object
        A fitted estimator; one with ``device="auto"`` and ``build_solver()``
        gets a solver for this worker's device, one whose ``encoder`` has named
        or file weights gets the encoder reopened here.

    Returns
    -------
    local : object
        ``estimator`` itself, or a shallow copy sharing its fitted state.
    """
    with _LOCAL_LOCK:
        try:
            return _LOCAL[estimator]
        except (KeyError, TypeError):
            pass
        local = estimator
        if getattr(estimator, "device", None) == "auto":
            from ._utils import resolve_device

            here = str(resolve_device("auto"))
            solver = getattr(estimator, "solver_", None)
            if solver is not None and str(solver.device) != here and hasattr(
                    estimator, "build_solver"):
                try:
                    solver = estimator.build_solver()  # "auto" resolves on this worker
                except ValueError:  # e.g. a CPU-only solver: keep the one fitted
                    solver = None
                if solver is not None:
                    local = copy.copy(estimator)
                    local.solver_ = solver
            encoder = _encoder_for(getattr(estimator, "encoder", None), here)
            if encoder is not None:
                local = copy.copy(local) if local is estimator else local
                local.encoder = encoder
        try:
            _LOCAL[estimator] = local
        except TypeError:  # not weak-referenceable: no cache
            pass
        return local


def _encoder_for(encoder, here):
    """An open_clip Encoder made elsewhere, reopened on this worker's device (or None).

    Only encoders with named or file weights are reopened (their weights are
    reloaded from the tag or checkpoint anyway after pickling); encoders
    wrapping a live model, or random weights, stay as they are.
    """
    from .encoders import Encoder, get_encoder

    if not isinstance(encoder, Encoder) or encoder.pretrained is None:
        return None
    if str(encoder.device) == here:
        return None
    return get_encoder((encoder.model_name, encoder.pretrained), device=here,
                       cache_dir=encoder.cache_dir, offline=encoder.offline)


# ---------------------------------------------------------------- transform
def _output_spec(estimator, X):
    """(n_outputs, dtype, sparse, kind) of ``estimator.transform`` on blocks of ``X``.

    A SpLiCE transformer is recognised by its fitted ``dictionary_``; the
    estimator itself checks the embeddings (through its public ``embed``) so
    a wrong dimension fails here, before anything is computed.
    """
    if not hasattr(estimator, "dictionary_"):
        return _n_outputs(estimator), np.dtype(np.float32), False, None
    kind = _dask_input_kind(estimator, X)
    if kind == "embedding" and not hasattr(X, "ndim"):
        dtype = np.float64  # bag rows are stacked as float64
    elif kind == "embedding":
        if X.ndim != 2:
            raise ValueError(
                f"a Dask array of embeddings must be 2-D (n_samples, n_features); got "
                f"{X.ndim}-D. Pass images as a uint8 array (n, H, W, 3) or a bag of paths."
            )
        dtype = np.float32 if X.dtype == np.float32 else np.float64
        if (not np.isnan(X.shape[1]) and hasattr(estimator, "embed")
                and getattr(estimator, "input", "auto") in ("auto", "embedding")):
            # the estimator's own validation (dimension, dtype) on one stand-in row
            estimator.embed(np.ones((1, int(X.shape[1])), dtype=dtype))
    else:
        dtype = np.float32
    return estimator.dictionary_.n_concepts, np.dtype(dtype), bool(
        getattr(estimator, "sparse_output", False)
    ), kind


def _n_outputs(estimator):
    for attr in ("n_features_out_", "embed_dim_", "embedding_dim_", "_n_features_out"):
        value = getattr(estimator, attr, None)
        if value is not None:
            return int(value)
    try:
        return len(estimator.get_feature_names_out())
    except Exception as exc:
        raise ValueError(
            f"{type(estimator).__name__} does not say how many columns transform "
            "returns (no n_features_out_ or get_feature_names_out()); fit it first."
        ) from exc


def _dask_input_kind(estimator, X):
    """What the blocks hold: an array's layout says it; a bag holds what fit saw."""
    declared = getattr(estimator, "input", "auto")
    if declared != "auto":
        return declared
    if hasattr(X, "ndim"):  # uint8 (n, H, W, 3) or (H, W, 3) arrays are images
        return "image" if X.dtype == np.uint8 and X.ndim in (3, 4) else "embedding"
    return getattr(estimator, "input_kind_", None) or "image"


def _meta(dtype, sparse):
    return sp.csr_matrix((0, 0), dtype=dtype) if sparse else np.empty((0, 0), dtype=dtype)


def _empty(n_out, dtype, sparse):
    return sp.csr_matrix((0, n_out), dtype=dtype) if sparse else np.empty((0, n_out), dtype)


def _transform_block(block, estimator, n_out, dtype, sparse):
    if len(block) == 0:
        return _empty(n_out, dtype, sparse)
    out = localized(estimator).transform(block)
    if sparse:
        out = sp.csr_matrix(out)
    return out.astype(dtype, copy=False)


def transform_dask(estimator, X):
    """Lazy ``estimator.transform`` of a Dask collection, block by block.

    Parameters
    ----------
    estimator : fitted transformer
        A ``SpliceTransformer`` or ``CLIPEmbedder`` (any fitted transformer
        whose output width is known).
    X : dask.array.Array or dask.bag.Bag
        A Dask array chunked along rows (columns are rechunked into one
        block): embeddings of shape (n_samples, n_features) or uint8 images
        (n, H, W, 3); or a bag of images (paths, PIL images).  Each bag
        partition becomes one block.

    Returns
    -------
    Y : dask.array.Array of shape (n_samples, n_outputs)
        Computed in parallel by the active scheduler; blocks are
        ``scipy.sparse.csr_matrix`` for sparse outputs (``Y._meta`` is a CSR
        matrix too).  Row chunks follow ``X`` (unknown, ``nan``, for a bag:
        use ``Y.compute_chunk_sizes()`` if needed).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> from sksplice import SpliceTransformer
    >>> rng = np.random.default_rng(0)
    >>> E = rng.normal(size=(20, 8))
    >>> st = SpliceTransformer(l1=0.1, dictionary=([f"c{i}" for i in range(20)], E),
    ...                        image_mean=None, solver="sklearn").fit(E[:2])
    >>> X = da.from_array(E[:6] + 0.01, chunks=(2, 8))
    >>> W = st.transform(X)
    >>> W.chunks
    ((2, 2, 2), (20,))
    >>> (W.compute() != st.transform(E[:6] + 0.01)).nnz
    0
    """
    _, da = import_dask()
    import dask.bag as db

    if isinstance(X, da.Array):
        return _transform_array(estimator, X)
    if isinstance(X, db.Bag):
        return _transform_bag(estimator, X)
    raise ValueError(
        f"transform accepts a Dask array (rows chunked) or a Dask bag; got "
        f"{type(X).__name__}. Convert a Dask dataframe with df.to_dask_array(lengths=True)."
    )


def _transform_array(estimator, X):
    _, da = import_dask()
    n_out, dtype, sparse, _ = _output_spec(estimator, X)
    if X.ndim < 2:
        raise ValueError(
            f"expected a 2-D Dask array (n_samples, n_features); got shape {X.shape}. "
            "Reshape a single sample with x.reshape(1, -1)."
        )
    X = X.rechunk({i: -1 for i in range(1, X.ndim)})
    ref = ship(estimator)
    return da.map_blocks(
        _transform_block, X, ref, n_out, dtype, sparse,
        dtype=dtype, chunks=(X.chunks[0], (n_out,)),
        drop_axis=list(range(2, X.ndim)) or None,
        meta=_meta(dtype, sparse),
        name=f"sksplice-transform-{uuid.uuid4().hex}",
    )


def _transform_partition(part, estimator, n_out, dtype, sparse, kind):
    items = list(part)
    if kind == "embedding":
        items = np.asarray(items, dtype=np.float64).reshape(len(items), -1)
    return _transform_block(items, estimator, n_out, dtype, sparse)


def _transform_bag(estimator, bag):
    dask, da = import_dask()
    n_out, dtype, sparse, kind = _output_spec(estimator, bag)
    ref = ship(estimator)
    task = dask.delayed(_transform_partition, pure=True)
    blocks = [
        da.from_delayed(task(part, ref, n_out, dtype, sparse, kind), shape=(np.nan, n_out),
                        dtype=dtype, meta=_meta(dtype, sparse))
        for part in bag.to_delayed()
    ]
    return da.concatenate(blocks, axis=0)
