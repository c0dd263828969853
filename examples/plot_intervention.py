"""
Intervention: removing every "dog" concept
==========================================

The SpLiCE paper's intervention experiment (its reference script
``experiments/intervention.py``): decompose embeddings into named concepts,
remove some, and measure what zero-shot classification and a linear probe
do without them.  Here the inputs are CLIP's 1,000 ImageNet class texts
(its zero-shot head), decomposed over the 1,203 LVIS object names; every
concept naming a dog is removed.  The 118 dog classes (ImageNet 151-268)
should lose their predictions, every other class should keep its own.
"""

# %%
# The classes and the concepts
# ----------------------------
import json
import os
from pathlib import Path

import numpy as np

from sksplice import ConceptDictionary, ConceptEditor, SpliceTransformer, ZeroShotClassifier

# ../shared/data next to the repository (run from its root), or $SKSPLICE_SHARED_DATA
DATA = Path(os.environ.get("SKSPLICE_SHARED_DATA", "../shared/data"))
clip = DATA / "clip-vit-b32"
cats = sorted(json.loads((clip / "lvis_categories.json").read_text()), key=lambda c: c["id"])
L = np.load(clip / "lvis_text.npy").astype(np.float64)
dictionary = ConceptDictionary([c["name"].replace("_", " ") for c in cats], L)
classes = json.loads((clip / "imagenet_classes.json").read_text())
head = np.load(clip / "imagenet_zeroshot_head.npy").astype(np.float64).T  # (1000, 512)
is_dog = (np.arange(1000) >= 151) & (np.arange(1000) <= 268)

# texts are centred on the mean of the (unit-norm) LVIS texts, not on an image mean
text_mean = (L / np.linalg.norm(L, axis=1, keepdims=True)).mean(axis=0)
splice = SpliceTransformer(l1=0.15, dictionary=dictionary, image_mean=text_mean, device="cpu")
DOG = ["dog", "bulldog", "puppy"]  # as whole words: also "dog collar", "pug-dog"...

# %%
# Zero-shot: the reconstructions, with and without the dog concepts
# -----------------------------------------------------------------
# ``ConceptEditor(..., output="embedding")`` rebuilds an embedding from the
# (edited) codes; :class:`~sksplice.ZeroShotClassifier` classifies it by its
# cosine with each class text.  The labels are the column indices (ImageNet's
# names repeat: there are two "missile" classes).
from sklearn.pipeline import make_pipeline

y = np.arange(1000)
plain = make_pipeline(ConceptEditor(splice, output="embedding"), ZeroShotClassifier(head))
edited = make_pipeline(ConceptEditor(splice, remove=DOG, match="word", output="embedding"),
                       ZeroShotClassifier(head))
before = plain.fit(head, y).predict(head)
after = edited.fit(head, y).predict(head)
moved = before != after
print("removed:", list(edited[0].removed_concepts_))
print(f"zero-shot top-1 of the reconstructions: {np.mean(before == y):.3f} before, "
      f"{np.mean(after == y):.3f} after")
print(f"predictions that moved: {moved[is_dog].mean():.1%} of the {is_dog.sum()} dog classes, "
      f"{moved[~is_dog].mean():.1%} of the {(~is_dog).sum()} others")
print(f"dog classes still predicted as some dog: {is_dog[before][is_dog].mean():.1%} before, "
      f"{is_dog[after][is_dog].mean():.1%} after")
for k in np.flatnonzero(moved & is_dog)[:6]:
    print(f"  {classes[k]:>22}: {classes[before[k]]} -> {classes[after[k]]}")

# %%
# A row whose codes hold no dog concept is untouched by the edit, so the few
# other classes that moved all had one (a dingo is a wild dog):
for k in np.flatnonzero(moved & ~is_dog):
    print(f"  {classes[k]:>22}: {classes[before[k]]} -> {classes[after[k]]}")

# %%
# A probe, without the dog evidence
# ---------------------------------
# A dog-or-not logistic regression on the codes, trained on the even-numbered
# classes and tested on the odd ones (classes it never saw).  Editing its
# input codes is the same as zeroing its coefficients of the removed
# concepts: the probe stays as trained and loses that evidence.
from sklearn.linear_model import LogisticRegression

train = y % 2 == 0
codes = splice.fit().transform(head)
probe = LogisticRegression().fit(codes[train], is_dog[train])
editor = ConceptEditor(splice, remove=DOG, match="word").fit(head)
edited_codes = editor.transform(head)
removed = np.isin(splice.get_feature_names_out(), editor.removed_concepts_)
zeroed = probe.coef_.copy()
zeroed[:, removed] = 0.0
same = np.allclose(probe.decision_function(edited_codes[~train]),
                   codes[~train] @ zeroed.ravel() + probe.intercept_)
test_dog, test_other = ~train & is_dog, ~train & ~is_dog
rate = {name: (probe.predict(c[test_dog]).mean(), probe.predict(c[test_other]).mean())
        for name, c in (("codes", codes), ("edited codes", edited_codes))}
for name, (r_dog, r_other) in rate.items():
    print(f"probe says 'dog' on {name:>12}: {r_dog:.1%} of held-out dog classes, "
          f"{r_other:.1%} of the others")
print("edited codes == zeroed coefficients:", same)

# %%
# The figure
# ----------
import matplotlib.pyplot as plt

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
groups = ["dog classes", "other classes"]
bars = ax1.bar(groups, [moved[is_dog].mean(), moved[~is_dog].mean()], color=["C3", "C0"])
ax1.bar_label(bars, fmt="{:.1%}")
ax1.set_ylim(0, 1.1)
ax1.set_ylabel("fraction of zero-shot predictions that moved")
ax1.set_title('zero-shot, after removing "dog" concepts')
x = np.arange(2)
for shift, name, color in ((-0.2, "codes", "0.6"), (0.2, "edited codes", "C3")):
    bars = ax2.bar(x + shift, rate[name], width=0.4, label=name, color=color)
    ax2.bar_label(bars, fmt="{:.1%}", fontsize="small")
ax2.set_xticks(x, ["held-out dog classes", "held-out other classes"])
ax2.set_ylim(0, 1.1)
ax2.set_ylabel("fraction the probe calls 'dog'")
ax2.set_title("dog-or-not probe on the codes")
ax2.legend(loc="upper right", fontsize="small")
plt.show()
