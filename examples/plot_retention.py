"""
How much does SpLiCE keep?
==========================

SpLiCE replaces a dense CLIP embedding with a few named concepts.  How much of
what the embedding is used for survives depends on ``l1``: the paper measures
it with zero-shot accuracy (its ``experiments/zero_shot.py``) and retrieval
(``experiments/retrieval.py``) on the reconstructions.
:func:`~sksplice.analysis.sparsity_sweep` computes both for a grid of ``l1``,
next to the same measures on the dense embeddings.
"""

# %%
# Zero-shot accuracy: ImageNet class texts
# ----------------------------------------
# CLIP's 1,000 ImageNet class texts (its zero-shot head) decomposed over the
# 1,203 LVIS object names and centred on the LVIS texts' mean.  Each
# reconstruction is classified by its cosine with the 1,000 class texts
# (:class:`~sksplice.ZeroShotClassifier`); the dense rows classify themselves
# (accuracy 1.0 up to near-duplicate classes).  One sample per class leaves
# nothing to cross-validate a probe on: ``probe="drop"``.
import json
import os
from pathlib import Path

import numpy as np

from sksplice import ConceptDictionary, SpliceTransformer
from sksplice.analysis import sparsity_sweep

# ../shared/data next to the repository (run from its root), or $SKSPLICE_SHARED_DATA
DATA = Path(os.environ.get("SKSPLICE_SHARED_DATA", "../shared/data"))
clip = DATA / "clip-vit-b32"
cats = sorted(json.loads((clip / "lvis_categories.json").read_text()), key=lambda c: c["id"])
L = np.load(clip / "lvis_text.npy").astype(np.float64)
dictionary = ConceptDictionary([c["name"].replace("_", " ") for c in cats], L)
head = np.load(clip / "imagenet_zeroshot_head.npy").astype(np.float64).T  # (1000, 512)

text_mean = (L / np.linalg.norm(L, axis=1, keepdims=True)).mean(axis=0)
texts = SpliceTransformer(dictionary=dictionary, image_mean=text_mean, device="cpu")
GRID = [0.05, 0.1, 0.15, 0.25, 0.35]
zero_shot = sparsity_sweep(texts, head, GRID, y=np.arange(1000), probe="drop",
                           class_embeddings=head)
print(zero_shot.to_frame().round(3).to_string(index=False))

# %%
# Retrieval: micrographs
# ----------------------
# The 775 microscope images of the 7 imaging techniques with at least 20
# images, over the same concepts, centred with the MSCOCO image mean.  Each
# image's reconstruction queries the dense embeddings of the other 774;
# ``precision@10`` is the fraction of its 10 nearest taken with the same
# imaging technique.  The dense baseline queries with the dense embedding.
# (A probe on the codes, the third measure, is
# :ref:`the sparsity sweep example <sphx_glr_auto_examples_plot_sparsity_sweep.py>`'s.)
import pandas as pd
import torch

X = np.load(clip / "micrographs_image.npy")
technique = pd.read_csv(clip / "micrographs_labels.csv")["technique"].to_numpy()
image_mean = torch.load(DATA / "splice" / "clip_ViT-B-32_image.pt", map_location="cpu").numpy()
images = SpliceTransformer(dictionary=dictionary, image_mean=image_mean, device="cpu")
counts = pd.Series(technique).value_counts()
keep = np.isin(technique, counts[counts >= 20].index)  # 7 techniques, 775 images
retrieval = sparsity_sweep(images, X[keep], GRID, y=technique[keep], probe="drop",
                           retrieval_k=10)
print(retrieval.to_frame().round(3).to_string(index=False))

# %%
# The curves
# ----------
# Each measure against the mean number of concepts, the dense embeddings'
# value as a dashed line of the same colour: the shape of the paper's figure.
from sksplice.plotting import plot_sparsity_sweep

fig = plot_sparsity_sweep(zero_shot, title="ImageNet class texts over the LVIS concepts")

# %%
# Here retrieval precision falls more slowly than zero-shot accuracy: a neighbour
# of the same technique is easier to keep than the one right class of 1,000.
fig = plot_sparsity_sweep(retrieval, title="Micrographs over the LVIS concepts")
