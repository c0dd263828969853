"""Per-class concept summaries and plots of a decomposition folder, streamed shard by shard."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .. import _defaults
from .._io import atomic_write
from ._format import (
    SHARD_RE,
    inside,
    read_concepts,
    read_manifest,
    read_shard,
    write_json,
)

__all__ = ["group_names", "write_summary"]


def _safe_filename(name):
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "class"
    return safe[:100]


def group_names(classes, n_unlabelled):
    """The summary's group names: the classes, then one group for images without a class.

    That group is ``"(all)"`` when no image has a class and ``"(unlabelled)"``
    otherwise; a class of the same name never merges with it (the group's
    name then gets a number: ``"(unlabelled 2)"``).

    Parameters
    ----------
    classes : list of str
        Class names.
    n_unlabelled : int
        Images without a class (unused: the group always exists, so class
        indices and group indices agree).

    Returns
    -------
    names : list of str
        ``len(classes) + 1`` distinct names.
    """
    base = "(all)" if not classes else "(unlabelled)"
    taken = set(classes)
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base[:-1]} {i})"
    return list(classes) + [name]


def write_summary(out, *, top_k=_defaults.TOP_K, plots=True):
    """Per-class concept summary of a decomposition folder, streamed shard by shard.

    Writes ``summary.json`` (per class: images, mean L0, mean reconstruction
    cosine and the ``top_k`` concepts by mean weight, with the fraction of
    images using each) and ``summary.csv`` (one row per class and concept),
    and with ``plots=True`` a bar chart per class in ``plots/``.  Images
    without a class are summarised as one group named ``"(all)"`` when no
    image has a class, and as ``"(unlabelled)"`` otherwise (see
    :func:`group_names`: a class never merges with that group).

    Parameters
    ----------
    out : str or path
        A complete decomposition folder.
    top_k : int, default=10
        Concepts listed per class.
    plots : bool, default=True
        Also write ``plots/<class>.png`` (needs matplotlib).

    Returns
    -------
    summary : list of dict
        One entry per class, as written to ``summary.json``.
    """
    from ..analysis import ClassConcepts

    out = Path(out)
    manifest = read_manifest(out)
    names = read_concepts(out, manifest)
    classes = [str(c) for c in manifest.get("classes", [])]
    n_groups = len(classes) + 1  # the last group: images without a class
    k = len(names)
    weight_sum = np.zeros((n_groups, k))
    used = np.zeros((n_groups, k))
    count = np.zeros(n_groups)
    l0_sum = np.zeros(n_groups)
    cos_sum = np.zeros(n_groups)
    for entry in manifest["shards"]:
        shard = read_shard(inside(out, entry["file"], SHARD_RE))
        codes, lab = shard["codes"], shard["labels"].copy()
        if codes.shape[1] != k or (lab.size and (lab.min() < -1 or lab.max() >= n_groups - 1)):
            raise ValueError(f"shard {entry['file']!r} does not fit {str(out)!r} (columns or "
                             "class indices); delete it and rerun the same command.")
        lab[lab < 0] = n_groups - 1
        onehot = sp.csr_matrix(
            (np.ones(len(lab)), (lab, np.arange(len(lab)))), shape=(n_groups, len(lab))
        )
        weight_sum += np.asarray((onehot @ codes).todense())
        used += np.asarray((onehot @ (codes > 0).astype(np.float64)).todense())
        count += np.bincount(lab, minlength=n_groups)
        l0_sum += np.bincount(lab, weights=np.diff(codes.indptr), minlength=n_groups)
        cos_sum += np.bincount(lab, weights=np.nan_to_num(shard["cosine"]), minlength=n_groups)
    groups = group_names(classes, int(count[-1]))
    keep = np.flatnonzero(count > 0)
    dist = ClassConcepts(
        classes=np.asarray([groups[g] for g in keep], dtype=object),
        concept_names=names,
        n_samples=count[keep].astype(int),
        mean_weight=weight_sum[keep] / count[keep, None],
        frequency=used[keep] / count[keep, None],
    )
    summary, rows = [], []
    for g in keep:
        gname = groups[g]
        top = dist.top(gname, top_k)
        summary.append({
            "class": gname, "n_images": int(count[g]),
            "mean_l0": float(l0_sum[g] / count[g]),
            "mean_cosine": float(cos_sum[g] / count[g]),
            "top_concepts": top,
        })
        rows.extend((gname, r + 1, t["concept"], t["mean_weight"], t["frequency"])
                    for r, t in enumerate(top))
    write_json(out / "summary.json", summary)

    def _csv(f):
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["class", "rank", "concept", "mean_weight", "frequency"])
        w.writerows(rows)
        f.write(buf.getvalue().encode("utf-8"))

    atomic_write(out / "summary.csv", _csv)
    if plots:
        _plot_summary(out, summary, dist, top_k)
    return summary


def _plot_summary(out, summary, dist, top_k):
    """One bar chart per class (``sksplice.plotting.plot_top_concepts``)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency of plots
        raise ImportError("per-class plots need matplotlib: pip install \"sksplice[plot]\", "
                          "or pass --no-plots (plots=False).") from exc
    from ..plotting import plot_top_concepts

    plots_dir = Path(out) / "plots"
    plots_dir.mkdir(exist_ok=True)
    used_names = set()
    for entry in summary:
        entry["plot"] = None
        if not entry["top_concepts"]:
            continue  # every code of the class is zero: nothing to draw
        fname = _safe_filename(entry["class"])
        while fname.lower() in used_names:  # also distinct on case-insensitive disks
            fname += "_"
        used_names.add(fname.lower())
        title = (f"{entry['class']}: top concepts ({entry['n_images']} images, "
                 f"mean L0 {entry['mean_l0']:.1f})")
        fig = plot_top_concepts(dist, entry["class"], top_k=top_k, title=title)
        try:
            atomic_write(plots_dir / f"{fname}.png",
                         lambda f, fig=fig: fig.savefig(f, format="png", dpi=100,
                                                         bbox_inches="tight"))
        finally:
            plt.close(fig)
        entry["plot"] = f"plots/{fname}.png"
    write_json(Path(out) / "summary.json", summary)
