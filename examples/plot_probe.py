"""
A concept-bottleneck probe
==========================

``make_pipeline(SpliceTransformer(), LogisticRegression())`` is a linear probe
whose features are named concepts.  Here it predicts the imaging technique of
microscope images from their CLIP embeddings, and
:func:`~sksplice.analysis.probe_concepts` reads back which concepts drive each
class.
"""

# %%
# Data: CLIP embeddings, the LVIS vocabulary and the image mean
# --------------------------------------------------------------
# The shared data folder holds real OpenAI CLIP ViT-B/32 embeddings; the
# concept dictionary is built from the text embeddings of the 1203 LVIS
# object names.
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
print(f"{len(y)} images, {len(set(y))} techniques, {dictionary.n_concepts} concepts")

# %%
# The probe, next to the same classifier on the dense embeddings
# ---------------------------------------------------------------
# ``transform`` returns the SpLiCE weights times ``output_scale``, features a
# default ``LogisticRegression()`` can use without a scaler.
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y,
                                                    random_state=0)
splice = SpliceTransformer(l1=0.2, dictionary=dictionary, image_mean=image_mean, device="cpu")
probe = make_pipeline(splice, LogisticRegression(max_iter=2000)).fit(X_train, y_train)
dense = LogisticRegression(max_iter=2000).fit(X_train, y_train)
codes = probe[0].transform(X_test)
print(f"concept probe accuracy: {probe.score(X_test, y_test):.3f} "
      f"with {codes.nnz / codes.shape[0]:.1f} concepts per image")
print(f"dense probe accuracy:   {dense.score(X_test, y_test):.3f} with 512 dimensions")
print(f"majority class:         {np.mean(y_test == 'reflected light'):.3f}")

# %%
# Which concepts drive each technique
# -----------------------------------
# For each class, the coefficient of a concept times its mean code in that
# class: what the concept adds to the class's score on average.
from sksplice.analysis import probe_concepts
from sksplice.plotting import plot_probe_concepts

table = probe_concepts(probe, X_test, y_test, top_k=5)
print(table.head(10).to_string(index=False))
fig = plot_probe_concepts(table, top_k=5, ncols=2, title="Concepts that drive each technique")
