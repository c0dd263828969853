"""Plots for concept analyses (needs matplotlib: ``pip install "sksplice[plot]"``).

Each function draws on a new figure (or on the given ``ax``) and returns the
``matplotlib.figure.Figure``; save it with ``fig.savefig("plot.png")``.

- :func:`plot_top_concepts`: the top concepts of one sample
  (:class:`~sksplice.analysis.Explanation`) or one class
  (:class:`~sksplice.analysis.ClassConcepts`) as a bar chart.
- :func:`plot_group_comparison`: two groups' concept distributions side by side.
- :func:`plot_sparsity_sweep`: L0, reconstruction cosine, probe accuracy and
  zero-shot/retrieval retention against ``l1`` and mean L0
  (:class:`~sksplice.analysis.SparsitySweep`).
- :func:`plot_probe_concepts`: the concepts that drive each class of a probe
  (the table of :func:`~sksplice.analysis.probe_concepts`).
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "plot_group_comparison",
    "plot_probe_concepts",
    "plot_sparsity_sweep",
    "plot_top_concepts",
]


def _check_count(value, name="top_k"):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def _import_pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            'plotting needs matplotlib, which is not installed: pip install "sksplice[plot]" '
            "(or pip install matplotlib)."
        ) from exc
    return plt


def _plain_log(axis, locate=True):
    """Log scale labelled 1, 2, 5, 10, 20, ... in plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if locate:
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _by_label(by):
    """The axis label of a ``by`` ranking key."""
    return "mean weight" if by == "mean_weight" else "fraction of samples using it"


def _name_bars(ax, y, names):
    """Concept names on the horizontal bars at ``y``, the first at the top."""
    ax.set_yticks(y, labels=names)
    ax.invert_yaxis()


def _new_axes(ax, figsize, ncols=1):
    plt = _import_pyplot()
    if ax is not None:
        return ax.figure, ax
    fig, axes = plt.subplots(1, ncols, figsize=figsize, layout="constrained")
    return fig, axes


def plot_top_concepts(source, label=None, *, top_k=10, by="mean_weight", ax=None, title=None,
                      color="C0"):
    """Bar chart of the top concepts of a sample or of a class.

    Parameters
    ----------
    source : Explanation or ClassConcepts
        One sample's explanation (from :func:`sksplice.analysis.explain`) or
        class distributions (from :func:`sksplice.analysis.class_concepts`,
        then ``label`` picks the class).
    label : object, default=None
        The class to plot (``ClassConcepts`` only).
    top_k : int, default=10
        Bars to draw.
    by : {"mean_weight", "frequency"}, default="mean_weight"
        For a class: what the bars show and rank by.
    ax : matplotlib Axes, default=None
        Draw here instead of on a new figure.
    title : str, default=None
        Axes title (default: the sample or class).
    color : matplotlib color, default="C0"
        Colour of the bars.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure drawn on.

    Raises
    ------
    ValueError
        If there is nothing to plot (all weights zero).
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sksplice.analysis import explain
    >>> from sksplice.plotting import plot_top_concepts
    >>> ex = explain(np.array([[0.5, 0.2, 0.0]]), ["cat", "dog", "car"])
    >>> fig = plot_top_concepts(ex[0])
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['cat', 'dog']
    """
    from .analysis import ClassConcepts, Explanation

    top_k = _check_count(top_k)
    if isinstance(source, Explanation):
        if source.is_empty:
            raise ValueError(
                f"nothing to explain for sample {source.sample}: its codes are all zero, "
                "so there are no concepts to plot; decompose with a smaller l1."
            )
        names = source.concepts[:top_k]
        values = source.weights[:top_k]
        xlabel = "weight"
        default_title = f"sample {source.sample}: top concepts (L0 = {source.l0})"
    elif isinstance(source, ClassConcepts):
        if label is None:
            raise ValueError(
                "ClassConcepts holds several classes; pass label=... to pick one of "
                f"{list(source.classes)[:10]}."
            )
        top = source.top(label, top_k, by)
        if not top:
            raise ValueError(
                f"nothing to explain for class {label!r}: no concept is used in its "
                "samples; decompose with a smaller l1."
            )
        names = [t["concept"] for t in top]
        values = [t[by] for t in top]
        xlabel = _by_label(by)
        n = int(source.n_samples[source.index(label)])
        default_title = f"{label} (n = {n}): top concepts"
    else:
        raise ValueError(  # noqa: TRY004 - as every bad value
            f"plot_top_concepts takes an Explanation or ClassConcepts; got "
            f"{type(source).__name__}. Build one with sksplice.analysis.explain or "
            "class_concepts."
        )
    fig, ax = _new_axes(ax, (6, 0.35 * len(names) + 1.2))
    y = np.arange(len(names))
    ax.barh(y, values, color=color)
    _name_bars(ax, y, names)
    ax.set_xlabel(xlabel)
    ax.set_title(title if title is not None else default_title)
    return fig


