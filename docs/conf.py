"""Sphinx configuration of the sksplice documentation.

Build (offline, warnings as errors)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Pages are Markdown (MyST) or reStructuredText, in the pydata theme with copy
buttons.  The API reference comes from the numpydoc docstrings (autodoc +
autosummary + numpydoc): the docs/api/*.rst pages are autosummary tables, and
each public class and function gets a page of its own (``api/generated/``,
from docs/_templates/autosummary/) ending with the gallery examples that use
it (sphinx-gallery's backreferences, ``gen_modules/backreferences``).  The gallery
(``auto_examples/``) is built by sphinx-gallery from ``examples/plot_*.py``,
which read the real embeddings in ``../shared/data`` (``SKSPLICE_SHARED_DATA``
overrides it); without that folder the gallery shows the code unexecuted.
Set ``SKSPLICE_GALLERY=0`` to skip running it.

Intersphinx and the network
---------------------------
Links to scikit-learn, numpy, scipy, torch and pandas need those projects'
``objects.inv`` inventories.  Sphinx 9 reports an inventory it cannot fetch
with an *untyped* warning ("failed to reach any of the inventories"), which
``suppress_warnings`` cannot silence and ``-W`` turns into an error, and a
fetch that hangs waits ``intersphinx_timeout``.  So each project is added to
``intersphinx_mapping`` only when its inventory can be had: a local copy
``docs/_inventories/<name>.inv`` (not shipped; download it once where there
is a network to build links offline), else the project's site when its host
answers within a second.  ``SKSPLICE_DOCS_OFFLINE=1`` skips the network check.
Offline, the build therefore has no intersphinx links and no warning; nothing
else changes (cross-references to those projects stay plain text).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

from docutils import nodes
from docutils.parsers.rst import Directive, directives

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))  # build from a checkout even when not installed
SHARED_DATA = Path(os.environ.get("SKSPLICE_SHARED_DATA", REPO.parent / "shared" / "data"))
# the gallery scripts run in examples/ and read the data folder from this variable
os.environ["SKSPLICE_SHARED_DATA"] = str(SHARED_DATA.resolve())

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
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "_inventories"]
templates_path = ["_templates"]

# --- autodoc / autosummary / numpydoc
# one page per public object: the docs/api/*.rst tables (``:toctree: generated``)
# are rendered with docs/_templates/autosummary/{class,function,exception}.rst
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc docstrings carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# --- MyST (Markdown pages, including the examples and benchmark pages)
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# --- intersphinx: only inventories that can be had (see the module docstring)
_INVENTORIES = {
    "sklearn": "https://scikit-learn.org/stable",
    "numpy": "https://numpy.org/doc/stable",
    "scipy": "https://docs.scipy.org/doc/scipy",
    "torch": "https://docs.pytorch.org/docs/stable",
    "pandas": "https://pandas.pydata.org/docs",
}


def _reachable(url, timeout=1.0):
    """Whether the host of ``url`` accepts a connection within ``timeout`` seconds."""
    if os.environ.get("SKSPLICE_DOCS_OFFLINE", "") not in ("", "0"):
        return False
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _intersphinx_mapping():
    mapping = {}
    for name, url in _INVENTORIES.items():
        local = DOCS / "_inventories" / f"{name}.inv"
        if local.is_file():
            mapping[name] = (url, str(local))
        elif _reachable(url):
            mapping[name] = (url, None)
    return mapping


intersphinx_mapping = _intersphinx_mapping()
intersphinx_timeout = 5

# --- sphinx-gallery: examples/plot_*.py run on the shared data
_run_gallery = SHARED_DATA.is_dir() and os.environ.get("SKSPLICE_GALLERY", "1") != "0"
sphinx_gallery_conf = {
    "examples_dirs": str(REPO / "examples"),
    "gallery_dirs": str(DOCS / "auto_examples"),
    "filename_pattern": r"/plot_",
    "plot_gallery": "True" if _run_gallery else "False",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "reset_modules": ("matplotlib",),
    "matplotlib_animations": False,
    "show_signature": False,
    "image_scrapers": ("matplotlib",),
    # "Examples using X" on each API page (the templates' minigallery); the
    # examples' code links to those pages
    "doc_module": ("sksplice",),
    "backreferences_dir": str(DOCS / "gen_modules" / "backreferences"),
    # figures twice as dense as they are laid out, so they stay sharp when scaled
    "image_srcset": ["2x"],
}

# --- HTML: the pydata theme, as scikit-learn, numpy and pandas use
html_theme = "pydata_sphinx_theme"
html_title = f"sksplice {version}"
html_theme_options = {
    "logo": {"text": "sksplice"},
    "navbar_align": "left",
    "header_links_before_dropdown": 5,
    "navbar_persistent": ["search-button"],
    "show_toc_level": 2,
    "navigation_with_keys": False,
    # the gallery's code is up to 100 characters wide: its pages use the width
    # (the patterns must not overlap; "*" is a top-level page)
    "secondary_sidebar_items": {
        "*": ["page-toc", "sourcelink"],
        "user_guide/*": ["page-toc", "sourcelink"],
        "examples/*": ["page-toc", "sourcelink"],
        "api/**": ["page-toc", "sourcelink"],
        "auto_examples/*": [],
    },
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
# the top-level pages have no subpages: no left sidebar, so the text column is wider
html_sidebars = {"*": []}
html_static_path = ["_static"]
toc_object_entries_show_parents = "hide"  # "fit()" in a page's contents, not "Class.fit()"
html_css_files = ["sksplice.css"]

# --- copy buttons: the copied text leaves out prompts and output
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_exclude = ".linenos, .gp, .go"


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


def _skip_foreign_members(app, what, name, obj, skip, options):
    """On a class page, document the members sksplice defines, not those of its bases.

    The class template asks for inherited members, so a method a class gets from an
    sksplice mixin (``SpliceTransformer.set_output``) is on its page; the members of
    scikit-learn's, Python's and torch's base classes are documented by those projects.
    """
    if what not in ("class", "exception") or skip:
        return None
    target = obj.fget if isinstance(obj, property) else getattr(obj, "__func__", obj)
    module = getattr(target, "__module__", None)
    if isinstance(module, str) and not module.startswith("sksplice"):
        return True
    return None


def setup(app):
    app.add_directive("sksplice-help", CommandHelp)
    app.connect("autodoc-skip-member", _skip_foreign_members)
    app.connect("autodoc-process-docstring", _literal_fitted_names_in_shapes)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
