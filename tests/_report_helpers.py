"""Helpers of the report tests: a decomposition folder with hostile names, HTML checks,
and headless Chromium (``--dump-dom`` and screenshots; None when it is not installed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

#: Class folders and files whose names are HTML: they must render as text.
EVIL_CLASS = "<i>\"Dogs\" & 'cats'"
EVIL_FILE = "<script>alert('x&y')<script>.png"
LAYOUT = ["cats/0.png", "cats/1.png", "cats/2.png", f"{EVIL_CLASS}/0.png",
          f"{EVIL_CLASS}/{EVIL_FILE}", "top.png"]
BROKEN = "cats/broken.png"

_EXTERNAL = re.compile(r"(?i)(\b(https?|ftp|file|wss?)://|@import|(src|href)\s*=\s*[\"']?//)")


def decomposition_folder(tmp, *, plots=False):
    """A decompose-dir folder of generated images in two classes (toy encoder), one broken."""
    from _shard_helpers import image_tree, toy_estimator

    from sksplice.shards import decompose_to_shards, list_image_files

    root = image_tree(Path(tmp) / "images", [*LAYOUT, BROKEN], broken=[BROKEN])
    images, classes = list_image_files(root)
    out = Path(tmp) / "out"
    decompose_to_shards(images, out, toy_estimator(), labels=classes, root=root, plots=plots)
    return out


def external_urls(page):
    """Every reference to a resource outside the page (none may exist)."""
    refs = [m.group(0) for m in _EXTERNAL.finditer(page)]
    refs += [u for u in re.findall(r"url\(([^)]*)\)", page) if not u.startswith("data:")]
    refs += [u for u in re.findall(r"\bsrc=\"([^\"]*)\"", page) if not u.startswith("data:")]
    return refs


def thumbnail_uris(page):
    """The thumbnails the page embeds: ``{id: data URI}``."""
    return dict(re.findall(r"\.t(\d+)\{background-image:url\((data:image/[a-z]+;base64,"
                           r"[A-Za-z0-9+/=]+)\)\}", page))


def chromium():
    """The headless Chromium executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _flags(profile):
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
            "--virtual-time-budget=10000"]


def dump_dom(path, *extra):
    """The DOM after the page's scripts ran (Chromium's ``--dump-dom``)."""
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([chromium(), *_flags(profile), *extra, "--dump-dom",
                            Path(path).resolve().as_uri()],
                           capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def screenshot(path, png, width=1280, height=1600, *extra):
    """A PNG of the page at ``width`` x ``height``; returns it as an RGB array."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([chromium(), *_flags(profile), *extra, f"--screenshot={png}",
                            f"--window-size={width},{height}", "--hide-scrollbars",
                            Path(path).resolve().as_uri()],
                           capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and os.path.exists(png), r.stderr[-2000:]
    with Image.open(png) as im:
        return np.asarray(im.convert("RGB"))


def visible_text(dom):
    """The text a person reads: the DOM without tags, scripts and styles, unescaped."""
    import html

    dom = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", dom)
    return html.unescape(re.sub(r"<[^>]+>", " ", dom))


def notebook_views(folder):
    """One object of each result type with a notebook view, from a decomposition folder."""
    from sksplice import ConceptDictionary, load_decomposition
    from sksplice.analysis import SparsitySweep, class_concepts, concept_association, explain

    d = load_decomposition(folder)
    labels = d.class_names_of_rows()
    keep = labels != ""
    rng = np.random.default_rng(0)
    return {
        "Explanations": explain(d.codes, d.concept_names, cosine=d.cosine,
                                sample_ids=[str(folder.parent / "images" / p)
                                            for p in d.images]),
        "ClassConcepts": class_concepts(d.codes, d.concept_names, labels),
        "ConceptAssociation": concept_association(d.codes[keep], d.concept_names,
                                                  labels[keep], random_state=0,
                                                  n_permutations=99),
        "SparsitySweep": SparsitySweep(l1=np.array([0.1, 0.2]), mean_l0=np.array([9.0, 4.0]),
                                       cosine=np.array([0.9, 0.8]),
                                       zero_fraction=np.array([0.0, 0.1]),
                                       accuracy=np.array([0.7, 0.6]),
                                       accuracy_std=np.array([0.01, 0.02]),
                                       scoring="accuracy"),
        "Decomposition": d,
        "ConceptDictionary": ConceptDictionary(list(d.concept_names),
                                               rng.normal(size=(len(d.concept_names), 8)),
                                               metadata={"model": "<toy>"}),
    }
