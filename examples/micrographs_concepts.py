"""Concept probe and concept edit on real CLIP embeddings of 867 micrographs (offline).

Data: ``clip-vit-b32/`` and ``splice/`` of the shared data folder (OpenAI CLIP
ViT-B/32 embeddings; see its README).  The concept vocabulary is the 1203 LVIS
category names plus the ImageNet class names not already in LVIS, embedded by
CLIP's text tower; images are centred with the MSCOCO image mean of the same
model.

1. Probe: ``make_pipeline(SpliceTransformer(...), LogisticRegression())``
   predicting the imaging technique, grid-searched over ``l1`` (and C), against
   the same probe on the dense embeddings; the top concepts per technique.
2. Edit: the concepts most associated with one technique (permutation test,
   Benjamini-Hochberg) are removed with ``ConceptEditor``, in both embedding
   modes, and the effect on that association and on everything else measured.

Usage::

    python examples/micrographs_concepts.py [--data DIR] [--figures DIR] [--json FILE]

``--data`` defaults to ``$SKSPLICE_SHARED_DATA`` or ``../shared/data``
relative to the repository root.  Figures go to ``docs/examples/figures``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: techniques with at least this many images are kept for the probe
MIN_PER_CLASS = 20
#: technique whose concepts are removed in the edit
EDIT_TECHNIQUE = "Atomic force microscopy (AFM)"
#: how many of its most associated concepts to remove
N_REMOVE = 5
L1_GRID = [0.1, 0.15, 0.2, 0.3]
#: inverse regularisation of both logistic-regression probes
PROBE_C = 1.0
SHORT = {
    "Reflected light microscopy": "reflected light",
    "Scanning electron microscopy (SEM)": "SEM",
    "Transmission electron microscopy (TEM)": "TEM",
    "Transmitted light microscopy": "transmitted light",
    "Cross-polarised light microscopy": "cross-polarised light",
    "Scanning electron microscopy (SEM) in secondary electron imaging (SEI) mode": "SEM (SEI mode)",
    "Atomic force microscopy (AFM)": "AFM",
}


def data_dir(arg):
    path = Path(arg or os.environ.get("SKSPLICE_SHARED_DATA") or REPO.parent / "shared" / "data")
    needed = [path / "clip-vit-b32" / f for f in (
        "lvis_text.npy", "lvis_categories.json", "imagenet_zeroshot_head.npy",
        "imagenet_classes.json", "micrographs_image.npy", "micrographs_labels.csv")]
    needed.append(path / "splice" / "clip_ViT-B-32_image.pt")
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        sys.exit(
            "micrographs_concepts.py needs the shared data folder, which was not found:\n  "
            + "\n  ".join(missing)
            + "\nPass --data DIR or set SKSPLICE_SHARED_DATA to the folder holding "
            "clip-vit-b32/ and splice/."
        )
    return path


def load(path):
    """Vocabulary (names, raw text embeddings), image embeddings, labels, image mean."""
    import csv

    import torch

    clip = path / "clip-vit-b32"
    cats = sorted(json.loads((clip / "lvis_categories.json").read_text()), key=lambda c: c["id"])
    lvis_names = [c["name"].replace("_", " ") for c in cats]
    lvis = np.load(clip / "lvis_text.npy").astype(np.float64)
    lvis /= np.linalg.norm(lvis, axis=1, keepdims=True)
    inet_names = json.loads((clip / "imagenet_classes.json").read_text())
    inet = np.load(clip / "imagenet_zeroshot_head.npy").astype(np.float64).T
    seen = {n.lower() for n in lvis_names}
    names, rows = list(lvis_names), [lvis]
    extra = []
    for i, n in enumerate(inet_names):
        if n.lower() not in seen:  # deduplicate against LVIS (and ImageNet's own repeats)
            seen.add(n.lower())
            names.append(n)
            extra.append(i)
    rows.append(inet[extra])
    E = np.vstack(rows)
    X = np.load(clip / "micrographs_image.npy").astype(np.float64)
    with open(clip / "micrographs_labels.csv", newline="") as f:
        labels = list(csv.DictReader(f))
    mean = torch.load(path / "splice" / "clip_ViT-B-32_image.pt", map_location="cpu")
    mean = mean.numpy().astype(np.float64)
    return names, E, len(lvis_names), len(extra), X, labels, mean


def auc(scores, positive):
    """ROC AUC of ``scores`` for the boolean ``positive`` (Mann-Whitney form)."""
    from scipy.stats import rankdata

    r = rankdata(scores)
    n1 = positive.sum()
    n0 = positive.size - n1
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="shared data folder (clip-vit-b32/, splice/)")
    parser.add_argument("--figures", default=str(REPO / "docs" / "examples" / "figures"),
                        help="where to save the PNG figures")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS/OpenMP/torch threads (default 1: on a busy shared machine "
                             "more threads than free cores slow scikit-learn's solvers by "
                             "10-100x)")
    args = parser.parse_args(argv)

    # load every library first: threadpoolctl only limits thread pools already loaded
    import matplotlib
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import torch
    from threadpoolctl import threadpool_limits

    import sksplice.analysis  # noqa: F401
    import sksplice.editing  # noqa: F401

    matplotlib.use("Agg")
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        return run(args)


def run(args):
    """Run the example with parsed arguments; returns the numbers as a dict."""

    import matplotlib.pyplot as plt
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler, StandardScaler

    from sksplice import ConceptDictionary, SpliceTransformer
    from sksplice.core import normalize_rows
    from sksplice.analysis import (
        class_concepts,
        concept_association,
        explain,
        reconstruction_cosine,
        sparsity_sweep,
    )
    from sksplice.editing import ConceptEditor
    from sksplice.plotting import plot_group_comparison, plot_sparsity_sweep, plot_top_concepts

    t_start = time.perf_counter()
    figures = Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    out = {}

    names, E, n_lvis, n_inet, X_all, labels, mean = load(data_dir(args.data))
    cd = ConceptDictionary(names, E)
    tech_all = np.array([r["technique"] for r in labels])
    classes, counts = np.unique(tech_all, return_counts=True)
    kept_classes = classes[counts >= MIN_PER_CLASS]
    keep = np.isin(tech_all, kept_classes)
    X, tech = X_all[keep], tech_all[keep]
    short = np.array([SHORT.get(t, t) for t in tech])
    majority = max(np.mean(tech == c) for c in kept_classes)
    print(f"dictionary: {cd.n_concepts} concepts ({n_lvis} LVIS + {n_inet} ImageNet), "
          f"d={cd.n_features}")
    print(f"images: {keep.sum()} of {len(X_all)} in the {len(kept_classes)} techniques with "
          f">= {MIN_PER_CLASS} images; majority class {majority:.3f}")
    out.update(n_concepts=cd.n_concepts, n_lvis=n_lvis, n_imagenet=n_inet,
               n_images=int(keep.sum()), n_images_all=len(X_all),
               n_classes=len(kept_classes), majority=majority)

    # ------------------------------------------------------------ 1. probe
    # a scaler in front of each probe: CLIP coordinates and concept weights are both
    # small numbers, and lbfgs converges slowly (and needs a large C) on them unscaled
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    lr = LogisticRegression(C=PROBE_C, max_iter=3000)
    t0 = time.perf_counter()
    dense = cross_val_score(make_pipeline(StandardScaler(), clone(lr)), normalize_rows(X), tech,
                            cv=cv)
    dense_acc = (float(dense.mean()), float(dense.std()))
    print(f"\n[probe] dense embeddings: accuracy {dense_acc[0]:.3f} +- {dense_acc[1]:.3f} "
          f"({time.perf_counter() - t0:.1f}s)")

    t0 = time.perf_counter()
    splice = SpliceTransformer(dictionary=cd, image_mean=mean, device="cpu")
    pipe = make_pipeline(splice, MaxAbsScaler(), clone(lr))
    search = GridSearchCV(pipe, {"splicetransformer__l1": L1_GRID}, cv=cv).fit(X, tech)
    res = search.cv_results_
    i = search.best_index_
    best_l1 = search.best_params_["splicetransformer__l1"]
    concept_acc = (float(search.best_score_), float(res["std_test_score"][i]))
    print(f"[probe] concept codes: accuracy {concept_acc[0]:.3f} +- {concept_acc[1]:.3f} "
          f"(best l1={best_l1:g}; grid search {time.perf_counter() - t0:.1f}s)")
    out.update(dense_accuracy=dense_acc, concept_accuracy=concept_acc, best_l1=best_l1,
               probe_C=PROBE_C)

    # the same accuracies from sparsity_sweep, which decomposes all images once per l1
    # and cross-validates the probe on the codes (a SpliceTransformer fits nothing on the
    # training folds, so this equals the pipeline's grid search), plus L0 and cosine
    t0 = time.perf_counter()
    sweep = sparsity_sweep(splice, X, L1_GRID, y=tech, probe=make_pipeline(MaxAbsScaler(),
                           clone(lr)), cv=cv)
    sweep = replace(sweep, dense_accuracy=dense_acc[0], dense_accuracy_std=dense_acc[1])
    grid_scores = np.array([res["mean_test_score"][list(res["param_splicetransformer__l1"])
                                                   .index(l1)] for l1 in L1_GRID])
    same = bool(np.allclose(sweep.accuracy, grid_scores, atol=1e-9))
    print(f"[sweep] sparsity_sweep ({time.perf_counter() - t0:.1f}s); accuracies equal the "
          f"grid search's: {same}")
    for r in sweep.to_records():
        print(f"  l1={r['l1']:<5g} mean L0 {r['mean_l0']:6.1f}  reconstruction cosine "
              f"{r['cosine']:.3f}  accuracy {r['accuracy']:.3f} +- {r['accuracy_std']:.3f}")
    out["sweep"] = sweep.to_records()
    out["sweep_equals_grid_search"] = same
    plot_sparsity_sweep(sweep, title="micrographs: concept probe over l1").savefig(
        figures / "micrographs_sweep.png", dpi=110)

    st = search.best_estimator_[0]  # refitted on all images at the best l1
    W = st.transform(X)
    cos = reconstruction_cosine(st, X, W)
    ex = explain(W, st, cosine=cos, top_k=6, sample_ids=np.flatnonzero(keep))  # row numbers
    first = {c: int(np.flatnonzero(tech == c)[0]) for c in kept_classes}
    out["examples"] = {SHORT.get(c, c): ex[i].to_dict() for c, i in first.items()}
    print("\n[explain] one image per technique:")
    for c, i in first.items():
        print(f"  ({SHORT.get(c, c)}) {ex[i]}".replace("\n", "\n  "))

    dist = class_concepts(W, st, short)
    out["top_concepts"] = {str(k): v for k, v in dist.top_k(5).items()}
    print("\n[classes] top concepts per technique (mean weight, frequency):")
    for c in dist.classes:
        tops = ", ".join(f"{t['concept']} ({t['mean_weight']:.3f}, {t['frequency']:.2f})"
                         for t in dist.top(c, 5))
        print(f"  {c} (n={dist.n_samples[list(dist.classes).index(c)]}): {tops}")
    order = [SHORT.get(c, c) for c in kept_classes[np.argsort(-counts[counts >= MIN_PER_CLASS])]]
    fig, axes = plt.subplots(2, 4, figsize=(17, 7), layout="constrained")
    for ax, c in zip(axes.ravel(), order):
        plot_top_concepts(dist, c, top_k=6, ax=ax)
    axes.ravel()[-1].axis("off")
    fig.savefig(figures / "micrographs_top_concepts.png", dpi=100)

    # ------------------------------------------------------------ 2. edit
    target = SHORT.get(EDIT_TECHNIQUE, EDIT_TECHNIQUE)
    is_t = short == target
    t0 = time.perf_counter()
    assoc = concept_association(W, st, short, groups=target, n_permutations=9999, min_count=5,
                                random_state=0)
    print(f"\n[association] {target} vs the rest: {assoc.n_tests} concepts tested "
          f"(nonzero in >= 5 images), {int(assoc.significant.sum())} significant at BH "
          f"q <= 0.05 ({time.perf_counter() - t0:.1f}s)")
    top = assoc.top(N_REMOVE)
    for r in top:
        print(f"  {r['concept']:<22} effect {r['effect']:+.2f}  mean {r['mean_in']:.3f} vs "
              f"{r['mean_out']:.3f}  used by {r['freq_in']:.0%} vs {r['freq_out']:.0%}  "
              f"q={r['qvalue']:.1e}")
    removed = [r["concept"] for r in top]
    out["association"] = {"n_tests": assoc.n_tests, "n_significant": int(assoc.significant.sum()),
                          "top": top}
    fig = plot_group_comparison(dist, target, "reflected light", top_k=6)
    fig.savefig(figures / "micrographs_afm_vs_reflected.png", dpi=110)

    # the concepts that stay: the other significant ones and the other techniques' top ones
    other = [c for c in assoc.significant_concepts(group=target, direction="both")
             if c not in removed]
    others_top = sorted({t["concept"] for c in dist.classes if c != target
                         for t in dist.top(c, 5)} - set(removed))
    idx_removed = np.array([cd.index(c) for c in removed])
    idx_unrel = np.array([cd.index(c) for c in others_top])
    T = normalize_rows(E)  # raw CLIP text directions, for zero-shot similarities
    Xn = normalize_rows(X)
    W_dense = W.toarray()

    edits = {}
    # edited codes: what make_pipeline(ConceptEditor(...), LogisticRegression()) trains on
    editor = ConceptEditor(st, remove=removed).fit(X)
    codes_edit = editor.edit_codes(W)  # = editor.transform(X), without decomposing again
    after = concept_association(codes_edit, st, short, groups=target, n_permutations=9999,
                                min_count=5, random_state=0)
    still = after.significant_concepts(group=target, direction="both")
    kept_other = sum(c in still for c in other)
    print(f"\n[edit: codes] removed {removed}: their columns are zero in every image, so "
          f"they no longer appear among the {len(still)} significant concepts; "
          f"{kept_other} of the {len(other)} other significant concepts are unchanged")
    out["edit_codes"] = {"removed": removed, "significant_after": len(still),
                         "other_significant_before": len(other),
                         "other_significant_kept": kept_other}
    S0 = Xn @ T[idx_removed].T
    U0 = Xn @ T[idx_unrel].T
    auc_before = [auc(S0[:, j], is_t) for j in range(len(removed))]
    uses = W_dense[:, idx_removed].sum(axis=1) > 0
    effect_before = {r["concept"]: r["effect"] for r in top}
    edited = {}
    for mode in ("recompose", "residual"):
        ed = ConceptEditor(st, remove=removed, output="embedding", mode=mode).fit(X)
        Xe = ed.transform(X)
        edited[mode] = Xe
        cos_orig = np.sum(Xe * Xn, axis=1)
        S1, U1 = Xe @ T[idx_removed].T, Xe @ T[idx_unrel].T
        auc_after = [auc(S1[:, j], is_t) for j in range(len(removed))]
        # decompose the edited embeddings again: do the removed concepts come back?
        W_re = st.transform(Xe).toarray()
        re_assoc = concept_association(W_re, st, short, groups=target, n_permutations=9999,
                                       min_count=5, random_state=0)
        eff_after = {c: float(e) for c, e in zip(re_assoc.concept, re_assoc.effect)}
        keep_cols = np.setdiff1d(np.arange(cd.n_concepts), idx_removed)
        a, b = W_dense[:, keep_cols].ravel(), W_re[:, keep_cols].ravel()
        edits[mode] = e = {
            "cosine_to_original_mean": float(cos_orig.mean()),
            "cosine_to_original_min": float(cos_orig.min()),
            "cosine_to_original_unaffected": float(cos_orig[~uses].mean())
            if (~uses).any() else None,
            "n_affected": int(uses.sum()),
            "removed_auc_before": float(np.mean(auc_before)),
            "removed_auc_after": float(np.mean(auc_after)),
            "removed_auc_per_concept": dict(zip(removed, zip(auc_before, auc_after))),
            "removed_weight_target_before": float(W_dense[is_t][:, idx_removed].sum(1).mean()),
            "removed_weight_target_after": float(W_re[is_t][:, idx_removed].sum(1).mean()),
            "removed_weight_max_after": float(W_re[:, idx_removed].max()),
            "removed_weight_median_before": float(np.median(
                W_dense[:, idx_removed][W_dense[:, idx_removed] > 0])),
            "removed_effect_before": float(np.mean(list(effect_before.values()))),
            "removed_effect_after": float(np.mean([eff_after.get(c, 0.0) for c in removed])),
            "unrelated_similarity_change": float(np.mean(np.abs(U1 - U0))),
            "unrelated_similarity_spread": float(np.mean(np.abs(U0 - U0.mean(0)))),
            "kept_codes_correlation": float(np.corrcoef(a, b)[0, 1]),
        }
        print(f"[edit: {mode}] cosine(edited, original) mean {e['cosine_to_original_mean']:.4f} "
              f"(min {e['cosine_to_original_min']:.4f}); on the {len(Xe) - e['n_affected']} "
              f"images using none of the removed concepts: "
              + (f"{e['cosine_to_original_unaffected']:.4f}"
                 if e["cosine_to_original_unaffected"] is not None else "none"))
        print(f"    {target} vs rest, AUC of CLIP similarity to the removed concepts: "
              f"{e['removed_auc_before']:.3f} -> {e['removed_auc_after']:.3f}")
        print(f"    decomposed again: their summed weight in {target} images "
              f"{e['removed_weight_target_before']:.3f} -> {e['removed_weight_target_after']:.4f}"
              f", mean effect size {e['removed_effect_before']:+.2f} -> "
              f"{e['removed_effect_after']:+.2f} (largest weight left "
              f"{e['removed_weight_max_after']:.4f}; median nonzero weight before "
              f"{e['removed_weight_median_before']:.4f}); other concepts' weights correlate "
              f"{e['kept_codes_correlation']:.3f} with the original codes")
        print(f"    similarity to the other techniques' top concepts moves by "
              f"{e['unrelated_similarity_change']:.4f} on average (their spread across "
              f"images is {e['unrelated_similarity_spread']:.4f})")

    fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
    x = np.arange(len(removed))
    for k, (label, vals) in enumerate([
        ("original", auc_before),
        ("recompose", [edits["recompose"]["removed_auc_per_concept"][c][1] for c in removed]),
        ("residual", [edits["residual"]["removed_auc_per_concept"][c][1] for c in removed]),
    ]):
        axes[0].bar(x + (k - 1) * 0.27, vals, width=0.27, label=label)
    axes[0].axhline(0.5, color="0.3", ls=":", lw=1)
    axes[0].set_xticks(x, labels=removed, rotation=20)
    axes[0].set_ylim(0.3, 1.0)
    axes[0].set_ylabel(f"AUC for {target} vs rest")
    axes[0].set_title("CLIP similarity to each removed concept")
    axes[0].legend(fontsize="small")
    bins = np.linspace(0.5, 1.0, 51)
    for mode, color in (("recompose", "C1"), ("residual", "C2")):
        axes[1].hist(np.sum(edited[mode] * Xn, axis=1), bins=bins, color=color, alpha=0.7,
                     label=f"mode='{mode}'")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("cosine(edited embedding, original embedding)")
    axes[1].set_ylabel("images")
    axes[1].set_title("how much each edit changes the embedding")
    axes[1].legend(fontsize="small")
    fig.savefig(figures / "micrographs_edit.png", dpi=110)
    out["edit_embedding"] = edits
    out["seconds"] = time.perf_counter() - t_start
    print(f"\ntotal {out['seconds']:.1f}s; figures in {figures}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=_jsonable))
    return out


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    main()
