"""Dask support: decompose (and embed) collections larger than one machine.

``SpliceTransformer.transform`` (and ``CLIPEmbedder.transform``) hand Dask
collections to :func:`transform_dask`, which returns a lazy Dask array whose
blocks are computed in parallel by whatever scheduler is active -- the local
threaded scheduler, or a ``dask.distributed`` cluster.

* The fitted estimator (with its dictionary) travels to the workers once:
  with a ``distributed`` client it is scattered to every worker
  (``broadcast=True``) and each task refers to that one copy; on the local
  schedulers it is a single graph key shared by all tasks.
* On each worker, an estimator fitted with ``device="auto"`` picks that
  worker's device (a GPU worker uses its GPU), once per worker.
* Sparse outputs stay sparse: blocks are ``scipy.sparse.csr_matrix`` and the
  array's ``meta`` says so.

Image collections (lists of paths or Dask bags) are written to disk as
shards by :func:`sksplice.decompose_to_shards`, which uses
:func:`run_shard_plan` and :func:`decompose_bag_to_shards` here.
"""

from __future__ import annotations

import copy
import threading
import uuid
import weakref

import numpy as np
import scipy.sparse as sp

__all__ = ["is_dask_collection", "transform_dask"]


def _import_dask():
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

    Returns
    -------
    bool

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

    With an active ``distributed`` client the object is scattered to all
    workers (``broadcast=True``) and a Future is returned; otherwise a
    ``dask.delayed`` wrapping it (one graph key, shared by every task).
    """
    dask, _ = _import_dask()
    client = _active_client()
    if client is not None:
        return client.scatter([obj], broadcast=True, hash=False)[0]
    return dask.delayed(obj, name=f"sksplice-estimator-{uuid.uuid4().hex}", traverse=False)


_LOCAL = weakref.WeakKeyDictionary()
_LOCAL_LOCK = threading.Lock()


def localized(estimator):
    """The estimator as this worker should run it (its device resolved here).

    An estimator with ``device="auto"`` was fitted where ``"auto"`` may have
    meant the CPU; on a GPU worker its solver is rebuilt for the GPU.  The
    result is cached per estimator object, so a worker does this (and loads
    the encoder, or factors the dictionary) once, not once per task.
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
            if solver is not None and str(solver.device) != here:
                from .solvers import get_solver

                local = copy.copy(estimator)
                local.solver_ = get_solver(
                    estimator.solver, tol=estimator.tol, max_iter=estimator.max_iter,
                    device=here, batch_size=estimator.batch_size, n_jobs=estimator.n_jobs,
                )
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
    """(n_outputs, dtype, sparse, kind) of ``estimator.transform`` on blocks of ``X``."""
    from .transformer import SpliceTransformer

    if isinstance(estimator, SpliceTransformer):
        kind = _dask_input_kind(estimator, X)
        if kind == "embedding" and not hasattr(X, "ndim"):
            dtype = np.float64  # bag rows are stacked as float64
        elif kind == "embedding":
            if X.ndim != 2:
                raise ValueError(
                    f"a Dask array of embeddings must be 2-D (n_samples, n_features); got "
                    f"{X.ndim}-D. Pass images as a uint8 array (n, H, W, 3) or a bag of paths."
                )
            d = estimator.dictionary_.n_features
            if not np.isnan(X.shape[1]) and X.shape[1] != d:
                raise ValueError(
                    f"embedding dimension {X.shape[1]} does not match the dictionary's {d}: "
                    "the embeddings come from another model than the dictionary; encode "
                    "both with the same CLIP model."
                )
            dtype = np.float32 if X.dtype == np.float32 else np.float64
        else:
            dtype = np.float32
        return estimator.dictionary_.n_concepts, np.dtype(dtype), bool(
            estimator.sparse_output
        ), kind
    n_out = _n_outputs(estimator)
    return n_out, np.dtype(np.float32), False, None


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
    if estimator.input != "auto":
        return estimator.input
    if hasattr(X, "ndim"):  # an array: uint8 images or embeddings
        return "image" if X.dtype == np.uint8 and X.ndim in (3, 4) else "embedding"
    # a bag: of whatever fit saw (embedding rows, or images)
    return getattr(estimator, "input_kind_", "image")


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
    dask, da = _import_dask()
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
    _, da = _import_dask()
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
    dask, da = _import_dask()
    n_out, dtype, sparse, kind = _output_spec(estimator, bag)
    ref = ship(estimator)
    task = dask.delayed(_transform_partition, pure=True)
    blocks = [
        da.from_delayed(task(part, ref, n_out, dtype, sparse, kind), shape=(np.nan, n_out),
                        dtype=dtype, meta=_meta(dtype, sparse))
        for part in bag.to_delayed()
    ]
    return da.concatenate(blocks, axis=0)


# ------------------------------------------------------------------- shards
def _plan_task(entry, out, estimator, root, batch_size, strict, n_concepts):
    from .shards import _shard_job

    est = localized(estimator)
    return _shard_job(entry, out, est, None, root, batch_size, strict, n_concepts)


def run_shard_plan(plan, out, estimator, *, root, batch_size, strict, n_concepts):
    """Run planned shards as Dask tasks; returns one result dict per shard."""
    dask, _ = _import_dask()
    ref = ship(estimator)
    task = dask.delayed(_plan_task, pure=False)
    tasks = [task(entry, str(out), ref, root, batch_size, strict, n_concepts)
             for entry in plan]
    return list(dask.compute(*tasks))


def _bag_partition_task(part, index, out, estimator, class_index, root, batch_size, strict,
                        n_concepts):
    from .shards import _shard_job

    images, labels = [], []
    for item in part:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            path, label = item
        else:
            path, label = item, None
        images.append(str(path))
        labels.append(-1 if label in (None, "") else class_index[str(label)])
    entry = {"file": f"shards/shard-{index:06d}.npz", "images": images, "labels": labels}
    res = _shard_job(entry, out, localized(estimator), None, root, batch_size, strict,
                     n_concepts)
    return entry, res


def _bag_label(item):
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return "" if item[1] is None else str(item[1])
    return ""


def decompose_bag_to_shards(bag, out, estimator, *, config, classes, root, batch_size, strict):
    """One shard per bag partition, computed on the active scheduler; returns the manifest."""
    dask, _ = _import_dask()
    from .shards import _finish_manifest, _new_manifest

    if classes is None:
        classes = sorted(c for c in bag.map(_bag_label).distinct().compute() if c != "")
    classes = [str(c) for c in classes]
    class_index = {c: i for i, c in enumerate(classes)}
    n_concepts = int(estimator.dictionary_.n_concepts)
    ref = ship(estimator)
    task = dask.delayed(_bag_partition_task, pure=False)
    tasks = [
        task(part, i, str(out), ref, class_index, root, batch_size, strict, n_concepts)
        for i, part in enumerate(bag.to_delayed())
    ]
    computed = dask.compute(*tasks)
    plan = [entry for entry, _ in computed]
    results = [res for _, res in computed]
    manifest = _new_manifest(config, classes, root, None, plan,
                             sum(len(e["images"]) for e in plan))
    return _finish_manifest(manifest, plan, results)