def plot_group_comparison(distribution, group_a, group_b, *, top_k=8, by="mean_weight",
                          ax=None, title=None, colors=("C0", "C1")):
    """Two groups' concept distributions side by side.

    The union of each group's ``top_k`` concepts, drawn as paired horizontal
    bars and sorted by the difference between the groups.

    Parameters
    ----------
    distribution : ClassConcepts
        From :func:`sksplice.analysis.class_concepts`.
    group_a, group_b : object
        Two classes of ``distribution``.
    top_k : int, default=8
        Concepts taken from each group.
    by : {"mean_weight", "frequency"}, default="mean_weight"
    ax : matplotlib Axes, default=None
        Draw here instead of on a new figure.
    title : str, default=None
        Axes title (default: ``"group_a vs group_b"``).
    colors : pair of matplotlib colors, default=("C0", "C1")
        Bar colours of the two groups.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure drawn on.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sksplice.analysis import class_concepts
    >>> from sksplice.plotting import plot_group_comparison
    >>> W = np.array([[0.6, 0.0, 0.1], [0.4, 0.0, 0.0], [0.0, 0.5, 0.1]])
    >>> dist = class_concepts(W, ["sea", "snow", "sky"], ["beach", "beach", "ski"])
    >>> fig = plot_group_comparison(dist, "beach", "ski")
    >>> len(fig.axes[0].patches)
    6
    """
    from .analysis import ClassConcepts

    if not isinstance(distribution, ClassConcepts):
        raise ValueError(  # noqa: TRY004 - as every bad value
            f"plot_group_comparison takes ClassConcepts (from class_concepts); got "
            f"{type(distribution).__name__}."
        )
    top_k = _check_count(top_k)
    if by not in ("mean_weight", "frequency"):
        raise ValueError(f"by={by!r} is not supported; use 'mean_weight' or 'frequency'.")
    ia, ib = distribution.index(group_a), distribution.index(group_b)
    if ia == ib:
        raise ValueError(f"group_a and group_b are the same group ({group_a!r}); pass two.")
    chosen = []
    for g in (group_a, group_b):
        for t in distribution.top(g, top_k, by):
            if t["concept"] not in chosen:
                chosen.append(t["concept"])
    if not chosen:
        raise ValueError(
            f"nothing to explain: neither {group_a!r} nor {group_b!r} uses any concept."
        )
    values = getattr(distribution, by)
    col = {str(c): j for j, c in enumerate(distribution.concept_names)}
    idx = np.array([col[c] for c in chosen])
    va, vb = values[ia, idx], values[ib, idx]
    order = np.argsort(-(va - vb), kind="stable")
    names = [chosen[i] for i in order]
    va, vb = va[order], vb[order]
    fig, ax = _new_axes(ax, (7, 0.4 * len(names) + 1.4))
    y = np.arange(len(names))
    h = 0.4
    na = int(distribution.n_samples[ia])
    nb = int(distribution.n_samples[ib])
    ax.barh(y - h / 2, va, height=h, color=colors[0], label=f"{group_a} (n = {na})")
    ax.barh(y + h / 2, vb, height=h, color=colors[1], label=f"{group_b} (n = {nb})")
    _name_bars(ax, y, names)
    ax.set_xlabel(_by_label(by))
    ax.legend(loc="best", fontsize="small")
    ax.set_title(title if title is not None else f"{group_a} vs {group_b}")
    return fig


