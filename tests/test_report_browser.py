"""The HTML report and the notebook views in a real browser (headless Chromium).

Each test loads a page from a ``file://`` URL with the network disabled and
asserts on what a person sees: the text of the DOM after the page's scripts
ran, the script's ready marker and its error marker (set on ``window.onerror``),
the console (``--enable-logging=stderr``: no error, no blocked request) and a
screenshot that is not blank.  Skipped where Chromium is not installed
(``apt-get install chromium``; .ci/run installs it).
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from _report_helpers import (
    EVIL_CLASS,
    EVIL_FILE,
    LAYOUT,
    chromium,
    decomposition_folder,
    dump_dom,
    external_urls,
    notebook_views,
    screenshot,
    thumbnail_uris,
    visible_text,
)

pytestmark = pytest.mark.skipif(chromium() is None, reason="headless Chromium is not "
                                "installed (apt-get install chromium)")

#: Injected after the page's own script: drive the image table as a reader would.
DRIVE = """<script>
var f=document.getElementById("image-filter");f.value="dogs";
f.dispatchEvent(new Event("input"));
document.documentElement.setAttribute("data-filtered",
  document.getElementById("image-info").textContent);
var l0=document.querySelectorAll("#images thead button")[2];l0.click();l0.click();
document.documentElement.setAttribute("data-sorted",
  document.querySelector("#images tbody tr td.num").textContent);
document.documentElement.setAttribute("data-widths",
  document.documentElement.scrollWidth+" "+window.innerWidth);
</script></body>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from sksplice import load_decomposition

    folder = decomposition_folder(tmp_path_factory.mktemp("browser"))
    d = load_decomposition(folder)
    return d, d.to_html()


def _console_errors(path, *extra):
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                            "--disable-background-networking", "--disable-component-update",
                            "--no-first-run", f"--user-data-dir={profile}",
                            "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
                            *extra, "--dump-dom", Path(path).resolve().as_uri()],
                           capture_output=True, text=True, timeout=180)
    return [line for line in r.stderr.splitlines() if "CONSOLE" in line
            or "Uncaught" in line or "Refused to" in line]


def _root_attrs(dom):
    return re.search(r"<html([^>]*)>", dom).group(1)


def _not_blank(img):
    assert img.std() > 10  # not one flat colour
    assert (np.abs(img.astype(int) - img[0, 0]).sum(axis=2) > 60).mean() > 0.02


def test_report_renders_classes_concepts_and_every_image(report, tmp_path):
    d, path = report
    dom = dump_dom(path)
    attrs = _root_attrs(dom)
    assert 'data-ready="1"' in attrs and "data-js-error" not in attrs
    assert _console_errors(path) == []
    text = visible_text(dom)
    for cls in ("cats", EVIL_CLASS):
        assert cls in text  # both classes, the hostile one as text
    summary = json.loads((Path(d.folder) / "summary.json").read_text())
    for entry in summary:
        for t in entry["top_concepts"][:3]:
            assert t["concept"] in text
    assert f"images 1\u2013{len(LAYOUT)} of {len(LAYOUT)}" in text  # the image table
    assert EVIL_FILE in text
    assert len(re.findall(r"(?i)<script\b", dom)) == 3  # the file name made no element
    assert len(re.findall(r'<span class="th t\d+"', dom)) >= len(LAYOUT)
    _not_blank(screenshot(path, tmp_path / "report.png"))


def test_image_table_filters_sorts_and_fits_a_phone(report, tmp_path):
    _, path = report
    driven = tmp_path / "driven.html"
    driven.write_text(path.read_text().replace("</body>", DRIVE))
    dom = dump_dom(driven, "--window-size=390,844")
    attrs = _root_attrs(dom)
    assert "data-js-error" not in attrs
    assert 'data-filtered="images 1\u20132 of 2 (filtered from 6)"' in attrs
    ascending = min(int(v) for v in re.findall(r"<td class=\"num\">(\d+)</td>", dom))
    assert f'data-sorted="{ascending}"' in attrs  # L0 sorted twice: ascending
    # headless Chromium lays a page out at least 500 px wide (narrower windows are
    # clamped): the phone layout applies there (< 640 px), and nothing is wider than
    # the window (wide tables scroll inside their box)
    scroll, inner = map(int, re.search(r'data-widths="(\d+) (\d+)"', attrs).groups())
    assert inner <= 640 and scroll <= inner
    _not_blank(screenshot(path, tmp_path / "phone.png", 390, 844))


