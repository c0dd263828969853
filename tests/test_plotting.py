"""Plots: each returns a Figure and saves a PNG; matplotlib missing gives an ImportError."""

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sksplice.analysis import (  # noqa: E402
    SparsitySweep,
    class_concepts,
    explain,
)
from sksplice.plotting import (  # noqa: E402
    plot_group_comparison,
    plot_probe_concepts,
    plot_sparsity_sweep,
    plot_top_concepts,
)

NAMES = ["sea", "snow", "sky", "sand", "tree"]
W = np.array([
    [0.6, 0.0, 0.1, 0.3, 0.0],
    [0.4, 0.0, 0.0, 0.2, 0.0],
    [0.0, 0.5, 0.1, 0.0, 0.2],
    [0.0, 0.0, 0.0, 0.0, 0.0],
])
Y = ["beach", "beach", "ski", "ski"]


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _saved(fig, path):
    fig.savefig(path)
    assert path.exists() and path.stat().st_size > 1000
    return path


def test_top_concepts_of_a_sample(tmp_path):
    ex = explain(W, NAMES, top_k=2)
    fig = plot_top_concepts(ex[0])
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["sea", "sand"]
    assert [p.get_width() for p in ax.patches] == [0.6, 0.3]
    _saved(fig, tmp_path / "sample.png")


def test_top_concepts_of_a_class(tmp_path):
    dist = class_concepts(W, NAMES, Y)
    fig = plot_top_concepts(dist, "beach", top_k=3, by="frequency")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["sea", "sand", "sky"]
    _saved(fig, tmp_path / "class.png")
    fig, ax = plt.subplots()
    assert plot_top_concepts(dist, "ski", ax=ax) is fig


def test_group_comparison(tmp_path):
    dist = class_concepts(W, NAMES, Y)
    fig = plot_group_comparison(dist, "beach", "ski", top_k=2)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert set(labels) == {"sea", "sand", "snow", "tree"}
    assert labels[0] == "sea" and labels[-1] == "snow"  # sorted by beach - ski
    assert len(ax.patches) == 2 * len(labels)
    _saved(fig, tmp_path / "groups.png")
    with pytest.raises(ValueError, match="same group"):
        plot_group_comparison(dist, "ski", "ski")


def test_sparsity_sweep_plot(tmp_path):
    sweep = SparsitySweep(
        l1=np.array([0.05, 0.1, 0.25]), mean_l0=np.array([40.0, 12.0, 3.0]),
        cosine=np.array([0.8, 0.7, 0.6]), zero_fraction=np.zeros(3),
        accuracy=np.array([0.9, 0.88, 0.8]), accuracy_std=np.full(3, 0.02),
        dense_accuracy=0.93, scoring="accuracy",
    )
    fig = plot_sparsity_sweep(sweep, title="sweep")
    assert len(fig.axes) == 3  # L0 + its cosine twin, accuracy
    _saved(fig, tmp_path / "sweep.png")
    no_labels = SparsitySweep(l1=sweep.l1, mean_l0=sweep.mean_l0, cosine=sweep.cosine,
                              zero_fraction=sweep.zero_fraction)
    _saved(plot_sparsity_sweep(no_labels), tmp_path / "sweep_unlabelled.png")


def test_sparsity_sweep_plot_shows_retention_against_dense(tmp_path):
    sweep = SparsitySweep(
        l1=np.array([0.05, 0.25]), mean_l0=np.array([30.0, 5.0]),
        cosine=np.array([0.9, 0.7]), zero_fraction=np.zeros(2),
        zero_shot_accuracy=np.array([0.99, 0.65]), dense_zero_shot_accuracy=1.0,
        retrieval_precision=np.array([0.7, 0.5]), dense_retrieval_precision=0.74,
        retrieval_k=10,
    )
    fig = plot_sparsity_sweep(sweep)
    assert len(fig.axes) == 3  # L0 + its cosine twin, retention (no probe)
    ax = fig.axes[1]
    assert ax.get_title() == "what the reconstructions keep"
    curves = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(curves["zero-shot accuracy, reconstructions"].get_ydata(),
                               [0.99, 0.65])
    np.testing.assert_allclose(curves["zero-shot accuracy, dense (1.000)"].get_ydata(), [1, 1])
    assert "retrieval precision@10, dense (0.740)" in curves
    _saved(fig, tmp_path / "retention.png")
    with_probe = SparsitySweep(**{**sweep.__dict__, "accuracy": np.array([0.9, 0.8]),
                                  "accuracy_std": np.zeros(2)})
    assert [a.get_title() for a in plot_sparsity_sweep(with_probe).axes][:3] == [
        "sparsity vs fidelity", "probe accuracy vs sparsity", "what the reconstructions keep"]


def test_nothing_to_plot_and_wrong_inputs():
    ex = explain(W, NAMES)
    with pytest.raises(ValueError, match="nothing to explain"):
        plot_top_concepts(ex[3])
    dist = class_concepts(W, NAMES, ["a", "a", "b", "c"])
    with pytest.raises(ValueError, match="nothing to explain for class 'c'"):
        plot_top_concepts(dist, "c")
    with pytest.raises(ValueError, match="pass label="):
        plot_top_concepts(dist)
    with pytest.raises(ValueError, match="Explanation or ClassConcepts"):
        plot_top_concepts(W)
    with pytest.raises(ValueError, match="SparsitySweep"):
        plot_sparsity_sweep(dist)


def test_probe_concepts_plot(tmp_path):
    pd = pytest.importorskip("pandas")
    table = pd.DataFrame({
        "class": ["beach", "beach", "beach", "ski", "ski"],
        "concept": ["sea", "sand", "snow", "snow", "sky"],
        "contribution": [0.9, 0.4, -0.2, 0.7, 0.1],
    })
    fig = plot_probe_concepts(table, top_k=2)
    assert [ax.get_title() for ax in fig.axes] == ["beach", "ski"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["sea", "sand"]
    _saved(fig, tmp_path / "probe.png")
    one = plot_probe_concepts(table, "ski")
    assert [ax.get_title() for ax in one.axes] == ["ski"]
    assert len(one.axes[0].patches) == 2
    with pytest.raises(ValueError, match="class 'desert' is not in the table"):
        plot_probe_concepts(table, "desert")
    with pytest.raises(ValueError, match="lacks the column"):
        plot_probe_concepts(table.drop(columns="contribution"))


def test_matplotlib_missing_names_the_extra(monkeypatch):
    ex = explain(W, NAMES)
    dist = class_concepts(W, NAMES, Y)
    for mod in [m for m in list(sys.modules) if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "sksplice\[plot\]"'):
        plot_top_concepts(ex[0])
    with pytest.raises(ImportError, match=r"sksplice\[plot\]"):
        plot_group_comparison(dist, "beach", "ski")
    sweep = SparsitySweep(l1=np.array([0.1]), mean_l0=np.array([3.0]), cosine=np.array([0.7]),
                          zero_fraction=np.zeros(1))
    with pytest.raises(ImportError, match=r"sksplice\[plot\]"):
        plot_sparsity_sweep(sweep)