def plot_sparsity_sweep(sweep, *, axes=None, title=None):
    """Sparsity against fidelity, probe accuracy and retention over ``l1``.

    Left: mean L0 (log scale) and mean reconstruction cosine against ``l1``.
    Next (when the sweep has a probe): probe score against mean L0, with
    the dense-embedding probe as a horizontal line when computed.  Last
    (when the sweep has zero-shot or retrieval measures): each against mean
    L0, with its dense baseline as a horizontal line of the same colour, the
    shape of the SpLiCE paper's retention figure.

    Parameters
    ----------
    sweep : SparsitySweep
        From :func:`sksplice.analysis.sparsity_sweep`.
    axes : sequence of matplotlib Axes, default=None
        One axes, plus one for the probe and one for the retention measures
        when the sweep has them, to draw on.
    title : str, default=None
        Figure title.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure drawn on.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sksplice.analysis import SparsitySweep
    >>> from sksplice.plotting import plot_sparsity_sweep
    >>> sweep = SparsitySweep(l1=np.array([0.1, 0.3]), mean_l0=np.array([20.0, 4.0]),
    ...                       cosine=np.array([0.8, 0.7]), zero_fraction=np.zeros(2))
    >>> len(plot_sparsity_sweep(sweep).axes)  # the L0 axes and its cosine twin
    2
    """
    from .analysis import SparsitySweep

    if not isinstance(sweep, SparsitySweep):
        raise ValueError(  # noqa: TRY004 - as every bad value
            f"plot_sparsity_sweep takes a SparsitySweep (from sparsity_sweep); got "
            f"{type(sweep).__name__}."
        )
    has_acc = sweep.accuracy is not None
    retention = _retention_curves(sweep)
    ncols = 1 + has_acc + bool(retention)
    if axes is None:
        fig, axs = _new_axes(None, (5.5 * ncols, 3.8), ncols)
        axs = np.atleast_1d(axs)
    else:
        _import_pyplot()
        axs = np.atleast_1d(np.asarray(axes, dtype=object))
        if axs.size < ncols:
            raise ValueError(f"this sweep needs {ncols} axes; got {axs.size}.")
        fig = axs[0].figure
    ax = axs[0]
    l0 = np.maximum(sweep.mean_l0, 1e-2)
    ax.plot(sweep.l1, l0, "o-", color="C0", label="mean L0")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sweep.l1)
    _plain_log(ax.xaxis, locate=False)
    _plain_log(ax.yaxis)
    ax.set_xlabel("l1")
    ax.set_ylabel("mean L0 (concepts per sample)", color="C0")
    twin = ax.twinx()
    twin.plot(sweep.l1, sweep.cosine, "s--", color="C3", label="cosine")
    twin.set_ylabel("reconstruction cosine", color="C3")
    ax.set_title("sparsity vs fidelity")
    if has_acc:
        ax2 = axs[1]
        ax2.errorbar(sweep.mean_l0, sweep.accuracy, yerr=sweep.accuracy_std, fmt="o-",
                     color="C2", capsize=3, label="concept codes")
        if sweep.dense_accuracy is not None:
            ax2.axhline(sweep.dense_accuracy, color="0.3", ls="--",
                        label=f"dense embeddings ({sweep.dense_accuracy:.3f})")
        for x, yv, l1 in zip(sweep.mean_l0, sweep.accuracy, sweep.l1, strict=False):
            ax2.annotate(f"l1={l1:g}", (x, yv), textcoords="offset points", xytext=(4, -12),
                         fontsize="x-small")
        if np.all(sweep.mean_l0 > 0):
            ax2.set_xscale("log")
            _plain_log(ax2.xaxis)
        ax2.set_xlabel("mean L0 (concepts per sample)")
        ax2.set_ylabel(f"probe {sweep.scoring or 'score'} (cross-validated)")
        ax2.legend(loc="lower right", fontsize="small")
        ax2.set_title("probe accuracy vs sparsity")
    if retention:
        _plot_retention(axs[1 + has_acc], sweep, retention)
    if title is not None:
        fig.suptitle(title)
    return fig


