"""The run driver: plan shards, check or prepare the output folder, compute what is missing.

Guarantees (docs/reliability.md): one writer per folder (a lock); every file
is written atomically; a rerun with the same settings keeps every finished
shard made with those settings and computes only the rest; nothing in the
folder that the package did not write is deleted.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from .. import _defaults
from .._io import check_inside, read_json, temporary_name_pattern
from ._decompose import config_digest, run_config
from ._format import (
    LOCK_FILE,
    PLOT_RE,
    SHARD_RE,
    TOP_FILES,
    check_folder,
    inside,
    read_manifest,
    read_shard,
    shard_file,
    write_json,
)
from ._jobs import finish_manifest, new_manifest, shard_job
from ._lock import folder_lock

__all__ = ["decompose_to_shards", "encoder_identity", "prepare_out"]

#: Temporary files of the names the package writes (shards, top files, plots).
_TMP_RE = re.compile(temporary_name_pattern("X").replace(
    "X", r"(?:shard-[0-9]{6,}\.npz|manifest\.json|concepts\.json|summary\.json|summary\.csv"
         r"|[A-Za-z0-9_-][A-Za-z0-9._-]{0,120}\.png)", 1))


def encoder_identity(estimator):
    """What names the estimator's encoder weights (``"None"`` for anonymous ones)."""
    enc = estimator.encoder
    return str(enc) if isinstance(enc, (str, tuple)) else str(getattr(enc, "identity", enc))


def decompose_to_shards(images, out, estimator, *, labels=None, classes=None, root=None,
                        shard_size=_defaults.SHARD_SIZE,
                        batch_size=_defaults.IMAGE_BATCH_SIZE, strict=False, overwrite=False,
                        summary=True, plots=True, top_k=_defaults.TOP_K, progress=False, dask=None):
    """Embed and decompose image files into sparse code shards in ``out``.

    Runs shard by shard with bounded memory, resumably: rerunning with the same
    settings keeps every finished shard and computes only the missing ones
    (and those whose unreadable images have since been fixed).  One run at a
    time may write ``out``: a second one fails at once with
    :class:`~sksplice.exceptions.FolderInUseError`.  With a Dask bag of paths
    (or ``dask=True``) each shard is a task on the active Dask scheduler (e.g.
    a ``dask.distributed`` cluster; the workers must see ``out``, e.g. on a
    shared filesystem), and the estimator is sent to the workers once.

    Parameters
    ----------
    images : list of str or path, or dask.bag.Bag
        Image files.  A bag's elements are paths or ``(path, label)`` pairs;
        each partition becomes one shard.
    out : str or path
        Output folder (created).
    estimator : SpliceTransformer
        Fitted transformer whose encoder embeds the images; its settings
        (``l1``, dictionary, mean, solver) decide the codes.
    labels : sequence of str, default=None
        Class name of each image (``""`` or None: no class).
    classes : sequence of str, default=None
        All class names, in label-index order (default: the sorted labels).
    root : str or path, default=None
        Folder the image paths are relative to; the manifest stores paths
        relative to it.
    shard_size : int, default=1024
        Images per shard (lists only; a bag's partitions are its shards).
    batch_size : int, default=64
        Images decoded and embedded at once.
    strict : bool, default=False
        Raise :class:`~sksplice.exceptions.BadImageError` on an unreadable
        image instead of skipping it (skipped files are listed in the
        manifest's ``bad_files``).
    overwrite : bool, default=False
        Replace an existing decomposition in ``out`` made with other settings
        (only the files the package wrote are deleted); without it, such a
        folder is an error, so nothing is mixed.
    summary : bool, default=True
        Write the per-class concept summary (``summary.json``, ``summary.csv``).
    plots : bool, default=True
        Write a PNG of the top concepts per class (needs matplotlib).
    top_k : int, default=10
        Concepts per class in the summary and plots.
    progress : bool, default=False
        Show a progress bar (tqdm, on stderr).
    dask : bool, default=None
        Run the shards as Dask tasks.  ``None``: only when ``images`` is a
        Dask bag.

    Returns
    -------
    manifest : dict
        The manifest written to ``out/manifest.json``.

    See Also
    --------
    load_decomposition : Read the folder back.
    """
    from .._dask import is_dask_collection

    out = Path(out)
    if shard_size < 1 or batch_size < 1:
        raise ValueError("shard_size and batch_size must be positive integers.")
    is_bag = is_dask_collection(images)
    config = run_config(estimator, encoder_identity(estimator), None if is_bag else shard_size)
    digest = config_digest(config)
    names = [str(n) for n in estimator.dictionary_.names]
    use_dask = is_bag if dask is None else bool(dask)
    check_folder(out)  # no name in it may lead outside: checked before anything is touched
    _refuse_foreign_folder(out, overwrite)  # before the lock file is made in it
    with folder_lock(out, LOCK_FILE):
        if is_bag:
            from ._dask_shards import decompose_bag_to_shards

            prepare_out(out, config, None, overwrite, names)
            # what an interrupted run leaves: enough for a rerun to recognise the folder
            write_json(out / "manifest.json", new_manifest(config, [], root, None, [], 0))
            manifest = decompose_bag_to_shards(
                images, out, estimator, config=config, classes=classes, root=root,
                batch_size=batch_size, strict=strict,
            )
        else:
            images = [os.fspath(p) for p in images]
            if labels is not None and len(labels) != len(images):
                raise ValueError(f"got {len(labels)} labels for {len(images)} images; pass "
                                 "one label per image.")
            label_idx, classes = _label_indices(labels, classes)
            if label_idx is None:
                label_idx = [-1] * len(images)
            plan = _plan(images, label_idx, int(shard_size))
            manifest = new_manifest(config, classes, root, shard_size, plan, len(images))
            prepare_out(out, config, plan, overwrite, names)
            write_json(out / "manifest.json", manifest)
            if use_dask:
                from ._dask_shards import run_shard_plan

                results = run_shard_plan(plan, out, estimator, root=root,
                                         batch_size=batch_size, strict=strict,
                                         n_concepts=len(names), digest=digest)
            else:
                results = _run_plan_locally(plan, out, estimator, root=root,
                                            batch_size=batch_size, strict=strict,
                                            n_concepts=len(names), digest=digest,
                                            progress=progress)
            manifest = finish_manifest(manifest, plan, results)
        write_json(out / "manifest.json", manifest)
        if summary:
            from ._summary import write_summary

            write_summary(out, top_k=top_k, plots=plots)
            manifest["summary"] = "summary.json"
            manifest["plots"] = sorted(
                p.relative_to(out).as_posix() for p in (out / "plots").glob("*.png")
                if PLOT_RE.fullmatch(p.relative_to(out).as_posix())
            ) if plots else []
            write_json(out / "manifest.json", manifest)
    return manifest


