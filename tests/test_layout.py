"""The house rules of the package, read from its source: imports point one way, no cycles, short modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "softmax_cli"
MAX_LINES = 450
SKIN_ONLY = ("typer", "rich", "softmax_cli.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from softmax_cli import checkpoint` imports the module softmax_cli.checkpoint
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {
    name: {other for other in imports_of(path) if other in MODULES and other != name and other != "softmax_cli"}
    for name, path in MODULES.items()
}


def test_the_body_never_imports_the_skin():
    offenders = []
    for name, path in MODULES.items():
        if name.startswith("softmax_cli.cli") or name == "softmax_cli.__main__":
            continue
        for imported in imports_of(path):
            if any(imported == banned or imported.startswith(banned + ".") for banned in SKIN_ONLY):
                offenders.append(f"{name} imports {imported}")
    assert offenders == []


def test_command_modules_never_import_the_app_back():
    for name, path in MODULES.items():
        if name.startswith("softmax_cli.cli."):
            assert "softmax_cli.cli" not in imports_of(path) - {name}, name


def test_no_import_cycles():
    """Depth-first search over the import graph, counting imports inside functions too."""
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(GRAPH[node]):
            # A package's __init__ is imported on the way to its submodules: not an edge back.
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == "open":
                pytest.fail("import cycle: " + " -> ".join([*trail[trail.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for start in sorted(GRAPH):
        if start not in state:
            visit(start, [start])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_the_limit(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"
