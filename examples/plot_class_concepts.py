"""
Concept distributions per class
===============================

:func:`~sksplice.analysis.class_concepts` gives, for every class, the mean
weight of each concept and the fraction of its images that use it.  Two
imaging techniques are compared side by side.
"""

# %%
# Decompose the micrographs over the LVIS concepts
# ------------------------------------------------
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
splice = SpliceTransformer(l1=0.2, dictionary=dictionary, image_mean=image_mean, device="cpu")
codes, info = splice.fit().decompose(X)  # the exact SpLiCE weights
print(f"{codes.shape[0]} images, {codes.nnz / codes.shape[0]:.1f} concepts per image")

# %%
# Mean weight and frequency of each concept per technique
# -------------------------------------------------------
from sksplice.analysis import class_concepts

dist = class_concepts(codes, splice, y)
print(dist.to_frame(top_k=3).to_string(index=False))

# %%
# Two techniques side by side
# ---------------------------
from sksplice.plotting import plot_group_comparison, plot_top_concepts

fig = plot_group_comparison(dist, "AFM", "reflected light", top_k=6)

# %%
# One class, ranked by how many of its images use each concept
fig = plot_top_concepts(dist, "TEM", by="frequency", top_k=8)
