"""Command-line start-up: where ``sksplice decompose-dir`` spends its time before the first image.

Runs the ``sksplice`` command in fresh processes (as a user does) on a tiny
random-weight open_clip model (written here, offline) and a folder of small
PNG images, and measures:

* the time from launching the process to the moment it opens its first
  image (an audit hook on ``open`` records it), the total time and the
  overall images per second of ``decompose-dir``;
* ``--help`` and ``list-vocabularies`` (commands that load no model);
* ``decompose emb.npy --dictionary d.npz`` (embeddings, no model at all),
  where the tree supports it;
* one ``-X importtime`` run of ``decompose-dir``: what the imports cost,
  grouped by the package that pulls them in.

Give ``--baseline DIR`` (another source tree of sksplice, e.g. an earlier
commit extracted with ``git archive COMMIT | tar -x -C DIR``) to measure it
in the same runs, interleaved; the table then shows both and their ratio.
Timings on a shared machine are noisy: the load average is printed with them.

Run from the project root::

    python benchmarks/bench_startup.py                      # this tree
    python benchmarks/bench_startup.py --baseline /tmp/base --repeats 3

It prints the tables and writes the numbers to
``benchmarks/results/bench_startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                   "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}
WORDS = ("dog cat car tree house beach sky water road bird flower grass mountain snow city "
         "person boat train bus bicycle").split()

#: Run in the child: record when the first image is opened, then run the command.
CHILD = r"""
import atexit, os, sys, time
_first = []
_root = os.environ["BENCH_IMAGES"]
def _hook(event, args):
    if event == "open" and not _first and isinstance(args[0], str) and args[0].startswith(_root):
        _first.append(time.time())
