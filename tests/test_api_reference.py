"""The API reference (docs/api/*.rst) lists every public name and method, and no private one.

Public: the ``__all__`` of the modules users import from (the package's lazy
exports included), and each class's own public methods.  The reference lists
each public class and function in an ``autosummary`` table with a ``:toctree:``,
so it gets a page of its own, written from the template for its kind
(``docs/_templates/autosummary/class.rst``, ``function.rst``,
``exception.rst``, or the table's ``:template:``).  A class's methods are on
its page when that template's ``:members:`` names them or is bare (autodoc then
documents every member with a docstring).  Registries are ``autodata`` entries.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
API = DOCS / "api"
TEMPLATES = DOCS / "_templates" / "autosummary"

PUBLIC_MODULES = [
    "sksplice", "sksplice.core", "sksplice.exceptions", "sksplice.solvers",
    "sksplice.encoders", "sksplice.vocabularies", "sksplice.means", "sksplice.dictionary",
    "sksplice.concepts", "sksplice.transformer", "sksplice.embedder", "sksplice.editing",
    "sksplice.analysis", "sksplice.plotting", "sksplice.report", "sksplice.shards",
    "sksplice.compat", "sksplice.cli",
]

_DIRECTIVE = re.compile(r"^\.\. (auto\w+|currentmodule)::\s*(\S*)\s*$")
_OPTION = re.compile(r"^\s+:([\w-]+):\s*(.*)$")
_MEMBERS = re.compile(r"^\s+:members:\s*(.*)$")


def _resolve(dotted):
    """The object named by a dotted path (module attribute chain)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _documented():
    """``{dotted name: (directive, options)}`` for every autosummary entry and auto-directive.

    An autosummary entry has directive ``"autosummary"`` and the table's options
    (``toctree``, ``template``); any other auto-directive its own name and options.
    """
    found = {}
    for page in sorted(API.glob("*.rst")):
        current, lines, i = "", page.read_text().splitlines(), 0
        while i < len(lines):
            m = _DIRECTIVE.match(lines[i])
            i += 1
            if not m:
                continue
            kind, target = m.groups()
            if kind == "currentmodule":
                current = target
                continue
            options, entries = {}, []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                o = _OPTION.match(lines[i])
                if o:
                    options[o.group(1)] = o.group(2).strip()
                elif lines[i].strip():
                    entries.append(lines[i].strip())
                i += 1
            if kind == "automodule":
                continue
            names = entries if kind == "autosummary" else [target]
            for name in names:
                full = name if name.startswith("sksplice") else f"{current}.{name}"
                found[full] = (kind, options)
    return found


def _template_members(kind, options):
    """The members a class page shows: a set of names, or None for every documented one."""
    template = TEMPLATES / (options.get("template") or f"{kind}.rst")
    assert template.is_file(), f"no autosummary template {template}"
    for line in template.read_text().splitlines():
        m = _MEMBERS.match(line)
        if m:
            listed = {x.strip() for x in m.group(1).split(",") if x.strip()}
            return listed or None
    return set()


def _public():
    """``{object id: (name, object, public methods)}`` over the public modules."""
    out = {}
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not getattr(obj, "__module__", "").startswith("sksplice"):
                continue
            methods = set()
            if inspect.isclass(obj):
                methods = {
                    a for a, v in vars(obj).items()
                    if not a.startswith("_")
                    and (inspect.isfunction(v) or isinstance(v, (classmethod, staticmethod)))
                }
            out.setdefault(id(obj), (f"{modname}.{name}", obj, methods))
    return out


DOCUMENTED = _documented()
PUBLIC = _public()


def test_the_reference_is_found():
    assert len(DOCUMENTED) > 50 and len(PUBLIC) > 50


def test_every_documented_name_is_public_and_exists():
    private = [n for n in DOCUMENTED if any(p.startswith("_") for p in n.split("."))]
    assert not private, f"private names in docs/api: {private}"
    for name in DOCUMENTED:
        _resolve(name)


@pytest.mark.parametrize("key", sorted(PUBLIC, key=lambda k: PUBLIC[k][0]),
                         ids=lambda k: PUBLIC[k][0])
def test_public_name_and_methods_are_in_the_reference(key):
    name, obj, methods = PUBLIC[key]
    entries = [how for doc, how in DOCUMENTED.items() if _resolve(doc) is obj]
    assert entries, (
        f"{name} is not in docs/api/*.rst (add it to an autosummary table with "
        f":toctree: generated)"
    )
    pages = [options for kind, options in entries
             if kind == "autosummary" and options.get("toctree")]
    assert pages, (
        f"{name} has no page of its own: list it in an autosummary table with "
        f":toctree: generated, not with an auto-directive"
    )
    if not inspect.isclass(obj):
        return
    kind = "exception" if issubclass(obj, BaseException) else "class"
    shown = [_template_members(kind, options) for options in pages]
    if any(members is None for members in shown):
        # a bare :members: documents the members that have a docstring
        undocumented = sorted(m for m in methods if not inspect.getdoc(getattr(obj, m)))
        assert not undocumented, f"{name}: methods without a docstring: {undocumented}"
        return
    missing = sorted(methods - set().union(*shown))
    assert not missing, f"{name}: methods missing from its page's :members: list: {missing}"


def test_the_estimators_html_repr_links_to_their_pages():
    """The notebook repr's ``?`` link of each public estimator is its page in the reference."""
    from sklearn.base import BaseEstimator

    from sksplice import SpliceTransformer

    estimators = {id(obj): obj for _, obj, _ in PUBLIC.values()
                  if inspect.isclass(obj) and issubclass(obj, BaseEstimator)}
    assert len(estimators) >= 4
    for cls in estimators.values():
        pages = [(doc, options["toctree"]) for doc, (kind, options) in DOCUMENTED.items()
                 if kind == "autosummary" and options.get("toctree") and _resolve(doc) is cls]
        assert pages, f"{cls.__name__} has no page in docs/api"
        required = [p.name for p in inspect.signature(cls).parameters.values()
                    if p.default is inspect.Parameter.empty]
        # a meta-estimator (ConceptEditor) wraps a SpliceTransformer
        estimator = cls(**{name: SpliceTransformer() for name in required})
        url = estimator._get_doc_link()
        assert url.startswith("https://"), f"{cls.__name__}: no API link in its HTML repr"
        assert any(url.endswith(f"/api/{folder}/{doc}.html") for doc, folder in pages), (
            f"{cls.__name__}'s repr links to {url}, not to its page {pages}"
        )
        assert url in estimator._repr_html_()
