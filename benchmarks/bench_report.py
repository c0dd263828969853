"""The HTML report (``sksplice report``): build time and file size against the number of images.

For each size, generates that many small JPEG images (smooth colour fields
with noise, 80x60) in two class folders, decomposes them with the real
shard writer (:func:`sksplice.decompose_to_shards`) over a 300-concept
dictionary and a toy 16-d colour-statistics encoder (the report does not
depend on the encoder, and no model weights are needed), then times
``load_decomposition(OUT).to_html()`` -- what ``sksplice report OUT`` runs --
with the default options.  ``--in-memory N`` adds a row built by
:func:`sksplice.report.build_report` from N random sparse codes whose image
paths cycle over the generated files: the report reads an image only for the
thumbnails it embeds, so this measures the size at N images without
generating N files.

Run from the project root (one process, one machine)::

    python benchmarks/bench_report.py                        # 1,000 and 10,000 images
    python benchmarks/bench_report.py --sizes 1000 --in-memory 100000

It prints one row per size: the time to decompose (context; "-" for a folder
kept from an earlier ``--keep`` run), the median and fastest of ``--repeat``
report builds (interleaved over the sizes), the report's size and its
thumbnails, with the load average next to them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_FEATURES = 16
N_CONCEPTS = 300


class ColourStats:
    """``encode_image``: mean colour and a 4x4 red channel of each image (16-d)."""

    def encode_image(self, images):
        out = []
        for im in images:
            a = np.asarray(im.convert("RGB").resize((4, 4)), dtype=np.float64) / 255.0
            out.append(np.concatenate([a.mean(axis=(0, 1)), a[..., 0].ravel()[:13]]) + 0.05)
        return np.asarray(out)

    def encode_text(self, texts):  # pragma: no cover - the dictionary is given
        raise NotImplementedError


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000],
                   help="numbers of generated images (default: 1000 10000)")
    p.add_argument("--in-memory", type=int, default=0, metavar="N",
                   help="also build a report of N rows from codes in memory (e.g. 100000)")
    p.add_argument("--repeat", type=int, default=3,
                   help="report builds per size, interleaved (median reported)")
    p.add_argument("--keep", default=None, help="folder to keep the outputs in (reused)")
    return p.parse_args(argv)


def make_images(root, n, seed=0):
    """``n`` JPEGs, half in ``beach/``, half in ``forest/``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:60, 0:80] / 80.0
    paths = []
    for i in range(n):
        cls = "beach" if i % 2 == 0 else "forest"
        base = rng.uniform(0, 255, 3) if cls == "beach" else rng.uniform(0, 160, 3)
        grad = rng.uniform(-80, 80, (2, 3))
        img = base + xx[..., None] * grad[0] + yy[..., None] * grad[1]
        img += rng.normal(0, 12, img.shape)
        path = Path(root) / cls / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=85)
        paths.append(path)
    return paths


def estimator():
    from sksplice import ConceptDictionary, Encoder
    from sksplice.shards import image_transformer

    rng = np.random.default_rng(0)
    names = [f"concept {i:03d}" for i in range(N_CONCEPTS)]
    E = rng.normal(size=(N_CONCEPTS, N_FEATURES)) + 0.5
    enc = Encoder.from_model(ColourStats(), name="bench-colour-stats", embed_dim=N_FEATURES,
                             device="cpu")
    return image_transformer(enc, ConceptDictionary(names, E), np.full(N_FEATURES, 0.2),
                             l1=0.02, device="cpu")


def main(argv=None):
    args = parse_args(argv)
    from sksplice import decompose_to_shards, load_decomposition
    from sksplice.report import build_report
    from sksplice.shards import list_image_files

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_report_"))
    est = estimator()
    folders, decompose_s = {}, {}
    for n in args.sizes:
        root, out = work / f"images_{n}", work / f"out_{n}"
        if not root.exists():
            make_images(root, n)
        try:  # a folder kept from an earlier run (--keep) is reused
            kept = len(load_decomposition(out).images) == n
        except (OSError, ValueError):
            kept = False
        t0 = time.perf_counter()
        if not kept:
            images, classes = list_image_files(root)
            decompose_to_shards(images, out, est, labels=classes, root=root, plots=False,
                                overwrite=True)
        decompose_s[n] = float("nan") if kept else time.perf_counter() - t0
        folders[n] = out
    times = {n: [] for n in args.sizes}
    for _ in range(args.repeat):  # interleaved: each size once per round
        for n in args.sizes:
            t2 = time.perf_counter()
            load_decomposition(folders[n]).to_html()  # what `sksplice report` runs
            times[n].append(time.perf_counter() - t2)
    rows = []
    for n in args.sizes:
        path = folders[n] / "report.html"
        page = path.read_text(encoding="utf-8")
        d = load_decomposition(folders[n])
        rows.append((f"{n} images (folder)", decompose_s[n], statistics.median(times[n]),
                     min(times[n]), path.stat().st_size, page.count("background-image:url(data:"),
                     os.getloadavg()[0], float(np.diff(d.codes.indptr).mean())))
        last_paths = [Path(d.manifest["root"]) / p for p in d.images]
    if args.in_memory:
        if not args.sizes:
            sys.exit("--in-memory needs at least one --sizes entry (its images are reused)")
        n = args.in_memory
        rng = np.random.default_rng(0)
        import scipy.sparse as sp

        W = sp.random(n, N_CONCEPTS, density=12 / N_CONCEPTS, format="csr", random_state=0)
        t2 = time.perf_counter()
        page = build_report(W, [f"concept {i:03d}" for i in range(N_CONCEPTS)],
                            images=[last_paths[i % len(last_paths)] for i in range(n)],
                            names=[f"class_{i % 2}/img_{i:07d}.jpg" for i in range(n)],
                            labels=[f"class_{i % 2}" for i in range(n)],
                            cosine=rng.uniform(0.6, 0.95, n))
        t3 = time.perf_counter()
        target = work / f"in_memory_{n}.html"
        target.write_text(page, encoding="utf-8")
        rows.append((f"{n} rows (in memory)", float("nan"), t3 - t2, t3 - t2,
                     target.stat().st_size,
                     page.count("background-image:url(data:"), os.getloadavg()[0], 12.0))

    print(f"# {os.cpu_count()} CPUs; outputs in {work}")
    print(f"{'input':>26} {'decompose s':>12} {'report s':>9} {'min s':>6} {'size MB':>8} "
          f"{'thumbnails':>10} {'mean L0':>8} {'load avg':>9}")
    for name, td, tr, tmin, size, thumbs, load, l0 in rows:
        td_text = "-" if td != td else f"{td:.1f}"
        print(f"{name:>26} {td_text:>12} {tr:>9.2f} {tmin:>6.2f} {size / 1e6:>8.2f} "
              f"{thumbs:>10d} {l0:>8.1f} {load:>9.2f}")
    base = rows[0]
    for name, _, tr, _, size, *_ in rows[1:]:
        print(f"# {name} vs {base[0]}: {tr / base[2]:.1f}x the time (median), "
              f"{size / base[4]:.1f}x the size")


if __name__ == "__main__":
    main()