def _plan(images, labels, shard_size):
    return [
        {
            "file": shard_file(i // shard_size),
            "images": list(images[i : i + shard_size]),
            "labels": [int(v) for v in labels[i : i + shard_size]],
        }
        for i in range(0, len(images), shard_size)
    ]


def _label_indices(labels, classes):
    """Class names per image -> (class indices, class list)."""
    if labels is None:
        return None, list(classes or [])
    labels = ["" if v is None else str(v) for v in labels]
    if classes is None:
        classes = sorted({v for v in labels if v != ""})
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ValueError("classes holds a name twice; pass each class name once.")
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({v for v in labels if v != "" and v not in index})
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not in classes; pass classes that "
                         "include every label.")
    return [index.get(v, -1) for v in labels], list(classes)


def _is_package_entry(path):
    """Whether ``path`` (in an output folder) is something the package writes there."""
    name = path.name
    if name in TOP_FILES or name == LOCK_FILE or _TMP_RE.fullmatch(name):
        return True
    if name in ("shards", "plots") and path.is_dir():
        pattern = SHARD_RE if name == "shards" else PLOT_RE
        return all(pattern.fullmatch(f"{name}/{p.name}") or _TMP_RE.fullmatch(p.name)
                   for p in path.iterdir())
    return False


def _refuse_foreign_folder(out, overwrite):
    """A non-empty folder that is no decomposition is refused before anything is written."""
    if overwrite or not out.is_dir() or (out / "manifest.json").exists():
        return
    if not all(_is_package_entry(p) for p in out.iterdir()):
        raise ValueError(
            f"{str(out)!r} exists and is not empty; choose an empty or new output folder "
            "(or pass --overwrite / overwrite=True)."
        )


