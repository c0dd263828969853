"""Sphinx configuration of the sksplice documentation.

Build (offline, warnings as errors)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Pages are Markdown (MyST) or reStructuredText; the API reference comes from
the numpydoc docstrings (autodoc + autosummary + numpydoc).  Nothing here
needs the network: no intersphinx inventories are fetched.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive, directives

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # build from a checkout even when not installed

import sksplice  # noqa: E402

project = "sksplice"
author = "the sksplice developers"
copyright = "2026, the sksplice developers"
version = release = sksplice.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = []

# --- autodoc / autosummary / numpydoc
autosummary_generate = False  # tables only: the entries are written out in the API pages
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc docstrings carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# --- MyST (Markdown pages, including the examples and benchmark pages)
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# --- HTML
html_theme = "alabaster"
html_title = f"sksplice {version}"
html_theme_options = {
    "description": "Sparse, human-readable concept codes for CLIP embeddings",
    "fixed_sidebar": True,
    "show_relbars": True,
}
html_static_path = []


class CommandHelp(Directive):
    """``.. sksplice-help:: [COMMAND]``: the ``--help`` text of the sksplice command.

    Generated from the argparse parser at build time, so the documented options
    are always the real ones.
    """

    optional_arguments = 1
    has_content = False
    option_spec = {"class": directives.class_option}

    def run(self):
        from sksplice.cli import build_parser

        argv = ([self.arguments[0]] if self.arguments else []) + ["--help"]
        old = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "88"
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                build_parser().parse_args(argv)
        finally:
            if old is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = old
        text = out.getvalue().rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


_SHAPE = re.compile(r"of shape \(([^()]*)\)")
_FITTED_NAME = re.compile(r"(?<![`\w])([A-Za-z][A-Za-z0-9_]*_)(?![`\w])")


def _literal_fitted_names_in_shapes(app, what, name, obj, options, lines):
    """``of shape (n_features_in_,)``: show fitted-attribute names literally.

    In reStructuredText a word ending in ``_`` is a hyperlink reference, so a
    shape written with a fitted attribute (scikit-learn's convention) would be
    a broken link; it is rendered as literal text instead.
    """
    for i, line in enumerate(lines):
        lines[i] = _SHAPE.sub(
            lambda m: "of shape (" + _FITTED_NAME.sub(r"``\1``", m.group(1)) + ")", line
        )


def setup(app):
    app.add_directive("sksplice-help", CommandHelp)
    app.connect("autodoc-process-docstring", _literal_fitted_names_in_shapes)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