def test_report_follows_the_dark_setting(report, tmp_path):
    _, path = report
    light = screenshot(path, tmp_path / "light.png", 400, 300)
    dark = screenshot(path, tmp_path / "dark.png", 400, 300, "--force-dark-mode")
    assert light[2, 2].mean() > 200 and dark[2, 2].mean() < 60


def test_a_script_error_is_caught(report, tmp_path):
    _, path = report
    broken = tmp_path / "broken.html"
    broken.write_text(path.read_text().replace("</body>", "<script>null.x()</script></body>"))
    dom = dump_dom(broken)
    assert "data-js-error" in _root_attrs(dom)
    assert _console_errors(broken) != []


def test_notebook_views_render(report, tmp_path):
    d, _ = report
    views = notebook_views(Path(d.folder))
    page = tmp_path / "notebook.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                    + "".join(f"<section id='{k}'>{v._repr_html_()}</section>"
                              for k, v in views.items()) + "</body></html>")
    text = visible_text(dump_dom(page))
    for caption in ("Explanations of 6 samples", "ClassConcepts: 3 classes",
                    "ConceptAssociation:", "SparsitySweep", "Decomposition: 6 images",
                    "ConceptDictionary: 24 concepts"):
        assert caption in text
    assert EVIL_CLASS in text and "concept_" in text and "accuracy_std" in text
    _not_blank(screenshot(page, tmp_path / "views.png"))


def test_micrograph_report_renders(micrographs, lvis, clip_image_mean, tmp_path):
    from sksplice import ConceptDictionary, SpliceTransformer
    from sksplice.report import write_report

    X, rows = micrographs
    names, E = lvis
    st = SpliceTransformer(dictionary=ConceptDictionary(names, E), image_mean=clip_image_mean,
                           l1=0.25, device="cpu").fit(X)
    codes, _ = st.decompose_embeddings(X)
    techniques = [r["technique"] for r in rows]
    path = write_report(tmp_path / "m.html", codes, names, labels=techniques)
    dom = dump_dom(path)
    assert 'data-ready="1"' in _root_attrs(dom)
    text = visible_text(dom)
    for t in set(techniques):
        assert t in text
    assert f"of {len(X)}" in text
    _not_blank(screenshot(path, tmp_path / "m.png"))


# ------------------------------------------------------------ the command line, end to end
TINY = {"embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16,
                       "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1}}
WORDS = ("dog cat car tree house beach sky water road bird flower grass mountain snow city "
         "person boat train bus chair table food fruit red blue green night sun").split()


@pytest.mark.slow
def test_decompose_dir_then_report_command(tmp_path, monkeypatch, capsys):
    """``sksplice decompose-dir`` (a random tiny open_clip model) then ``sksplice report``."""
    import open_clip
    import torch
    from PIL import Image

    from sksplice.cli import main

    monkeypatch.setenv("SKSPLICE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SKSPLICE_OFFLINE", "1")
    config = tmp_path / "sksplice-report-tiny.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model("sksplice-report-tiny").state_dict(), checkpoint)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    mean = tmp_path / "mean.npy"
    np.save(mean, np.random.default_rng(0).normal(size=32) * 0.1)
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    files = [f"beach/{i}.jpg" for i in range(5)] + [f"{EVIL_CLASS}/{i}.png" for i in range(4)]
    files.append(f"{EVIL_CLASS}/{EVIL_FILE}")
    for rel in files:
        (images / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(images / rel)
    out = tmp_path / "out"
    assert main(["decompose-dir", str(images), "--out", str(out), "--model-config",
                 str(config), "--checkpoint", str(checkpoint), "--device", "cpu",
                 "--vocabulary", str(vocab), "--mean", str(mean), "--l1", "0.1",
                 "--no-progress", "--no-plots"]) == 0
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert len(thumbnail_uris(page)) == len(files)  # every image, embedded
    assert external_urls(page) == []
    assert html.escape(EVIL_FILE) in page and EVIL_FILE not in page
    dom = dump_dom(out / "report.html")
    assert 'data-ready="1"' in _root_attrs(dom)
    text = visible_text(dom)
    assert "beach" in text and EVIL_CLASS in text and EVIL_FILE in text
    for entry in json.loads((out / "summary.json").read_text()):
        assert entry["top_concepts"][0]["concept"] in text
    _not_blank(screenshot(out / "report.html", tmp_path / "cli.png"))