def _shard_files_on_disk(out):
    folder = out / "shards"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if SHARD_RE.fullmatch(f"shards/{p.name}"))


def _remove_package_files(out, old):
    """Delete the files a previous run wrote in ``out`` -- and nothing else."""
    doomed = list(_shard_files_on_disk(out))
    plots = list((old or {}).get("plots") or [])
    try:
        summary = read_json(out / "summary.json", "summary")
        plots += [e.get("plot") for e in summary if isinstance(e, dict) and e.get("plot")]
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    for rel in plots:
        try:
            doomed.append(inside(out, rel, PLOT_RE))
        except ValueError:
            continue  # not a name the package writes: left alone
    doomed += [out / f for f in TOP_FILES]
    for p in doomed:
        check_inside(out, p)  # never a file elsewhere through a link
        try:
            p.unlink()
        except (FileNotFoundError, IsADirectoryError):
            pass
    for sub in ("shards", "plots"):
        try:
            (out / sub).rmdir()  # only when empty: a user's own files stay
        except OSError:
            pass


def _remove_stale_temporaries(folder):
    """Delete temporary files an interrupted writer of the package left behind."""
    if folder.is_dir():
        for p in folder.iterdir():
            if _TMP_RE.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass


def _same_plan(old, plan):
    def key(shards):
        return [(s.get("file"), s.get("images"), s.get("labels")) for s in shards]

    return plan is None or key(old.get("shards", [])) == key(plan)


def prepare_out(out, config, plan, overwrite, names):
    """Create ``out``, or check that it holds a run with the same settings.

    Parameters
    ----------
    out : Path
        The output folder (its lock is held by the caller).
    config : dict
        The run's settings.
    plan : list of dict or None
        The planned shards (``None`` for a Dask bag, planned by partitions).
    overwrite : bool
        Replace a decomposition made with other settings.
    names : list of str
        The concept names (written to ``concepts.json``).
    """
    if (out / "manifest.json").exists():
        try:
            old, damaged = read_manifest(out), None
        except ValueError as exc:
            old, damaged = None, exc
        if old is not None and old.get("config") == config and _same_plan(old, plan):
            pass  # the same run: resume it
        elif damaged is not None and not overwrite:
            _recover_damaged(out, config, damaged)
        elif not overwrite:
            what = ("other settings" if old.get("config") != config
                    else "another list of images")
            raise ValueError(
                f"{str(out)!r} already holds a decomposition made with {what}; "
                "pass --overwrite (overwrite=True) to replace it, or choose another "
                "output folder."
            )
        else:
            _remove_package_files(out, old)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    for folder in (out, out / "shards", out / "plots"):
        _remove_stale_temporaries(folder)
    try:
        current = read_json(out / "concepts.json", "concept list")
    except (OSError, ValueError):
        current = None
    if current != names:  # missing or damaged: the settings say what it holds
        write_json(out / "concepts.json", names)


def _recover_damaged(out, config, damaged):
    """A damaged manifest: resume when every shard on disk was made with these settings."""
    digest = config_digest(config)
    foreign = []
    for p in _shard_files_on_disk(out):
        try:
            shard = read_shard(p)
        except ValueError:
            continue  # a damaged shard of ours: it is redone
        if shard["config_sha256"] != digest:
            foreign.append(p.name)
    if foreign:
        raise ValueError(
            f"{damaged} The folder holds shards made with other settings ({foreign[0]}, ...), "
            "so it cannot be resumed with these: pass --overwrite (overwrite=True) to replace "
            "it, or choose another output folder."
        )
    warnings.warn(
        f"{damaged} Resuming: the manifest is rebuilt, and the shards already made with "
        "these settings are kept.", UserWarning, stacklevel=3,
    )
    (out / "concepts.json").unlink(missing_ok=True)  # rewritten from these settings


def _run_plan_locally(plan, out, estimator, *, root, batch_size, strict, n_concepts, digest,
                      progress):
    from tqdm.auto import tqdm

    total = sum(len(e["images"]) for e in plan)
    bar = tqdm(total=total, unit="img", disable=not progress, desc="decomposing",
               dynamic_ncols=True)
    try:
        return [shard_job(entry, out, estimator, root, batch_size, strict, n_concepts,
                          digest, progress=bar.update) for entry in plan]
    finally:
        bar.close()


