"""The architecture, checked: the layers (import-linter contracts of pyproject.toml), no import cycle between
modules (function-level imports included), ``planner/__init__.py`` as the composition root nothing imports, no
function over ``MAX_FUNCTION_LINES`` lines, and ruff and mypy clean on ``LINTED_PACKAGES``.

Each test reports every offender by name (module, function, file, length), not only the first."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parent.parent
PLANNER = REPO / "planner"
ROOT = "planner"  # the composition root: planner/__init__.py
MAX_FUNCTION_LINES = 100  # end_lineno - lineno + 1 of the def, docstring included

#: The packages that ruff and mypy (configured in pyproject.toml) must find clean. Add a package here once it is.
LINTED_PACKAGES = (
    "planner/model", "planner/files", "planner/hostimport", "planner/libvirt", "planner/verify", "planner/engine",
    "planner/analysis",
)


def _tool(name: str) -> str:
    """A tool of the test extra: beside this Python (the virtual environment), else on PATH. Missing is a failure,
    never a skip: the test extra installs them."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is not installed: install the test extra (pip install -e '.[test]')"
    return found


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def _output(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


# ------------------------------------------------------------------------------------------ import graph

def module_name(path: Path) -> str:
    """planner/io/loader.py → planner.io.loader; planner/io/__init__.py → planner.io."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def planner_modules() -> dict[str, Path]:
    """Every module of the planner package, by dotted name."""
    return {module_name(p): p for p in sorted(PLANNER.rglob("*.py"))}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The planner modules that ``path`` imports anywhere in its body (module level, functions, ``if`` blocks).

    ``import a.b.c`` → a.b.c; ``from a.b import c`` → a.b.c when that is a module, else a.b; relative imports are
    resolved against the module's package. Names outside ``known`` (other packages) are left out."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return {m for m in found if m in known and m != name}


def import_graph() -> nx.DiGraph:
    """Module → the planner modules it imports (an edge per import, wherever it stands in the file)."""
    modules = planner_modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        graph.add_edges_from((name, target) for target in imported_modules(path, set(modules)))
    return graph


def import_cycles(graph: nx.DiGraph) -> list[list[str]]:
    """One cycle (module names, the first repeated at the end) per strongly connected group of modules."""
    cycles = []
    for component in nx.strongly_connected_components(graph):
        if len(component) > 1:
            edges = nx.find_cycle(graph.subgraph(component))
            cycles.append([a for a, _ in edges] + [edges[0][0]])
    return sorted(cycles)


def test_import_graph_reads_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The graph builder itself: a function-level import and a relative import are edges; a cycle is reported."""
    pkg = tmp_path / "planner" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "planner" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from planner.sub import b\n    return b\n")
    (pkg / "b.py").write_text("from . import c\n")
    (pkg / "c.py").write_text("import planner.sub.a\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PLANNER", tmp_path / "planner")
    graph = import_graph()
    assert set(graph.edges) == {("planner.sub.a", "planner.sub.b"), ("planner.sub.b", "planner.sub.c"),
                                ("planner.sub.c", "planner.sub.a")}
    assert import_cycles(graph) == [["planner.sub.a", "planner.sub.b", "planner.sub.c", "planner.sub.a"]]


def test_layers_hold_under_import_linter():
    result = _run([_tool("lint-imports")])
    assert result.returncode == 0, "lint-imports: a layer contract is broken\n" + _output(result)


def test_no_import_cycle_between_modules():
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles (function-level imports included):\n" + "\n".join(
        "  " + " -> ".join(cycle) for cycle in cycles)


def test_nothing_in_planner_imports_the_composition_root():
    graph = import_graph()
    importers = sorted(m for m in graph.predecessors(ROOT) if m != ROOT)
    assert not importers, (f"{ROOT}/__init__.py is the composition root (it registers the plan views and the lazy "
                           f"API): no module of the package may import it; imported by: {', '.join(importers)}")


# ------------------------------------------------------------------------------------------ function length

def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, str, int]]:
    """(qualified name, file, lines) of every function or method over ``limit`` lines, longest first."""
    found = []
    for path in sorted(PLANNER.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found.extend((name, str(path.relative_to(REPO)), length) for name, length in _function_lengths(tree)
                     if length > limit)
    return sorted(found, key=lambda item: (-item[2], item[1], item[0]))


def _function_lengths(tree: ast.AST, prefix: str = ""):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node.end_lineno - node.lineno + 1
            yield from _function_lengths(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _function_lengths(node, f"{prefix}{node.name}.")
        else:
            yield from _function_lengths(node, prefix)


def test_function_length_counter():
    tree = ast.parse("class A:\n    def m(self):\n        def inner():\n            pass\n        return 1\n"
                     "def f():\n    '''doc'''\n    return 2\n")
    assert dict(_function_lengths(tree)) == {"A.m": 4, "A.m.inner": 2, "f": 3}


def test_no_function_over_the_limit():
    offenders = long_functions()
    assert not offenders, f"functions over {MAX_FUNCTION_LINES} lines (name, file, lines):\n" + "\n".join(
        f"  {name}  {file}  {length}" for name, file, length in offenders)


# ------------------------------------------------------------------------------------------ linters

@pytest.mark.parametrize("package", LINTED_PACKAGES)
def test_ruff_is_clean(package):
    result = _run([_tool("ruff"), "check", "--no-cache", package])
    assert result.returncode == 0, f"ruff check {package}\n" + _output(result)


@pytest.mark.parametrize("package", LINTED_PACKAGES)
def test_mypy_is_clean(package):
    result = _run([_tool("mypy"), package])
    assert result.returncode == 0, f"mypy {package}\n" + _output(result)
