"""The report's HTML: one self-contained page from :func:`._content.report_content`.

Every user-controlled string (concept, file and class names, errors, run
settings) goes through :func:`sksplice._html.esc`; the per-image rows travel
as JSON inside a ``<script type="application/json">`` with ``<``, ``>`` and
``&`` escaped, and the script puts them in the page as text only.
"""

from __future__ import annotations

import json
import math

import numpy as np

from .._html import esc, fmt, sort_key
from ._assets import CSP, CSS, ERROR_JS, TABLE_JS


def _thumb(c, row, thumb_id, size):
    """A thumbnail span (its image is a CSS class: each one is embedded once)."""
    name = c["row_names"][row]
    if thumb_id is None:
        return (f'<span class="th" style="width:{size}px;height:{size}px" '
                f'title="{esc(name)}"></span>')
    return (f'<span class="th t{thumb_id}" role="img" aria-label="{esc(name)}" '
            f'title="{esc(name)}" style="width:{size}px;height:{size}px"></span>')


def _gallery(c, items, size, caption=None):
    if c["thumbs"].source is None:  # no images: the names, with the caption when given
        entries = "".join(
            f"<li>{esc(c['row_names'][item[0]])}"
            + ("" if caption is None else f' <span class="muted">{caption(item)}</span>')
            + "</li>" for item in items)
        return f'<ul class="names">{entries}</ul>'
    figs = []
    for item in items:
        row, thumb_id = item[0], item[-1]
        text = esc(c["row_names"][row]) if caption is None else caption(item)
        figs.append(f"<figure>{_thumb(c, row, thumb_id, size)}<figcaption>{text}"
                    "</figcaption></figure>")
    return f'<div class="gallery" style="--t:{size}px">{"".join(figs)}</div>'


