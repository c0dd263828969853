"""The probe's ``output_scale``, checked on tasks it was not chosen on.

``SpliceTransformer(output_scale=30)`` was picked so that the literal
``make_pipeline(SpliceTransformer(l1=l1), LogisticRegression())`` works without
a scaler, on the micrographs' imaging techniques (the README's table).  This
script cross-validates that literal pipeline for ``output_scale`` in
10 / 30 / 100 / 300 and several ``l1`` on real CLIP ViT-B/32 embeddings from
``../shared/data``, next to ``LogisticRegression()`` on the dense (unit-norm)
embeddings:

- ``technique`` (tuned on): the 775 micrographs of the 7 techniques with at
  least 20 images, over the 1,203 LVIS concepts, MSCOCO image mean;
- ``material``: the micrographs' material labels (``categories``, the 5 with
  at least 20 images), same dictionary and mean; ``material-all``: all 867
  micrographs and all 16 label strings (some with one image, so stratified
  folds cannot hold every class);
- ``imagenet-animal``: the 1,000 ImageNet class texts (CLIP's zero-shot head),
  animal (classes 0-397) or not, over LVIS centred on the LVIS text mean.
  Every class is one row, so each test fold holds classes never trained on;
- ``imagenet-dog``: the same rows, dog (classes 151-268) or not.

Run from the project root (one process, one machine)::

    python benchmarks/bench_output_scale.py
    python benchmarks/bench_output_scale.py --tasks material --l1 0.1 0.2 --scales 30 100

It prints one table per task (accuracy, stratified 5-fold CV, shuffled with
a fixed seed) and a summary: the mean over ``l1`` per scale and which scale
is best on each task.  ``--out`` writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SKSPLICE_SHARED_DATA", ROOT.parent / "shared" / "data"))
TASKS = ("technique", "material", "material-all", "imagenet-animal", "imagenet-dog")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--l1", nargs="+", type=float, default=[0.05, 0.1, 0.15, 0.2, 0.25])
    p.add_argument("--scales", nargs="+", type=float, default=[10.0, 30.0, 100.0, 300.0])
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    return p.parse_args(argv)


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def load_task(name):
    """(X, y, dictionary, image_mean, description) of one task."""
    import pandas as pd
    import torch

    from sksplice import ConceptDictionary

    clip = DATA / "clip-vit-b32"
    cats = sorted(json.loads((clip / "lvis_categories.json").read_text()), key=lambda c: c["id"])
    L = np.load(clip / "lvis_text.npy").astype(np.float64)
    lvis = ConceptDictionary([c["name"].replace("_", " ") for c in cats], L)
    if name.startswith("imagenet"):
        X = np.load(clip / "imagenet_zeroshot_head.npy").astype(np.float64).T
        idx = np.arange(X.shape[0])
        y = (idx <= 397) if name == "imagenet-animal" else ((idx >= 151) & (idx <= 268))
        what = "animal" if name == "imagenet-animal" else "dog"
        return X, y.astype(int), lvis, _unit(L).mean(axis=0), (
            f"1000 ImageNet class texts, {what} ({int(y.sum())}) or not, LVIS text mean")
    X = np.load(clip / "micrographs_image.npy").astype(np.float64)
    labels = pd.read_csv(clip / "micrographs_labels.csv")
    column = "technique" if name == "technique" else "categories"
    counts = labels[column].value_counts()
    least = 1 if name == "material-all" else 20
    keep = labels[column].isin(counts[counts >= least].index).to_numpy()
    mean = torch.load(DATA / "splice" / "clip_ViT-B-32_image.pt", map_location="cpu")
    return X[keep], labels[column][keep].to_numpy(), lvis, mean.numpy().astype(np.float64), (
        f"{int(keep.sum())} micrographs, {column} ({int((counts >= least).sum())} classes with "
        f">= {least} images), MSCOCO image mean")


def cv_accuracy(pipe, X, y, cv):
    """Mean CV accuracy and the number of fits that hit max_iter."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import cross_val_score

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        scores = cross_val_score(pipe, X, y, cv=cv, scoring="accuracy")
    n_warn = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return float(scores.mean()), n_warn


def run_task(name, l1_grid, scales, folds):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline

    from sksplice import SpliceTransformer

    X, y, dictionary, mean, what = load_task(name)
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    _, counts = np.unique(y, return_counts=True)
    dense, dense_warn = cv_accuracy(LogisticRegression(), _unit(X), y, cv)
    rows = []
    for l1 in l1_grid:
        st = SpliceTransformer(l1=l1, dictionary=dictionary, image_mean=mean, device="cpu")
        l0 = float(np.mean(np.diff(st.fit().transform(X).indptr)))
        row = {"l1": l1, "mean_l0": l0, "accuracy": {}, "convergence_warnings": {}}
        for scale in scales:
            pipe = make_pipeline(
                SpliceTransformer(l1=l1, dictionary=dictionary, image_mean=mean,
                                  output_scale=scale, device="cpu"),
                LogisticRegression())
            acc, n_warn = cv_accuracy(pipe, X, y, cv)
            row["accuracy"][scale] = acc
            row["convergence_warnings"][scale] = n_warn
        rows.append(row)
    return {"task": name, "what": what, "n": int(len(y)), "majority": float(counts.max() / len(y)),
            "dense": dense, "dense_convergence_warnings": dense_warn, "rows": rows}


def print_task(res, scales):
    print(f"\n## {res['task']}: {res['what']}")
    print(f"majority class {res['majority']:.3f}, dense LogisticRegression() {res['dense']:.3f}")
    head = "| l1 | mean L0 | " + " | ".join(f"scale {s:g}" for s in scales) + " |"
    print(head)
    print("|---:|---:|" + "---:|" * len(scales))
    for row in res["rows"]:
        accs = [row["accuracy"][s] for s in scales]
        best = max(accs)
        cells = [f"**{a:.3f}**" if a == best else f"{a:.3f}" for a in accs]
        warn = sum(row["convergence_warnings"].values())
        note = f" ({warn} fits hit max_iter)" if warn else ""
        print(f"| {row['l1']:g} | {row['mean_l0']:.1f} | " + " | ".join(cells) + f" |{note}")


def main(argv=None):
    args = parse_args(argv)
    if not (DATA / "clip-vit-b32" / "lvis_text.npy").exists():
        raise SystemExit(f"no shared data at {DATA}; set SKSPLICE_SHARED_DATA.")
    start = time.perf_counter()
    results = []
    for name in args.tasks:
        res = run_task(name, args.l1, args.scales, args.folds)
        print_task(res, args.scales)
        results.append(res)
    print("\n## mean accuracy over l1, per scale (best in bold), and the dense probe")
    print("| task | " + " | ".join(f"scale {s:g}" for s in args.scales) + " | dense |")
    print("|---|" + "---:|" * (len(args.scales) + 1))
    for res in results:
        means = [np.mean([r["accuracy"][s] for r in res["rows"]]) for s in args.scales]
        cells = [f"**{m:.3f}**" if m == max(means) else f"{m:.3f}" for m in means]
        print(f"| {res['task']} | " + " | ".join(cells) + f" | {res['dense']:.3f} |")
        res["mean_over_l1"] = dict(zip(args.scales, map(float, means), strict=True))
    print(f"\n{platform.node()}, load {os.getloadavg()[0]:.1f}, "
          f"{time.perf_counter() - start:.0f} s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
