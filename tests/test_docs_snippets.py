"""Every Python snippet in README.md and docs/ runs, each on its own.

A snippet is a fenced ``python`` block of a Markdown page (or a
``.. code-block:: python`` of a reStructuredText page).  Each one is run as a
script in a fresh interpreter from the repository root, as the docs tell a
reader to, with an empty sksplice cache and no network: it must be
self-contained (and guard process pools with ``if __name__ == "__main__":``).
``../shared/data`` from there is the shared data folder.  A snippet writes
only into temporary folders: ``git status --ignored`` shows no new file after
it (nothing it makes could be committed by ``git add .``, nor clutter the
checkout).

A snippet that needs pretrained CLIP weights or a download cannot run here.
Mark it with an HTML comment on the line before its fence::

    <!-- snippet: names-only -->

and it is compiled, its imports are run, and every name it reads must be
imported or assigned in it (nothing is run).  Keep that list short: prefer a
snippet that runs on the shared data or on a small ``ConceptDictionary``.

The marked snippets are listed by ``test_names_only_snippets_are_few``.
Executing the snippets is slow (``-m slow``); compiling them is not.
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SKSPLICE_SHARED_DATA", ROOT.parent / "shared" / "data"))
#: generated or build output, not pages
EXCLUDED = ("docs/_build", "docs/auto_examples", "docs/_inventories")
NAMES_ONLY = "<!-- snippet: names-only -->"
#: the most snippets that may be checked for names only
MAX_NAMES_ONLY = 12

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*(\{code-block\}\s*)?(python|py|python3)\s*$")
_RST_BLOCK = re.compile(r"^(\s*)\.\. code-block::\s*(python|py|python3)\s*$")


def _pages():
    pages = [ROOT / "README.md"]
    for path in sorted((ROOT / "docs").rglob("*")):
        rel = path.relative_to(ROOT).as_posix()
        if path.suffix in (".md", ".rst") and not rel.startswith(EXCLUDED):
            pages.append(path)
    return [p for p in pages if p.exists()]


def _markdown_blocks(lines):
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m.group(1), m.group(2)
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        body = [ln.removeprefix(indent) for ln in lines[start:j]]
        if body and body[0].startswith(":"):  # MyST directive options
            while body and body[0].startswith(":"):
                body.pop(0)
        marked = i > 0 and lines[i - 1].strip() == NAMES_ONLY
        yield start, "\n".join(body), marked
        i = j + 1


def _rst_blocks(lines):
    i = 0
    while i < len(lines):
        m = _RST_BLOCK.match(lines[i])
        if not m:
            i += 1
            continue
        indent = len(m.group(1))
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or lines[j].lstrip().startswith(":")):
            j += 1
        start, body = j, []
        while j < len(lines) and (not lines[j].strip()
                                  or len(lines[j]) - len(lines[j].lstrip()) > indent):
            body.append(lines[j])
            j += 1
        width = min((len(b) - len(b.lstrip()) for b in body if b.strip()), default=0)
        marker = ".. " + NAMES_ONLY[5:-4].strip()
        marked = any(ln.strip() == marker for ln in lines[max(0, i - 2):i])
        yield start, "\n".join(b[width:] for b in body).rstrip(), marked
        i = j


def _snippets():
    out = []
    for page in _pages():
        lines = page.read_text(encoding="utf-8").splitlines()
        blocks = _markdown_blocks(lines) if page.suffix == ".md" else _rst_blocks(lines)
        for line, code, marked in blocks:
            code = _strip_prompts(code)
            if code.strip():
                out.append((f"{page.relative_to(ROOT).as_posix()}:{line}", code, marked))
    return out


def _strip_prompts(code):
    """A doctest-style block (``>>>``) as plain code (its output lines dropped)."""
    lines = code.splitlines()
    if not any(ln.lstrip().startswith(">>>") for ln in lines):
        return code
    kept = []
    for ln in lines:
        s = ln.lstrip()
        if s.startswith(">>> ") or s == ">>>" or s.startswith("... ") or s == "...":
            kept.append(s[4:])
    return "\n".join(kept)


SNIPPETS = _snippets()
IDS = [s[0] for s in SNIPPETS]


def _undefined_names(code):
    """Names a snippet reads without importing or assigning them (nor builtins)."""
    tree = ast.parse(code)
    bound = set(dir(builtins)) | {"__name__", "__file__"}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            args = node.args if not isinstance(node, ast.ClassDef) else None
            if args is not None:
                bound |= {a.arg for a in args.args + args.kwonlyargs + args.posonlyargs}
                bound |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        elif isinstance(node, ast.Lambda):
            bound |= {a.arg for a in node.args.args + node.args.kwonlyargs}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
    return sorted({n.id for n in ast.walk(tree)
                   if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - bound)


def test_snippets_are_found():
    assert len(SNIPPETS) >= 20
    assert any(where.startswith("README.md") for where in IDS)


def test_names_only_snippets_are_few():
    marked = [where for where, _, m in SNIPPETS if m]
    assert len(marked) <= MAX_NAMES_ONLY, f"too many names-only snippets: {marked}"


@pytest.mark.parametrize(("where", "code", "marked"), SNIPPETS, ids=IDS)
def test_snippet_compiles(where, code, marked):
    compile(code, where, "exec")
    if marked:
        missing = _undefined_names(code)
        assert not missing, f"{where} reads names it never defines: {missing}"


def _untracked():
    """The checkout's untracked and ignored files (``git status --porcelain --ignored``).

    Ignored ones count too (a joblib cache folder writes its own ``.gitignore``),
    but for Python's ``__pycache__``.  None when the repository is not a git
    checkout (an unpacked sdist, say).
    """
    try:
        proc = subprocess.run(
            ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
    except OSError:
        return None
    if proc.returncode != 0:
        return None
    return {line[3:] for line in proc.stdout.splitlines()
            if line[:2] in ("??", "!!") and "__pycache__" not in line}


@pytest.fixture
def sandbox(tmp_path):
    """The environment a snippet runs in, and a folder for the script itself.

    The script lives outside the repository; it runs from the repository root.
    Afterwards ``git status`` must show no new untracked (or ignored) file: a
    snippet that leaves a file in the checkout (a downloaded checkpoint, a saved
    figure, a cache folder) fails.
    """
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKSPLICE_")}
    env.update(SKSPLICE_CACHE=str(tmp_path / "cache"), SKSPLICE_OFFLINE="1",
               HF_HUB_OFFLINE="1", MPLBACKEND="Agg", SKSPLICE_SHARED_DATA=str(SHARED_DATA),
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    before = _untracked()
    yield work, env
    after = _untracked()
    if before is not None and after is not None:
        left = sorted(after - before)
        assert not left, (
            f"run from the repository root, it left untracked files: {left}; "
            f"write into a temporary folder (tempfile.TemporaryDirectory()) instead"
        )


#: the shared data folder as ``../shared/data`` from the repository root
_DATA_FROM_ROOT = (ROOT.parent / "shared" / "data").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("where", "code", "marked"), SNIPPETS, ids=IDS)
def test_snippet_runs(where, code, marked, sandbox):
    work, env = sandbox
    if marked:
        tree = ast.parse(code)
        imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        code = ast.unparse(ast.Module(body=imports, type_ignores=[]))
    elif not _DATA_FROM_ROOT and "shared/data" in code:
        pytest.skip(f"{where} reads ../shared/data, which is absent next to the repository")
    script = work / "snippet.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{where} failed:\n{proc.stderr[-3000:]}"


GALLERY = sorted((ROOT / "examples").glob("plot_*.py"))


def test_gallery_examples_are_found():
    assert len(GALLERY) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("script", GALLERY, ids=[p.name for p in GALLERY])
def test_gallery_example_runs(script, sandbox):
    """Each gallery script runs as ``python examples/plot_x.py`` from the repository root."""
    if not SHARED_DATA.exists():
        pytest.skip("the gallery reads ../shared/data, which is absent")
    _, env = sandbox
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stderr[-3000:]}"