def _table(table_id, columns, rows, *, label):
    """A sortable, filterable table; ``columns`` are (title, is_number) pairs.

    A column whose ``is_number`` is None holds pictures: it is not sortable.
    """
    head = "".join(
        f'<th scope="col" class="{"num" if num else ""}">'
        + (esc(t) if num is None else f'<button type="button">{esc(t)}</button>') + "</th>"
        for t, num in columns)
    body = []
    for r in rows:
        cells = []
        for (_, num), v in zip(columns, r, strict=True):
            if isinstance(v, tuple):  # (html, sort value): pre-built cell content
                html_text, key = v
            else:
                html_text, key = esc(fmt(v)), sort_key(v)
            attr = f' data-sort="{key}"' if key is not None else ""
            cells.append(f'<td class="{"num" if num else "name"}"{attr}>{html_text}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<label>Filter {esc(label)}: <input type="search" data-filter="{table_id}" '
            f'aria-controls="{table_id}" placeholder="type to filter"></label>'
            f'<div class="scroll"><table class="sortable" id="{table_id}"><thead><tr>{head}'
            f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _histogram(cos, bins=20):
    """An inline SVG histogram of the reconstruction cosines."""
    vals = cos[np.isfinite(cos)]
    if vals.size == 0:
        return ""
    lo, hi = float(vals.min()), float(vals.max())
    if hi - lo < 1e-3:
        lo, hi = lo - 5e-4, hi + 5e-4
    counts, edges = np.histogram(vals, bins=bins, range=(lo, hi))
    w, h, pad = 600, 160, 28
    bw = (w - 2 * pad) / bins
    top = max(int(counts.max()), 1)
    bars = []
    for i, n in enumerate(counts):
        bh = (h - 2 * pad) * n / top
        bars.append(f'<rect x="{pad + i * bw:.1f}" y="{h - pad - bh:.1f}" width="{bw - 1:.1f}" '
                    f'height="{bh:.1f}"><title>{edges[i]:.3f}-{edges[i + 1]:.3f}: {n} images'
                    "</title></rect>")
    labels = (f'<text x="{pad}" y="{h - 8}">{lo:.3f}</text>'
              f'<text x="{w - pad}" y="{h - 8}" text-anchor="end">{hi:.3f}</text>'
              f'<text x="{pad}" y="16">{top} image{"s" if top > 1 else ""}</text>')
    return (f'<svg class="hist" viewBox="0 0 {w} {h}" role="img" aria-label="histogram of '
            f'reconstruction cosines, from {lo:.3f} to {hi:.3f}">{"".join(bars)}{labels}'
            "</svg>")


def _run_section(c):
    cos = c["cosine"]
    stats = [("images decomposed", c["n"]), ("files skipped", len(c["bad_files"])),
             ("concepts in the vocabulary", c["n_concepts"]),
             ("mean L0 (concepts per image)", round(c["mean_l0"], 2))]
    if cos is not None and np.isfinite(cos).any():
        stats.append(("mean reconstruction cosine", round(float(np.nanmean(cos)), 4)))
    stats.append(("images without any concept", c["n_empty"]))
    if c["classes"]:
        stats.append(("classes", len(c["classes"])))
    stats.extend(c["run"].items())
    cells = "".join(f'<div><dt>{esc(k)}</dt><dd data-stat="{esc(k)}">{esc(fmt(v))}</dd></div>'
                    for k, v in stats)
    hist = ""
    if cos is not None:
        hist = ("<h3>Reconstruction cosine</h3><p class='muted'>How well the concepts "
                f"reconstruct each embedding (1 is exact).</p>{_histogram(cos)}")
    return f'<section id="run"><h2>The run</h2><dl class="stats">{cells}</dl>{hist}</section>'


def _top_section(c, size):
    if not c["top"]:
        return ('<section id="concepts"><h2>Top concepts</h2><p class="warn">No image uses '
                "any concept: decompose with a smaller l1.</p></section>")
    rows = []
    for rank, t in enumerate(c["top"], start=1):
        gal = _gallery(c, t["images"], size, caption=lambda it: fmt(it[1], 3))
        rows.append([rank, t["concept"], t["frequency"], t["mean_weight"], (gal, None)])
    table = _table("concept-table", [("rank", True), ("concept", False), ("frequency", True),
                                     ("mean weight", True),
                                     ("images where it weighs most (weight)", None)],
                   rows, label="concepts")
    return ('<section id="concepts"><h2>Top concepts of the dataset</h2><p class="muted">'
            "Frequency: the fraction of images using the concept; mean weight: over all "
            f"images (zeros included).</p>{table}</section>")


def _class_section(c, size):
    if not c["class_cards"]:
        return ""
    cards = []
    for card in c["class_cards"]:
        top = card["top"]
        peak = max((t["mean_weight"] for t in top), default=1.0) or 1.0
        bars = "".join(
            f'<div class="bar"><span class="lab">{esc(t["concept"])}</span><span class="b" '
            f'style="width:{100 * t["mean_weight"] / peak:.1f}%"></span>'
            f'<span class="muted">{fmt(t["mean_weight"], 3)}</span></div>' for t in top)
        cos = "" if card["mean_cosine"] is None else f", mean cosine {card['mean_cosine']:.3f}"
        cards.append(
            f'<article class="card" data-class="{esc(card["name"])}"><h3>{esc(card["name"])}'
            f'</h3><p class="muted">{card["n"]} images, mean L0 {card["mean_l0"]:.1f}{cos}</p>'
            f"{bars or '<p>no concept used</p>'}{_gallery(c, card['images'], size)}</article>")
    unl = (f'<p class="muted">{c["n_unlabelled"]} images have no class.</p>'
           if c["n_unlabelled"] else "")
    return (f'<section id="classes"><h2>Classes</h2>{unl}<div class="cards">{"".join(cards)}'
            "</div></section>")


def _association_section(c):
    a = c["association"]
    if a is None:
        return ""
    rows = [[str(r["group"]), r["concept"], r["effect"], r["mean_in"], r["mean_out"],
             r["freq_in"], r["freq_out"], r["qvalue"], bool(r["significant"])]
            for r in a["rows"]]
    cols = [("class", False), ("concept", False), ("effect", True), ("mean in", True),
            ("mean out", True), ("freq in", True), ("freq out", True),
            ("q (BH)", True), ("significant", False)]
    test = (f"permutation test ({a['n_permutations']} permutations)"
            if a["test"] == "permutation" else "asymptotic rank-sum test")
    vs = ("each class against the rest" if len(a["groups"]) > 1
          else f"{esc(a['groups'][0])} against the other class")
    return (f'<section id="separating"><h2>Concepts that separate the classes</h2>'
            f'<p class="muted">{vs}: Mann-Whitney {test}; effect is the rank-biserial '
            "correlation (positive: more weight in the class); q is the Benjamini-Hochberg "
            f"adjusted p-value over {a['n_tests']} tests ({a['n_significant']} significant at "
            f"alpha={a['alpha']})"
            + (f"; concepts used by fewer than {a['min_count']} images are not tested"
               if a["min_count"] > 1 else "") + ".</p>"
            f"{_table('association-table', cols, rows, label='concepts or classes')}</section>")


def _problems_section(c, size):
    parts = []
    if c["n_empty"]:
        parts.append(f"<h3>No concept ({c['n_empty']} images)</h3>"
                     + _gallery(c, c["empty"], size))
    if c["low_cosine"] is not None:
        low = c["low"]
        parts.append(f"<h3>Low reconstruction cosine (below {c['low_cosine']:.3f}: "
                     f"{c['n_low']} images)</h3>")
        if low:
            cos = c["cosine"]
            parts.append(_gallery(c, low, size, caption=lambda it: esc(
                f"{c['row_names'][it[0]]} ({cos[it[0]]:.3f})")))
    if c["bad_files"]:
        rows = [[str(b.get("image", "")), str(b.get("error", ""))] for b in c["bad_files"]]
        parts.append(f"<h3>Files that could not be read ({len(rows)})</h3>"
                     + _table("bad-table", [("file", False), ("reason", False)], rows,
                              label="files"))
    if not parts:
        parts.append("<p>None: every file was read, every image uses a concept.</p>")
    return f'<section id="problems"><h2>Images to check</h2>{"".join(parts)}</section>'


def _json_for_script(obj):
    """JSON safe inside a ``<script>`` element (no ``</script>``, no HTML parsing)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _images_section(c, size):
    rows = [[r[0], r[1], r[2], None if r[3] is None or not math.isfinite(r[3]) else r[3],
             r[4], r[5]] for r in c["rows"]]
    n_thumbs = sum(1 for r in rows if r[5] is not None)
    note = (f"{n_thumbs} of {c['n']} images have a thumbnail (sksplice report "
            "--max-thumbnails, or max_thumbnails=, embeds more)."
            if n_thumbs < c["n"] and c["thumbs"].source is not None else "")
    cols = ["", "file", "class", "L0", "cosine", "top concepts (weight)"]
    head = "".join(f'<th scope="col" class="{"num" if t in ("L0", "cosine") else ""}">'
                   + (f'<button type="button">{esc(t)}</button>' if t else
                      '<span class="hide-narrow">image</span>') + "</th>" for t in cols)
    return (f'<section id="images-section"><h2>Every image</h2><p class="muted">{note}</p>'
            '<label>Find by file name, class or concept: <input type="search" '
            'id="image-filter" aria-controls="images" placeholder="type to filter"></label>'
            '<div class="pager"><button type="button" id="image-prev">previous</button>'
            '<span id="image-info" aria-live="polite"></span>'
            '<button type="button" id="image-next">next</button></div>'
            f'<div class="scroll"><table id="images" data-thumb="{size}"><thead><tr>{head}'
            "</tr></thead><tbody></tbody></table></div>"
            '<noscript><p>The image table needs JavaScript.</p></noscript>'
            f'<script type="application/json" id="image-data">{_json_for_script(rows)}'
            "</script></section>")


def render_page(c, *, title):
    """The whole report as one HTML string."""
    size = c["thumbs"].size
    sections = [_run_section(c), _top_section(c, size), _class_section(c, size),
                _association_section(c), _problems_section(c, size), _images_section(c, size)]
    thumbs_css = "".join(f".t{k}{{background-image:url({u})}}\n"
                         for k, u in sorted(c["thumbs"].uris.items()) if u is not None)
    nav = [("run", "The run"), ("concepts", "Top concepts")]
    if c["class_cards"]:
        nav.append(("classes", "Classes"))
    if c["association"] is not None:
        nav.append(("separating", "Separating concepts"))
    nav += [("problems", "Images to check"), ("images-section", "Every image")]
    links = "".join(f'<li><a href="#{i}">{t}</a></li>' for i, t in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="generator" content="sksplice"><title>{esc(title)}</title>'
        f"<style>{CSS}</style><style>{thumbs_css}</style><script>{ERROR_JS}</script></head>"
        f'<body><div id="js-error" role="alert"></div><header><h1>{esc(title)}</h1>'
        f'<p class="muted">{c["n"]} images, {c["n_concepts"]} concepts</p>'
        f'<nav aria-label="sections"><ul>{links}</ul></nav></header>'
        f'<main>{"".join(sections)}</main><script>{TABLE_JS}</script></body></html>\n'
    )
