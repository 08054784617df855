"""The docs must stay true: the command reference is generated and fresh, every command and
option is in it by its exact flag, every relative link resolves, and the README's quick start
holds the commands CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.main import get_command

from softmax_cli.cli import reference
from tests import helpers

DOCS = helpers.PROJECT_ROOT / "docs"
PAGES = [helpers.PROJECT_ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
COMMANDS_PAGE = DOCS / "commands.md"
COMMANDS = get_command(helpers.cli_app()).commands
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_command_reference_is_fresh():
    text = COMMANDS_PAGE.read_text(encoding="utf-8")
    assert reference.regenerate(text) == text, f"docs/commands.md is stale: run `{reference.REGENERATE}`"


def test_every_command_has_a_generated_section():
    assert sorted(reference.generated_names(COMMANDS_PAGE.read_text(encoding="utf-8"))) == sorted(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_is_in_the_reference_by_its_exact_flag(name):
    block = reference.command_block(name)
    for param in COMMANDS[name].params:
        for flag in [*param.opts, *param.secondary_opts]:
            if flag.startswith("-"):
                # Exact: `--n` must not pass on `--naive-softmax`, nor `-n` on `--no-x`.
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", block), f"softmax {name} {flag}"


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_no_page_keeps_a_measurement_diary(page):
    text = page.read_text(encoding="utf-8").lower()
    for phrase in ("earlier version", "re-measured", "intermediate stage", "this version", "used to take"):
        assert phrase not in text, f"{page.name}: {phrase!r}"


def test_quick_start_has_exactly_the_two_commands_ci_runs():
    readme = (helpers.PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in quick_start.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2
    assert commands[1] in (helpers.PROJECT_ROOT / ".ci" / "run").read_text()
