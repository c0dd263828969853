"""
Editing concepts out of embeddings
==================================

:class:`~sksplice.editing.ConceptEditor` removes named concepts from the codes
or from the embeddings themselves.  The concepts most associated with atomic
force microscopy (AFM) are removed, and the effect is measured on a probe
that recognises AFM images.
"""

# %%
# The concepts that mark AFM images
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
from sksplice.analysis import concept_association

splice = SpliceTransformer(l1=0.2, dictionary=dictionary, image_mean=image_mean, device="cpu")
codes, _ = splice.fit().decompose(X)
is_afm = y == "AFM"
assoc = concept_association(codes, splice, is_afm, groups=True, n_permutations=1999,
                            random_state=0)
removed = assoc.significant_concepts()[:5]
print("removed:", removed)

# %%
# Remove them from the codes
# --------------------------
# A concept probe for AFM, trained on the original codes, scores the edited
# codes.  Its AUC drops only a little: the probe spreads its evidence over
# many concepts, and the five removed are the strongest of them, not all.
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline

from sksplice.editing import ConceptEditor

probe = make_pipeline(splice, LogisticRegression(max_iter=2000, class_weight="balanced"))
probe.fit(X, is_afm)
editor = ConceptEditor(splice, remove=removed).fit(X)
auc_before = roc_auc_score(is_afm, probe.decision_function(X))
auc_after = roc_auc_score(is_afm, probe[-1].decision_function(editor.transform(X)))
print(f"concept probe AUC: {auc_before:.3f} on the codes, {auc_after:.3f} on the edited codes")

# %%
# Remove them from the embeddings
# -------------------------------
# ``mode="residual"`` takes only the removed concepts' contribution out of
# each embedding and keeps everything the codes do not explain;
# ``mode="recompose"`` (the paper's) rebuilds the embedding from the edited
# codes alone.  Decomposing the edited embeddings again shows how much of
# each removed concept is left in the AFM images.
import matplotlib.pyplot as plt

columns = [splice.fit().dictionary_.index(name) for name in removed]
weights = {"original": codes[is_afm][:, columns].toarray().mean(axis=0)}
for mode in ("residual", "recompose"):
    edit = ConceptEditor(splice, remove=removed, output="embedding", mode=mode).fit(X)
    again, _ = edit.estimator_.decompose(edit.transform(X[is_afm]))
    weights[mode] = again[:, columns].toarray().mean(axis=0)
print(pd.DataFrame(weights, index=removed).round(4).to_string())

fig, ax = plt.subplots(figsize=(6.5, 3.5), layout="constrained")
pd.DataFrame(weights, index=removed).plot.barh(ax=ax)
ax.invert_yaxis()
ax.set_xlabel("mean weight in AFM images")
ax.set_title("Removed concepts, before and after the edit")
