"""Make the report screenshots of docs/user_guide/report.md (headless Chromium, offline).

1. ``report_micrographs.png``: the report of the shared micrograph embeddings
   (no images), decomposed over LVIS, with their imaging techniques as classes.
2. ``report_image_folder.png``: ``sksplice decompose-dir`` then ``sksplice report``
   on crops of scikit-learn's two sample photos in two class folders, with a
   random-weight tiny open_clip model (no weights can be downloaded here, so its
   concepts are arbitrary: the picture shows the layout, not a result).

Run from the repository root: ``python docs/images/make_report_screenshots.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("SKSPLICE_SHARED_DATA", HERE.parents[2] / "shared" / "data"))
TINY = {"embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                       "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1}}
WORDS = ("temple roof tree sky cloud building tower wall stone flower petal leaf garden "
         "pink yellow green blue red bee insect plant water road city mountain").split()


def shoot(page, png, width=1280, height=1000):
    """A screenshot of ``page``, stored as a small palette PNG."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update",
                        "--no-first-run", f"--user-data-dir={profile}", "--hide-scrollbars",
                        f"--window-size={width},{height}", f"--screenshot={png}",
                        "--virtual-time-budget=5000", page.resolve().as_uri()],
                       check=True, capture_output=True)
    with Image.open(png) as im:
        small = im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)
    print(f"{png}: {png.stat().st_size / 1e3:.0f} kB")


def micrographs(work):
    import torch

    from sksplice import ConceptDictionary, SpliceTransformer
    from sksplice.analysis import reconstruction_cosine
    from sksplice.report import write_report

    clip = DATA / "clip-vit-b32"
    cats = sorted(json.loads((clip / "lvis_categories.json").read_text()),
                  key=lambda c: c["id"])
    names = [c["name"].replace("_", " ") for c in cats]
    E = np.load(clip / "lvis_text.npy").astype(np.float64)
    mean = torch.load(DATA / "splice" / "clip_ViT-B-32_image.pt", map_location="cpu").numpy()
    X = np.load(clip / "micrographs_image.npy").astype(np.float64)
    import csv

    with open(clip / "micrographs_labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    st = SpliceTransformer(l1=0.2, dictionary=ConceptDictionary(names, E), image_mean=mean,
                           device="cpu").fit(X)
    codes, _ = st.decompose(X)
    page = write_report(work / "micrographs.html", codes, st,
                        labels=[r["technique"] for r in rows],
                        names=[Path(r["image_local_path"]).name for r in rows],
                        cosine=reconstruction_cosine(st, X, codes),
                        run={"model": "OpenAI CLIP ViT-B/32 (embeddings)",
                             "vocabulary": "LVIS (1203 object names)", "l1": 0.2},
                        title="Micrographs over LVIS concepts")
    shoot(page, HERE / "report_micrographs.png", height=1300)


def image_folder(work):
    import open_clip
    import torch
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from sksplice.cli import main

    os.environ.update(SKSPLICE_CACHE=str(work / "cache"), SKSPLICE_OFFLINE="1")
    config = work / "sksplice-docs-tiny.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    checkpoint = work / "tiny.pt"
    torch.save(open_clip.create_model("sksplice-docs-tiny").state_dict(), checkpoint)
    (work / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    np.save(work / "mean.npy", np.random.default_rng(0).normal(size=32) * 0.1)
    rng = np.random.default_rng(0)
    photos = load_sample_images()
    for cls, photo in zip(("temple", "flower"), photos.images, strict=True):
        for i in range(8):
            y, x = rng.integers(0, photo.shape[0] - 200), rng.integers(0, photo.shape[1] - 260)
            crop = Image.fromarray(photo[y:y + 200, x:x + 260])
            (work / "photos" / cls).mkdir(parents=True, exist_ok=True)
            crop.save(work / "photos" / cls / f"{cls}_{i}.jpg")
    crop.save(work / "photos" / "flower" / "<script>alert(1)<script>.jpg")  # shown as text
    (work / "photos" / "temple" / "broken.jpg").write_bytes(b"not a JPEG")
    main(["decompose-dir", str(work / "photos"), "--out", str(work / "out"), "--model-config",
          str(config), "--checkpoint", str(checkpoint), "--device", "cpu", "--vocabulary",
          str(work / "vocab.txt"), "--mean", str(work / "mean.npy"), "--l1", "0.1",
          "--no-progress", "--no-plots"])
    main(["report", str(work / "out"), "--title", "Two folders of photos", "--top-concepts",
          "4"])
    shoot(work / "out" / "report.html", HERE / "report_image_folder.png", height=1900)


if __name__ == "__main__":
    work = Path(tempfile.mkdtemp(prefix="sksplice_docs_"))
    try:
        micrographs(work)
        image_folder(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
