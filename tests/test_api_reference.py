"""The API reference (docs/api/*.rst) lists every public name and method, and no private one.

Public: the ``__all__`` of the modules users import from (the package's lazy
exports included), and each class's own public methods.  The reference names
an object with ``autofunction``/``autoclass``/``autoexception``/``autodata``
(a class's methods in its ``:members:`` list, or all of them with a bare
``:members:``).
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "docs" / "api"

PUBLIC_MODULES = [
    "sksplice", "sksplice.core", "sksplice.exceptions", "sksplice.solvers",
    "sksplice.encoders", "sksplice.vocabularies", "sksplice.means", "sksplice.dictionary",
    "sksplice.concepts", "sksplice.transformer", "sksplice.embedder", "sksplice.editing",
    "sksplice.analysis", "sksplice.plotting", "sksplice.report", "sksplice.shards",
    "sksplice.compat", "sksplice.cli",
]

_DIRECTIVE = re.compile(r"^\.\. (auto\w+|currentmodule)::\s*(\S+)\s*$")
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
    """``{dotted name: members}`` for every auto-directive; members None means all."""
    found = {}
    for page in sorted(API.glob("*.rst")):
        current, last = "", None
        for line in page.read_text().splitlines():
            m = _DIRECTIVE.match(line)
            if m:
                kind, target = m.groups()
                if kind == "currentmodule":
                    current = target
                    last = None
                    continue
                if kind in ("automodule", "autosummary"):
                    last = None
                    continue
                name = target if target.startswith("sksplice") else f"{current}.{target}"
                found[name] = set()
                last = name
                continue
            m = _MEMBERS.match(line)
            if m and last is not None:
                listed = {x.strip() for x in m.group(1).split(",") if x.strip()}
                found[last] = listed or None
            elif last is not None and found[last] and line.startswith("             "):
                found[last] |= {x.strip() for x in line.split(",") if x.strip()}
    return found


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
    entries = [members for doc, members in DOCUMENTED.items() if _resolve(doc) is obj]
    assert entries, f"{name} is not in docs/api/*.rst (add an auto-directive for it)"
    if any(members is None for members in entries):
        return
    listed = set().union(*entries)
    missing = sorted(methods - listed)
    assert not missing, f"{name}: methods missing from its :members: list: {missing}"
