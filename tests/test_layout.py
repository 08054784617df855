"""The house rules of the package, read from its source.

Imports point one way (cli/ is the skin), there is no cycle, no private name crosses a module,
a folder is a concern (no family of modules sharing a name prefix), and every package says
what it holds. A module may grow to about 700 lines where its one job needs it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "softmax_cli"
MAX_LINES = 700
MAX_TOP_LEVEL_ENTRIES = 18
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
            # `from softmax_cli.runs import checkpoint` imports the module softmax_cli.runs.checkpoint
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
    # The app's own modules, those softmax_cli.cli imports; a reader of the app (the generator of
    # the command reference) imports the app like `python -m softmax_cli` does, and nothing imports it.
    app_modules = {name for name in GRAPH["softmax_cli.cli"] if name.startswith("softmax_cli.cli.")}
    assert app_modules
    for name in app_modules:
        assert "softmax_cli.cli" not in imports_of(MODULES[name]) - {name}, name


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


def test_few_top_level_entries_and_sub_packages_by_concern():
    entries = [p for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()]
    packages = [p.name for p in entries if p.is_dir() and p.name != "cli"]
    assert len(entries) <= MAX_TOP_LEVEL_ENTRIES, sorted(p.name for p in entries)
    assert len(packages) >= 3, packages


@pytest.mark.parametrize("folder", sorted({path.parent for path in PACKAGE.rglob("*.py")}), ids=str)
def test_no_family_of_modules_sharing_a_name_prefix(folder):
    """`x_a` beside `x_b`, or `x` beside `x_a`, is a family: it belongs in a folder `x/`."""
    stems = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("__"))
    stems += sorted(p.name for p in folder.iterdir() if (p / "__init__.py").is_file())
    prefixes = [stem.split("_")[0] for stem in stems if "_" in stem]
    families = sorted({prefix for prefix in prefixes if prefixes.count(prefix) > 1 or prefix in stems})
    assert families == [], f"{folder.name}/: modules sharing a prefix: {families}"


@pytest.mark.parametrize("name", sorted(n for n, p in MODULES.items() if p.name == "__init__.py"))
def test_every_package_says_what_it_holds(name):
    assert ast.get_docstring(ast.parse(MODULES[name].read_text())), f"{name} has no docstring"


def test_no_private_name_is_imported_from_another_module():
    offenders = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("softmax_cli"):
                offenders += [
                    f"{name}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert offenders == []


@pytest.mark.parametrize("folder", sorted({path.parent for path in PACKAGE.rglob("*.py")}), ids=str)
def test_every_folder_of_modules_is_a_package(folder):
    """A namespace folder would escape the checks above that count packages and read their docstrings."""
    assert (folder / "__init__.py").is_file(), folder
