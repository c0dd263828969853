"""The package's layout rules, checked on the source itself.

* Imports go one way: every import (module- or function-level) stays in its
  layer or goes down, and the import graph has no cycle.
* A private module (``_name.py``, or anything under a ``_name`` package) is
  used only inside the package that holds it: ``sksplice/encoders/_spec.py``
  only from ``sksplice/encoders/*``; a top-level ``sksplice/_name.py`` is a
  package-wide private helper, usable anywhere in sksplice.
* No module imports another module's underscore names, except from a
  private module it may use.
* No module is longer than 600 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sksplice"
MAX_LINES = 600

# Lowest layer first; a module may import its own layer or below (docs/architecture.md).
LAYERS = [
    {"sksplice._version", "sksplice._defaults", "sksplice.exceptions", "sksplice.core",
     "sksplice._utils", "sksplice._io", "sksplice._html"},
    {"sksplice.solvers"},
    {"sksplice._download", "sksplice.vocabularies", "sksplice.means", "sksplice.dictionary",
     "sksplice.concepts", "sksplice.encoders"},
    {"sksplice._dask"},
    {"sksplice._inputs", "sksplice.transformer", "sksplice.embedder", "sksplice.compat"},
    {"sksplice.editing", "sksplice.zero_shot", "sksplice.analysis", "sksplice.plotting",
     "sksplice.report"},
    {"sksplice.shards"},
    {"sksplice.cli", "sksplice.__main__"},
    {"sksplice"},  # the package's lazy __init__ sits on top
]


def _modules():
    """Map dotted module name -> (path, is_package) for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_pkg)
    return found


MODULES = _modules()


def _resolve(module, is_pkg, node):
    """Dotted names imported by an ``Import``/``ImportFrom`` node, with the names taken."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    if node.level:
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    out = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        if sub in MODULES:  # ``from . import submodule``
            out.append((sub, None))
        else:
            out.append((target, alias.name))
    return out


def _imports():
    """(importer, imported module, name or None, line) for every import inside sksplice."""
    edges = []
    for module, (path, is_pkg) in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, name in _resolve(module, is_pkg, node):
                    if target == "sksplice" or target.startswith("sksplice."):
                        edges.append((module, target, name, node.lineno))
    return edges


EDGES = _imports()


def _layer(module):
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        for rank, layer in enumerate(LAYERS):
            if prefix in layer:
                return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def _owner(module):
    """The top-level unit a module belongs to (a subpackage counts as one unit)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_imports_never_go_up_a_layer():
    bad = [
        f"{src}:{line} imports {dst} (layer {_layer(dst)} above {_layer(src)})"
        for src, dst, _, line in EDGES
        if _layer(dst) > _layer(src)
    ]
    assert not bad, "\n".join(bad)


def _cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_modules():
    graph = {}
    for src, dst, _, _ in EDGES:
        if dst in MODULES and dst != src:
            graph.setdefault(src, set()).add(dst)
    assert _cycles(graph) == []


def test_no_import_cycle_between_units():
    """Subpackages count as one unit: no cycle between them and the top-level modules."""
    graph = {}
    for src, dst, _, _ in EDGES:
        a, b = _owner(src), _owner(dst)
        if a != b and b != "sksplice":
            graph.setdefault(a, set()).add(b)
    assert _cycles(graph) == []


def _private_holder(module):
    """The package that holds ``module``'s first private part, or None for a public module.

    ``sksplice.encoders._spec`` -> ``sksplice.encoders``; ``sksplice._utils`` ->
    ``sksplice``; ``sksplice.encoders`` -> None.
    """
    parts = module.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _inside(src, package):
    return src == package or src.startswith(package + ".")


def _private_violations(edges):
    bad = []
    for src, dst, name, line in edges:
        holder = _private_holder(dst)
        if holder is not None and not _inside(src, holder):
            bad.append(f"{src}:{line} imports {name or dst} from {dst}, private to {holder}")
        elif name is not None and name.startswith("_") and not name.startswith("__") and (
                holder is None):
            bad.append(f"{src}:{line} imports {name} from {dst}")
    return bad


def test_private_modules_are_used_only_inside_their_package():
    bad = _private_violations(EDGES)
    assert not bad, "\n".join(bad)


def test_the_private_rule_catches_reach_ins():
    """The rule above on made-up edges: a reach-in across packages is caught."""
    edges = [
        ("sksplice.embedder", "sksplice.encoders._factory", "estimator_encoder", 1),
        ("sksplice.cli._commands", "sksplice.shards._decompose", "codes_and_cosine", 2),
        ("sksplice.encoders._encoder", "sksplice.encoders._spec", "shorten", 3),
        ("sksplice.cli._commands", "sksplice._utils", "suggest", 4),
        ("sksplice.editing", "sksplice.core", "_private", 5),
        ("sksplice.transformer._models", "sksplice.encoders", "estimator_encoder", 6),
    ]
    assert [b.split(":")[1].split()[0] for b in _private_violations(edges)] == ["1", "2", "5"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_length(module):
    n = len(MODULES[module][0].read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{module} has {n} lines; split it by topic"


def test_the_checker_sees_function_level_imports():
    """The rules above would be hollow if imports inside functions were missed."""
    src = "def f():\n    from .transformer import SpliceTransformer\n"
    node = ast.parse(src).body[0].body[0]
    assert _resolve("sksplice.editing", False, node) == [
        ("sksplice.transformer", "SpliceTransformer")
    ]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
