"""The HTML report and the notebook views, checked without a browser: content, escaping,
no external resource, bounded size (tests/test_report_browser.py renders them)."""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
import pytest
from _report_helpers import (
    BROKEN,
    EVIL_CLASS,
    EVIL_FILE,
    LAYOUT,
    decomposition_folder,
    external_urls,
    notebook_views,
    thumbnail_uris,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return decomposition_folder(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def page(folder):
    from sksplice import load_decomposition

    path = load_decomposition(folder).to_html()
    assert path == folder / "report.html"
    return path.read_text(encoding="utf-8")


def _script_blocks(page):
    return re.findall(r"(?is)<script\b[^>]*>(.*?)</script>", page)


def test_folder_report_shows_every_image_as_an_embedded_thumbnail(folder, page):
    from PIL import Image

    from sksplice import load_decomposition

    d = load_decomposition(folder)
    thumbs = thumbnail_uris(page)
    assert len(thumbs) == len(d.images) == len(LAYOUT)  # each readable image, once
    for uri in thumbs.values():
        mime, data = uri[5:].split(";base64,")
        assert mime == "image/webp"
        raw = base64.b64decode(data)
        assert len(raw) <= 12000
        with Image.open(io.BytesIO(raw)) as im:
            assert max(im.size) <= 96
    assert page.count("background-image:url(data:") == len(thumbs)  # deduplicated


def test_folder_report_sections(folder, page):
    text = html.unescape(page)
    for heading in ("The run", "Top concepts of the dataset", "Classes",
                    "Concepts that separate the classes", "Images to check", "Every image"):
        assert f">{heading}<" in page
    assert "cats" in text and EVIL_CLASS in text
    assert 'data-stat="images decomposed">6<' in page
    assert 'data-stat="files skipped">1<' in page
    assert BROKEN in text and "UnidentifiedImageError" in text  # the unreadable file, why
    assert "Benjamini-Hochberg" in page and "<svg" in page  # q-values, cosine histogram
    from sksplice import load_decomposition

    top = load_decomposition(folder).manifest["config"]["encoder"]
    assert top in text


def test_folder_report_has_no_external_resource(page):
    assert external_urls(page) == []
    assert "default-src 'none'" in page  # the CSP forbids any request


def test_hostile_names_are_text(page):
    # every < of a name is escaped in HTML, and \u003c inside the JSON block
    assert len(re.findall(r"(?i)<script\b", page)) == 3  # only the page's own scripts
    assert "<i>" not in page
    assert html.escape(EVIL_CLASS, quote=True) in page
    data = _script_blocks(page)[1]
    assert "<" not in data and ">" not in data and "&" not in data
    import json

    rows = json.loads(data)
    assert f"{EVIL_CLASS}/{EVIL_FILE}" in [r[0] for r in rows]


def test_report_of_codes_in_memory_with_arrays_and_labels():
    from sksplice.report import build_report

    rng = np.random.default_rng(0)
    W = rng.random((30, 8)) * (rng.random((30, 8)) < 0.4)
    W[3] = 0.0  # an image with no concept
    images = rng.integers(0, 256, (30, 20, 24, 3), dtype=np.uint8)
    labels = ["a"] * 15 + ["b"] * 15
    page = build_report(W, [f"c{i}" for i in range(8)], images=images, labels=labels,
                        cosine=np.linspace(0.5, 0.9, 30), title="arrays & <labels>")
    assert len(thumbnail_uris(page)) == 30
    assert "<title>arrays &amp; &lt;labels&gt;</title>" in page
    assert "No concept (1 images)" in page
    assert 'data-class="a"' in page and 'data-class="b"' in page
    assert external_urls(page) == []


def test_report_without_images_has_no_thumbnail():
    from sksplice.report import build_report

    W = np.array([[0.6, 0.0, 0.1], [0.4, 0.0, 0.0], [0.0, 0.5, 0.1]])
    page = build_report(W, ["sea", "snow", "sky"])
    assert thumbnail_uris(page) == {}
    assert "Classes" not in page  # no labels: no class section
    assert "image 2" in page


def test_report_is_deterministic(folder):
    from sksplice import load_decomposition

    d = load_decomposition(folder)
    a = d.to_html(folder / "a.html").read_bytes()
    b = d.to_html(folder / "b.html").read_bytes()
    assert a == b


def test_thumbnail_budget_bounds_the_size():
    from sksplice.report import build_report

    rng = np.random.default_rng(1)
    n = 2000
    W = rng.random((n, 50)) * (rng.random((n, 50)) < 0.1)
    noise = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)  # incompressible images
    page = build_report(W, [f"concept {i}" for i in range(50)], images=noise,
                        labels=rng.choice(["x", "y", "z"], n), max_thumbnails=40,
                        cosine=rng.uniform(0.6, 0.9, n))
    assert len(thumbnail_uris(page)) == 40
    # 40 thumbnails of at most 12 kB (base64: 4/3) plus about 200 bytes per image row
    assert len(page.encode()) < 40 * 12000 * 4 / 3 + n * 200 + 200_000


def test_report_options_and_errors(tmp_path):
    from sksplice.report import build_report, write_report

    W = np.eye(3)
    with pytest.raises(ValueError, match="2 concept names"):
        build_report(W, ["a", "b"])
    with pytest.raises(ValueError, match="labels has 2 entries"):
        build_report(W, ["a", "b", "c"], labels=["x", "y"])
    with pytest.raises(ValueError, match="images has 1 entries"):
        build_report(W, ["a", "b", "c"], images=["x.png"])
    with pytest.raises(ValueError, match="top_concepts must be a positive integer"):
        build_report(W, ["a", "b", "c"], top_concepts=0)
    page = write_report(tmp_path / "r.html", W, ["a", "b", "c"], top_concepts=1).read_text()
    body = re.search(r'id="concept-table">.*?<tbody>(.*?)</tbody>', page).group(1)
    assert body.count("<tr>") == 1  # one top concept


def test_micrograph_report_from_embeddings(micrographs, lvis, clip_image_mean, tmp_path):
    """The shared micrograph embeddings over LVIS, with their techniques: no images."""
    from sksplice import ConceptDictionary, SpliceTransformer
    from sksplice.analysis import reconstruction_cosine
    from sksplice.report import write_report

    X, rows = micrographs
    names, E = lvis
    st = SpliceTransformer(dictionary=ConceptDictionary(names, E), image_mean=clip_image_mean,
                           l1=0.25, device="cpu").fit(X)
    codes, _ = st.decompose_embeddings(X)
    techniques = [r["technique"] for r in rows]
    page = write_report(tmp_path / "m.html", codes, names, labels=techniques,
                        names=[r["image_local_path"] for r in rows],
                        cosine=reconstruction_cosine(st, X, codes)).read_text()
    assert f'data-stat="images decomposed">{len(X)}<' in page
    for t in set(techniques):
        assert f'data-class="{html.escape(t)}"' in page
    assert external_urls(page) == []


# ------------------------------------------------------------------ notebook views
def test_every_result_type_has_a_notebook_view(folder):
    views = notebook_views(folder)
    for name, obj in views.items():
        out = obj._repr_html_()
        assert out.startswith('<div class="sksplice-table"><table'), name
        assert "<tbody><tr>" in out, name
        assert external_urls(out) == [], name
        if name != "SparsitySweep":  # its dataclass repr grows with the grid, not the data
            assert len(repr(obj)) < 200, name  # plain repr stays short
    assert EVIL_CLASS not in views["ClassConcepts"]._repr_html_()  # escaped
    assert html.escape(EVIL_CLASS) in views["ClassConcepts"]._repr_html_()
    # thumbnails where the image paths are known
    assert views["Explanations"]._repr_html_().count('<img src="data:image/webp') == 6
    assert views["Decomposition"]._repr_html_().count('<img src="data:image/webp') == 6
    assert "accuracy_std" in views["SparsitySweep"]._repr_html_()
    assert "&lt;toy&gt;" in views["ConceptDictionary"]._repr_html_()


def test_cli_report_command(folder, tmp_path, capsys):
    from sksplice.cli import main
    from sksplice.report import build_report

    out = tmp_path / "custom.html"
    assert main(["report", str(folder), "-o", str(out), "--top-concepts", "3",
                 "--title", "T<1>"]) == 0
    assert "wrote" in capsys.readouterr().out
    page = out.read_text()
    assert "<title>T&lt;1&gt;</title>" in page
    import inspect

    from sksplice.cli import build_parser

    args = build_parser().parse_args(["report", "x"])
    defaults = inspect.signature(build_report).parameters
    for k in ("top_concepts", "images_per_concept", "concepts_per_image", "thumbnail_size",
              "max_thumbnails"):
        assert getattr(args, k) == defaults[k].default  # the library's defaults
    assert main(["report", str(tmp_path / "missing")]) == 1


def test_large_reports_use_the_asymptotic_test_without_rare_concepts():
    import warnings

    from sksplice.report import build_report

    rng = np.random.default_rng(2)
    n = 2500
    W = rng.random((n, 40)) * (rng.random((n, 40)) < np.linspace(0.0005, 0.3, 40))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no anti-conservative rare-concept p-values
        page = build_report(W, [f"c{i}" for i in range(40)], labels=rng.choice(["a", "b"], n))
    assert "asymptotic rank-sum test" in page
    m = re.search(r"concepts used by fewer than (\d+) images are not tested", page)
    assert m and 10 <= int(m.group(1)) <= 12  # 5 * n / (the smaller group, about n / 2)
