"""
Searching for a spurious correlation
====================================

A probe can lean on what co-occurs with a label rather than on the label
itself.  :func:`~sksplice.analysis.concept_association` ranks concepts by how
differently they are used in a group and in the rest (a rank test per concept,
a permutation p-value valid for sparse weights, Benjamini-Hochberg control
over all the concepts tested).  Here the group is the micrographs of polymers
(a material), and the question is which concepts mark them -- and whether
those concepts describe the material or the imaging technique that happens to
be used for it.
"""

# %%
# Decompose and attach the material
# ---------------------------------
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
codes, _ = splice.fit().decompose(X)
material = labels["categories"][keep].to_numpy()
polymer = np.where(np.char.find(material.astype(str), "Polymer") >= 0, "polymer", "other")
print(pd.Series(polymer).value_counts().to_string())

# %%
# Concepts associated with polymers
# ---------------------------------
from sksplice.analysis import concept_association

assoc = concept_association(codes, splice, polymer, groups="polymer", n_permutations=1999,
                            min_count=5, random_state=0)
top = pd.DataFrame(assoc.top(8, significant=False))
print(top[["concept", "effect", "freq_in", "freq_out", "qvalue"]].to_string(index=False))

# %%
# Is it the material or the technique?
# ------------------------------------
# Polymers are imaged by cross-polarised light and atomic force microscopy
# (AFM) far more often than the other materials, and several of the concepts
# found ("coil", "solar array") are the ones that mark AFM in
# :ref:`the class distributions <sphx_glr_auto_examples_plot_class_concepts.py>`:
print(pd.crosstab(pd.Series(y, name="technique"), pd.Series(polymer, name="material")))

# %%
# So compare, for each concept, polymer and non-polymer images *of the same
# technique*.  A concept whose frequency follows the technique, and not the
# material within a technique, tracks the technique: a probe for "polymer"
# built on it would fail on polymers imaged otherwise.
import matplotlib.pyplot as plt

names = list(top["concept"][:4])
frame = pd.DataFrame({"technique": y, "polymer": polymer})
for name in names:
    frame[name] = codes[:, splice.dictionary_.index(name)].toarray().ravel() > 0
by = frame.groupby(["technique", "polymer"])[names].mean().unstack("polymer")
fig, axes = plt.subplots(2, 2, figsize=(8, 6), sharex=True, sharey=True, layout="constrained")
axes = axes.ravel()
for ax, name in zip(axes, names, strict=False):
    by[name].plot.barh(ax=ax, legend=ax is axes[1])
    ax.set_title(name)
    ax.set_xlabel("fraction of images")
fig.suptitle("Polymer-associated concepts, by technique")

# %%
# "solar array" is used by most AFM images whatever their material: it marks
# the technique, and it is associated with polymers only because polymers are
# often imaged by AFM.  "coil" and "cincture" are more frequent in polymers
# than in the other materials *within* a technique, so they follow the
# material (on small groups: 4 polymer TEM images, 10 polymer AFM images).
