"""
Sparsity against fidelity and accuracy
======================================

A larger ``l1`` gives fewer concepts per image, a less faithful
reconstruction and (eventually) a less accurate probe.
:func:`~sksplice.analysis.sparsity_sweep` measures the trade-off over a grid
of ``l1``, with the same probe on the dense embeddings for reference.
"""

# %%
# Sweep ``l1``
# ------------
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sksplice import ConceptDictionary, SpliceTransformer

# ../shared/data next to the repository (run from its root), or $SKSPLICE_SHARED_DATA
DATA = Path(os.environ.get("SKSPLICE_SHARED_DATA", "../shared/data"))
clip = DATA / "clip-vit-b32"
cats = sorted(json.loads((clip / "lvis_categories.json").read_text()), key=lambda c: c["id"])
dictionary = ConceptDictionary([c["name"].replace("_", " ") for c in cats],
                               np.load(clip / "lvis_text.npy").astype(np.float64))
image_mean = torch.load(DATA / "splice" / "clip_ViT-B-32_image.pt", map_location="cpu").numpy()
X = np.load(clip / "micrographs_image.npy")
labels = pd.read_csv(clip / "micrographs_labels.csv")

# the techniques with at least 20 images, by short names
SHORT = {
    "Reflected light microscopy": "reflected light",
    "Scanning electron microscopy (SEM)": "SEM",
    "Transmission electron microscopy (TEM)": "TEM",
    "Transmitted light microscopy": "transmitted light",
    "Cross-polarised light microscopy": "cross-polarised",
    "Scanning electron microscopy (SEM) in secondary electron imaging (SEI) mode": "SEM (SEI)",
    "Atomic force microscopy (AFM)": "AFM",
}
keep = labels["technique"].isin(SHORT).to_numpy()
X, y = X[keep], labels["technique"][keep].map(SHORT).to_numpy()
from sklearn.linear_model import LogisticRegression

from sksplice.analysis import sparsity_sweep

splice = SpliceTransformer(dictionary=dictionary, image_mean=image_mean, device="cpu")
sweep = sparsity_sweep(splice, X, [0.15, 0.2, 0.3], y=y, cv=3, dense_baseline=True,
                       probe=LogisticRegression(max_iter=2000))
print(sweep.to_frame().round(3).to_string(index=False))
print(f"dense embeddings: {sweep.dense_accuracy:.3f}")

# %%
# The plot
# --------
from sksplice.plotting import plot_sparsity_sweep

fig = plot_sparsity_sweep(sweep, title="Micrographs over the LVIS concepts")
