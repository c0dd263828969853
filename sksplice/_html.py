"""HTML building blocks shared by the notebook views and the HTML report.

One small table builder (``html_table``) serves every ``_repr_html_``; the
report (:mod:`sksplice.report`) uses the same escaping, number formatting and
thumbnail encoder.  Everything a user controls (concept names, file names,
labels) passes through :func:`esc`; pre-built HTML is marked with
:class:`Markup` so it is inserted as it is.
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
import os
from pathlib import Path

import numpy as np

from ._defaults import IMAGE_EXTENSIONS

#: Rows a notebook table shows before it says how many more there are.
NOTEBOOK_ROWS = 20

#: Concepts listed per row of a notebook table.
NOTEBOOK_CONCEPTS = 5

#: Thumbnail edge in the notebook views, in pixels.
NOTEBOOK_THUMBNAIL = 48


class Markup(str):
    """A string of HTML that is inserted as it is (already escaped)."""

    __slots__ = ()


def esc(value):
    """``value`` as escaped HTML text (a :class:`Markup` is left as it is)."""
    if isinstance(value, Markup):
        return value
    return html.escape(str(value), quote=True)


def fmt(value, digits=4):
    """A table cell's text: numbers rounded to ``digits`` significant digits."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    return str(value)


def sort_key(value):
    """The ``data-sort`` attribute of a cell: numbers compare as numbers in the JS."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        return "" if math.isnan(v) else repr(v)
    return None


def thumbnail_bytes(image, size, *, image_format="webp", quality=70, max_bytes=16384):
    """A small JPEG or WebP copy of an image, bounded in pixels and bytes.

    Parameters
    ----------
    image : str, path, PIL.Image.Image or ndarray of shape (height, width[, 3])
        The image (a uint8 or [0, 1] float array for arrays).
    size : int
        Longest edge in pixels (the aspect ratio is kept).
    image_format : {"webp", "jpeg"}, default="webp"
        Encoding.
    quality : int, default=70
        Encoder quality; lowered step by step until the bytes fit.
    max_bytes : int, default=16384
        Largest encoding accepted.

    Returns
    -------
    data : bytes
        The encoded thumbnail.
    mime : str
        Its media type.
    """
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
            im = im.convert("RGB")
    elif isinstance(image, Image.Image):
        im = image.convert("RGB")
    else:
        a = np.asarray(image)
        if a.dtype.kind == "f":
            a = np.clip(a * 255.0 if a.max(initial=0) <= 1.0 else a, 0, 255)
        im = Image.fromarray(a.astype(np.uint8)).convert("RGB")
    im.thumbnail((size, size))
    fmt_name = "WEBP" if image_format == "webp" else "JPEG"
    while True:
        buf = io.BytesIO()
        im.save(buf, format=fmt_name, quality=quality)
        data = buf.getvalue()
        if len(data) <= max_bytes or quality <= 20:
            break
        quality -= 15
    if len(data) > max_bytes:  # still too large: halve the pixels until it fits
        while len(data) > max_bytes and min(im.size) > 8:
            im = im.resize((max(1, im.width // 2), max(1, im.height // 2)))
            buf = io.BytesIO()
            im.save(buf, format=fmt_name, quality=quality)
            data = buf.getvalue()
    return data, f"image/{image_format}"


def data_uri(image, size, **kwargs):
    """:func:`thumbnail_bytes` as a ``data:`` URI, or None when the image cannot be read."""
    try:
        data, mime = thumbnail_bytes(image, size, **kwargs)
    except (OSError, ValueError, TypeError):
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_path(sample, root=None):
    """An existing image file that ``sample`` names (relative to ``root``), or None."""
    if not isinstance(sample, (str, os.PathLike)):
        return None
    path = Path(sample)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return None
    if root is not None and not path.is_absolute():
        path = Path(root) / path
    return path if path.is_file() else None


def img_tag(uri, alt, size=NOTEBOOK_THUMBNAIL):
    """An ``<img>`` of a data URI (alt text escaped)."""
    return Markup(f'<img src="{uri}" alt="{esc(alt)}" title="{esc(alt)}" loading="lazy" '
                  f'style="max-width:{int(size)}px;max-height:{int(size)}px">')


def concept_list(concepts, weights, k=NOTEBOOK_CONCEPTS):
    """``"dog 0.5, car 0.2"``: the first ``k`` concepts with their weights."""
    items = [f"{c} {fmt(w, 3)}" for c, w in zip(concepts, weights, strict=False)][:k]
    more = len(concepts) - len(items)
    return ", ".join(items) + (f", +{more}" if more > 0 else "")


_NOTEBOOK_STYLE = (
    "border-collapse:collapse;font-size:12px;font-family:system-ui,sans-serif"
)


def html_table(columns, rows, *, caption=None, n_total=None,
               hint="to_frame() or to_records() gives them all"):
    """A compact HTML table in the style of a pandas DataFrame's notebook view.

    Parameters
    ----------
    columns : list of str
        Header cells.
    rows : iterable of sequence
        Cells (escaped, numbers formatted; a :class:`Markup` cell is inserted
        as it is).
    caption : str, default=None
        Text above the table.
    n_total : int, default=None
        Rows in the whole result; when larger than the rows given, a last line
        says how many are shown.
    hint : str, default="to_frame() or to_records() gives them all"
        Where the rows not shown are, said after their count.

    Returns
    -------
    html : Markup
        A ``<div>`` holding the table.
    """
    rows = [list(r) for r in rows]
    head = "".join(f'<th style="text-align:left;padding:2px 6px;border-bottom:1px solid '
                   f'#999">{esc(c)}</th>' for c in columns)
    body = []
    for r in rows:
        cells = []
        for v in r:
            right = isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
            align = "right" if right else "left"
            text = v if isinstance(v, Markup) else esc(fmt(v))
            cells.append(f'<td style="text-align:{align};padding:2px 6px;'
                         f'vertical-align:middle">{text}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    cap = f'<caption style="text-align:left;font-weight:bold">{esc(caption)}</caption>' \
        if caption else ""
    more = ""
    if n_total is not None and n_total > len(rows):
        more = (f'<p style="font-size:11px;margin:2px 0">{len(rows)} of {n_total} rows shown '
                f"({esc(hint)}).</p>")
    return Markup(f'<div class="sksplice-table"><table style="{_NOTEBOOK_STYLE}">{cap}'
                  f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
                  f"{more}</div>")
