"""Shards as Dask tasks: a planned list of images, or one shard per bag partition.

The estimator travels to the workers once (:func:`sksplice._dask.ship`) and
each worker runs it on its own device (:func:`sksplice._dask.localized`).
"""

from __future__ import annotations

from .._dask import import_dask, localized, ship
from ._decompose import config_digest
from ._format import shard_file
from ._jobs import finish_manifest, new_manifest, shard_job

__all__ = ["decompose_bag_to_shards", "run_shard_plan"]


def _plan_task(entry, out, estimator, root, batch_size, strict, n_concepts, digest):
    return shard_job(entry, out, localized(estimator), root, batch_size, strict, n_concepts,
                     digest)


def run_shard_plan(plan, out, estimator, *, root, batch_size, strict, n_concepts, digest):
    """Run planned shards as Dask tasks on the active scheduler.

    Parameters
    ----------
    plan : list of dict
        The planned shards (``file``, ``images``, ``labels``).
    out : str or path
        The output folder (the workers must see it).
    estimator : SpliceTransformer
        Fitted.
    root : str, path or None
        Folder the image paths are relative to.
    batch_size : int
        Images decoded and embedded at once.
    strict : bool
        Raise on an unreadable image instead of skipping it.
    n_concepts : int
        Columns of the codes.
    digest : str
        The run's settings digest.

    Returns
    -------
    results : list of dict
        One :func:`~sksplice.shards._run.shard_job` result per shard.
    """
    dask, _ = import_dask()
    ref = ship(estimator)
    task = dask.delayed(_plan_task, pure=False)
    tasks = [task(entry, str(out), ref, root, batch_size, strict, n_concepts, digest)
             for entry in plan]
    return list(dask.compute(*tasks))


def _bag_partition_task(part, index, out, estimator, class_index, root, batch_size, strict,
                        n_concepts, digest):
    images, labels = [], []
    for item in part:
        path, label = _split_item(item)
        images.append(str(path))
        labels.append(-1 if label in (None, "") else class_index[str(label)])
    entry = {"file": shard_file(index), "images": images, "labels": labels}
    res = shard_job(entry, out, localized(estimator), root, batch_size, strict, n_concepts,
                    digest)
    return entry, res


def _split_item(item):
    """``(path, label)`` of a bag item: a path, or a ``(path, label)`` pair."""
    if isinstance(item, (tuple, list)) and len(item) == 2:
        path, label = item
        return path, label
    return item, None


def _bag_label(item):
    label = _split_item(item)[1]
    return "" if label is None else str(label)


def decompose_bag_to_shards(bag, out, estimator, *, config, classes, root, batch_size, strict):
    """One shard per bag partition, computed on the active scheduler.

    Parameters
    ----------
    bag : dask.bag.Bag
        Paths, or ``(path, label)`` pairs.
    out : str or path
        The output folder (the workers must see it).
    estimator : SpliceTransformer
        Fitted.
    config : dict
        The run's settings.
    classes : sequence of str or None
        Class names in index order (``None``: the sorted labels of the bag).
    root : str, path or None
        Folder the image paths are relative to.
    batch_size : int
        Images decoded and embedded at once.
    strict : bool
        Raise on an unreadable image instead of skipping it.

    Returns
    -------
    manifest : dict
        The finished manifest.
    """
    dask, _ = import_dask()
    if classes is None:
        classes = sorted(c for c in bag.map(_bag_label).distinct().compute() if c != "")
    classes = [str(c) for c in classes]
    class_index = {c: i for i, c in enumerate(classes)}
    n_concepts = int(estimator.dictionary_.n_concepts)
    digest = config_digest(config)
    ref = ship(estimator)
    task = dask.delayed(_bag_partition_task, pure=False)
    tasks = [
        task(part, i, str(out), ref, class_index, root, batch_size, strict, n_concepts, digest)
        for i, part in enumerate(bag.to_delayed())
    ]
    computed = dask.compute(*tasks)
    plan = [entry for entry, _ in computed]
    results = [res for _, res in computed]
    manifest = new_manifest(config, classes, root, None, plan,
                            sum(len(e["images"]) for e in plan))
    return finish_manifest(manifest, plan, results)