def _retention_curves(sweep):
    """(label, values, dense value) of each retention measure the sweep has."""
    k = sweep.retrieval_k
    named = [("zero_shot_accuracy", "zero-shot accuracy"),
             ("retrieval_precision", f"retrieval precision@{k}"),
             ("retrieval_recall", f"gallery recall@{k}")]
    return [(label, getattr(sweep, name), getattr(sweep, f"dense_{name}"))
            for name, label in named if getattr(sweep, name, None) is not None]


def _plot_retention(ax, sweep, curves):
    """Retention measures against mean L0, dense baselines as horizontal lines."""
    for i, (label, values, dense) in enumerate(curves):
        color = f"C{4 + i}"
        ax.plot(sweep.mean_l0, values, "o-", color=color, label=f"{label}, reconstructions")
        if dense is not None:
            ax.axhline(dense, color=color, ls="--", lw=1,
                       label=f"{label}, dense ({dense:.3f})")
    if np.all(sweep.mean_l0 > 0):
        ax.set_xscale("log")
        _plain_log(ax.xaxis)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("mean L0 (concepts per sample)")
    ax.set_ylabel("fraction")
    ax.legend(loc="lower right", fontsize="x-small")
    ax.set_title("what the reconstructions keep")


def plot_probe_concepts(table, label=None, *, top_k=8, ncols=3, title=None):
    """Bar charts of the concepts that drive each class of a probe.

    Each bar is a concept's contribution (coefficient times mean code) to
    the class's decision function; bars right of zero argue for the class.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`sksplice.analysis.probe_concepts` (columns ``class``,
        ``concept``, ``contribution``...).
    label : object, default=None
        Draw only this class (default: one panel per class).
    top_k : int, default=8
        Concepts per class, by decreasing contribution.
    ncols : int, default=3
        Panels per row.
    title : str, default=None
        Figure title.

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure drawn on.

    Raises
    ------
    ValueError
        If the table lacks the columns of ``probe_concepts`` or ``label`` is
        not one of its classes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> from sksplice.plotting import plot_probe_concepts
    >>> table = pd.DataFrame({"class": ["a", "a", "b"], "concept": ["sea", "sky", "snow"],
    ...                       "contribution": [0.8, 0.1, 0.5]})
    >>> fig = plot_probe_concepts(table)
    >>> [ax.get_title() for ax in fig.axes]
    ['a', 'b']
    """
    top_k = _check_count(top_k)
    ncols = _check_count(ncols, "ncols")
    missing = {"class", "concept", "contribution"} - set(getattr(table, "columns", ()))
    if missing:
        raise ValueError(
            f"plot_probe_concepts takes the table of sksplice.analysis.probe_concepts; this "
            f"one lacks the column(s) {sorted(missing)}."
        )
    classes = list(dict.fromkeys(table["class"]))
    if label is not None:
        hits = [c for c in classes if c == label or str(c) == str(label)]
        if not hits:
            raise ValueError(f"class {label!r} is not in the table; it has {classes[:10]}.")
        classes = hits[:1]
    if not classes:
        raise ValueError("the table is empty: no concept contributes to any class.")
    plt = _import_pyplot()
    ncols = min(ncols, len(classes))
    nrows = -(-len(classes) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, (0.32 * top_k + 1.0) * nrows),
                             layout="constrained", squeeze=False)
    for ax, c in zip(axes.ravel(), classes, strict=False):
        rows = table[table["class"] == c].sort_values("contribution", ascending=False)
        rows = rows.head(top_k)
        y = np.arange(len(rows))
        values = rows["contribution"].to_numpy(dtype=float)
        ax.barh(y, values, color=np.where(values >= 0, "C0", "C3"))
        _name_bars(ax, y, [str(n) for n in rows["concept"]])
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_title(str(c))
        ax.set_xlabel("contribution (coef x mean code)")
    for ax in axes.ravel()[len(classes):]:
        ax.remove()
    if title is not None:
        fig.suptitle(title)
    return fig