sys.addaudithook(_hook)
atexit.register(lambda: sys.stderr.write(f"\nBENCH first_image={_first[0] if _first else -1}\n"))
from sksplice.cli import main
sys.exit(main(sys.argv[1:]))
"""

#: Packages whose imports are grouped under the one that pulls them in.
GROUPS = ("open_clip", "torch", "sklearn", "matplotlib", "numba", "PIL", "scipy", "sksplice")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-images", type=int, default=200, help="images in the folder")
    p.add_argument("--repeats", type=int, default=3, help="runs of each command per tree")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="another sksplice source tree to measure in the same runs")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_startup.json"))
    return p.parse_args(argv)


def make_inputs(root, n_images):
    """A tiny open_clip config + random checkpoint, a vocabulary, a mean, images, a dictionary."""
    import open_clip
    import torch
    from PIL import Image

    config = root / "bench-startup-tiny.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    model = open_clip.create_model("bench-startup-tiny")
    torch.save(model.state_dict(), root / "tiny.pt")
    (root / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    np.save(root / "mean.npy", np.zeros(TINY["embed_dim"]))
    rng = np.random.default_rng(0)
    for i in range(n_images):
        folder = root / "images" / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    E = rng.normal(size=(len(WORDS), TINY["embed_dim"]))
    np.savez(root / "raw.npz", E=E)  # the dictionary file is written by each tree's own code
    np.save(root / "emb.npy", rng.normal(size=(20, TINY["embed_dim"])))
    return {
        "model": ["--model-config", str(config), "--checkpoint", str(root / "tiny.pt"),
                  "--device", "cpu"],
        "decomp": ["--vocabulary", str(root / "vocab.txt"), "--mean", str(root / "mean.npy")],
    }


def run_child(tree, argv, env, images, importtime=False):
    """Run ``sksplice argv`` from ``tree``; (seconds to the first image or None, total seconds)."""
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", CHILD, *argv]
    env = dict(env, PYTHONPATH=str(tree), BENCH_IMAGES=str(images))
    start = time.time()
    # cwd: the images' folder, so that the tree on PYTHONPATH is the one imported
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900,
                       cwd=images.parent)
    total = time.time() - start
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed in {tree}:\n{r.stderr[-2000:]}")
    m = re.search(r"BENCH first_image=([-\d.e+]+)", r.stderr)
    first = float(m.group(1)) if m else -1.0
    return (first - start if first > 0 else None), total, r.stderr


def import_groups(stderr):
    """Seconds of imports grouped by the top package of each top-level import chain."""
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), len(m.group(3)), m.group(4)))
    out = {}
    for cumulative, indent, name in rows:
        if indent != 1:  # top-level imports only: their cumulative times add up
            continue
        top = name.split(".")[0]
        key = top if top in GROUPS else "other"
        out[key] = out.get(key, 0.0) + cumulative / 1e6
    return out


def main(argv=None):
    args = parse_args(argv)
    trees = [("this tree", ROOT)]
    if args.baseline:
        trees.append(("baseline", Path(args.baseline).resolve()))
    results = {"machine": platform.platform(), "cpus": os.cpu_count(), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        opts = make_inputs(root, args.n_images)
        env = dict(os.environ, SKSPLICE_OFFLINE="1", HF_HUB_OFFLINE="1",
                   SKSPLICE_CACHE=str(root / "cache"), PYTHONWARNINGS="ignore")
        for label, tree in trees:  # each tree writes the dictionary file with its own code
            subprocess.run([sys.executable, "-c", (
                "import numpy as np, sys; from sksplice import ConceptDictionary as C\n"
                "if hasattr(C, 'save'):\n"
                f"    C({WORDS!r}, np.load(sys.argv[1])['E']).save(sys.argv[2])"),
                str(root / "raw.npz"), str(root / f"dict-{label.split()[0]}.npz")],
                env=dict(env, PYTHONPATH=str(tree)), check=True, cwd=root)
        commands = {
            "--help": ["--help"],
            "list-vocabularies": ["list-vocabularies"],
            "decompose-dir": ["decompose-dir", str(root / "images"), *opts["model"],
                              *opts["decomp"], "--no-progress", "--overwrite", "--out"],
            "decompose --dictionary (.npy)": ["decompose", str(root / "emb.npy"), "--mean",
                                              str(root / "mean.npy"), "--dictionary"],
        }
        times = {(c, label): [] for c in commands for label, _ in trees}
        for rep in range(args.repeats):
            for name, base in commands.items():
                for label, tree in trees:  # interleaved: the load hits both alike
                    argv = list(base)
                    if name == "decompose-dir":
                        argv.append(str(root / f"out-{label.split()[0]}-{rep}"))
                    elif name.startswith("decompose --dictionary"):
                        path = root / f"dict-{label.split()[0]}.npz"
                        if not path.exists():
                            continue
                        argv.append(str(path))
                    first, total, _ = run_child(tree, argv, env, root / "images")
                    times[(name, label)].append((first, total, os.getloadavg()[0]))
        imports = {}
        for label, tree in trees:
            argv = [*commands["decompose-dir"], str(root / f"out-imp-{label.split()[0]}")]
            _, _, stderr = run_child(tree, argv, env, root / "images", importtime=True)
            imports[label] = import_groups(stderr)

    print(f"sksplice start-up, {args.n_images} images, tiny random-weight model, median of "
          f"{args.repeats} runs (load average at each run in brackets)")
    head = f"{'command':<32} {'tree':<10} {'first image s':>13} {'total s':>8} {'images/s':>9}"
    print(head)
    print("-" * len(head))
    for name in commands:
        for label, _ in trees:
            runs = times[(name, label)]
            if not runs:
                print(f"{name:<32} {label:<10} {'n/a':>13} {'n/a':>8} {'':>9}")
                continue
            firsts = [f for f, _, _ in runs if f is not None]
            first = statistics.median(firsts) if firsts else None
            total = statistics.median(t for _, t, _ in runs)
            rate = args.n_images / total if name == "decompose-dir" else None
            load = ", ".join(f"{ld:.1f}" for _, _, ld in runs)
            print(f"{name:<32} {label:<10} {'' if first is None else f'{first:13.2f}':>13} "
                  f"{total:8.2f} {'' if rate is None else f'{rate:9.1f}':>9}  [{load}]")
            results["rows"].append({"command": name, "tree": label, "first_image_s": first,
                                    "total_s": total, "runs": runs})
    if len(trees) == 2:
        print("\nratio baseline / this tree (total time):")
        for name in commands:
            a, b = times[(name, "this tree")], times[(name, "baseline")]
            if a and b:
                ra = statistics.median(t for _, t, _ in a)
                rb = statistics.median(t for _, t, _ in b)
                print(f"  {name:<32} {rb / ra:5.2f}x")
    print("\nimports of one decompose-dir run (-X importtime, seconds, by the package "
          "importing them):")
    keys = sorted({k for v in imports.values() for k in v}, key=lambda k: -imports["this tree"]
                  .get(k, 0))
    print(f"  {'package':<12}" + "".join(f"{label:>12}" for label, _ in trees))
    for k in keys:
        print(f"  {k:<12}" + "".join(f"{imports[label].get(k, 0.0):12.2f}" for label, _ in trees))
    results["imports"] = imports
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
