"""The README must stay true: every command and option the CLI has is documented there."""

from __future__ import annotations

import pytest
from typer.main import get_command

from tests import helpers

README = (helpers.PROJECT_ROOT / "README.md").read_text()
COMMANDS = get_command(helpers.cli_app()).commands


def test_every_command_has_a_readme_section():
    for name in COMMANDS:
        assert f"### `softmax {name}" in README, name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_is_in_the_readme(name):
    for param in COMMANDS[name].params:
        for flag in [*param.opts, *param.secondary_opts]:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}" in README or f" {flag}" in README, f"softmax {name} {flag}"


def test_quick_start_has_exactly_the_two_commands_ci_runs():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in quick_start.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2
    ci_script = (helpers.PROJECT_ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci_script
