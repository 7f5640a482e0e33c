"""The package's structure (docs/architecture.md): no import circle, imports only down the
layers, and no module over 450 lines unless its docstring says why it is one idea. Reads the
source with `ast`; imports nothing of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "cvae"
MAX_LINES = 450
# Top to bottom; a module may import its own room and the rooms below it. Rooms in one tuple
# are one layer and do not import each other.
LAYERS = (
    ("cli", "demo"),
    ("evaluation",),
    ("workflow",),
    ("training", "serving"),
    ("applications",),
    ("model",),
    ("data",),
    ("config", "limits", "options", "labels", "files", "images", "errors", "batches",
     "plots"),
)
BASICS = set(LAYERS[-1])


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports, at any depth of the file (function-level too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) - {name} for name, path in mods.items()}


def cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `g` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state and (found := visit(node)):
            return found
    return None


def room(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def layer(module: str) -> int:
    r = room(module)
    for i, rooms in enumerate(LAYERS):
        if r in rooms:
            return i
    raise AssertionError(f"{module}: room {r!r} is in no layer of docs/architecture.md")


def test_the_cycle_finder_finds_a_circle_and_accepts_a_chain():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_in_the_package():
    g = graph()
    assert len(g) > 40  # every module was read
    found = cycle(g)
    assert found is None, "import circle: " + " -> ".join(found)


def test_imports_go_down_the_layers():
    up = sorted(f"{a} imports {b}" for a, deps in graph().items() if a != "cvae"
                for b in deps if b != "cvae" and room(a) != room(b) and layer(b) <= layer(a)
                and not (room(a) in BASICS and room(b) in BASICS))
    assert up == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_is_short_or_says_why(name):
    path = modules()[name]
    lines = len(path.read_text().splitlines())
    if lines > MAX_LINES:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert "one idea" in doc or "one set of rules" in doc, (
            f"{path.relative_to(REPO)} has {lines} lines (> {MAX_LINES}) and its docstring "
            f"does not say why it is one idea")


def test_every_folder_says_what_it_owns():
    for folder in sorted(p for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        init = folder / "__init__.py"
        assert init.is_file(), f"{folder} has no __init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} has no docstring"
