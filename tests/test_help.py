"""`--help` in a person's words, read as a user sees it: every value named by one plain metavar,
no range a user cannot use, and each command's help ending in examples that work and a docs link."""

from __future__ import annotations

import re
import shlex

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from tests import helpers
from tests.helpers import invoke

COMMANDS = sorted(get_command(helpers.cli_app()).commands)
# Typer's own names for a value's type, which say nothing to a user.
LEAKS = re.compile(r"RANGE|9223372036854775807|list\[|<path>|\.\.\.\}|<(int|float|str|Path)\b|\d<=x|x>=")
# The metavars the help uses, each for one kind of value.
METAVARS = {"N", "X", "DIR", "FILE", "PATH", "LIST", "URL", "DEVICE", "RUN", "CHECKPOINT", "NAME"}


def help_at(width: int, *args) -> str:
    """`softmax ARGS --help` on a terminal `width` columns wide; it must succeed."""
    result = CliRunner().invoke(helpers.cli_app(), [*args, "--help"], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    return result.stdout


def examples_in(text: str) -> list[str]:
    """The lines of the help's "Examples:" block, up to the blank line that ends it."""
    assert "Examples:" in text, text
    block = text.split("Examples:\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_ends_with_examples_and_its_docs_page(name):
    text = help_at(80, name)
    assert "Examples:" in text
    assert text.rstrip().endswith(f"Docs: docs/commands.md#{name}"), text


def test_the_top_level_help_ends_with_examples_and_the_docs_index():
    text = help_at(80)
    assert text.rstrip().endswith("Docs: docs/README.md"), text
    assert {shlex.split(example)[1] for example in examples_in(text)} <= set(COMMANDS)


@pytest.mark.parametrize("name", ["", *COMMANDS])
@pytest.mark.parametrize("width", [80, 50])
def test_help_shows_no_internal_type_names(name, width):
    text = help_at(width, *([name] if name else []))
    assert not LEAKS.search(text), LEAKS.search(text).group()


@pytest.mark.parametrize("name", COMMANDS)
def test_every_value_is_named_by_a_house_metavar(name):
    """--runs-dir is DIR wherever it appears, an integer N, a float X, and so on; choices list themselves."""
    for param in get_command(helpers.cli_app()).commands[name].params:
        if getattr(param, "is_flag", False) or param.name == "help":
            continue
        metavar = param.metavar
        assert metavar in METAVARS or re.fullmatch(r"\[[a-z]+(\|[a-z]+)+\]", metavar or ""), (name, param.name, metavar)


@pytest.mark.parametrize("name", COMMANDS)
def test_examples_stay_one_per_line_and_name_their_command(name):
    """At 50 columns click would rewrap the longest examples; each must stay whole on its line."""
    for width in (80, 50):
        examples = examples_in(help_at(width, name))
        assert len(examples) >= 2, examples
        for example in examples:
            assert example.startswith(f"softmax {name} ") or example == f"softmax {name}", example


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_every_example_parses(name):
    """Each example with --help after its command: an unknown flag, or a flag left without its value,
    is a usage error (exit 2), and nothing runs. (--help at the very end could be taken as the value
    of the option before it, and the example would run.)"""
    for example in examples_in(help_at(80, *([name] if name else []))):
        program, command, *rest = shlex.split(example)
        assert program == "softmax" and command in COMMANDS, example
        result = invoke(command, "--help", *rest)
        assert result.exit_code == 0, (example, result.output)
        assert result.stdout.startswith(f"Usage: softmax {command} "), result.output


def test_a_misspelt_example_flag_would_be_caught():
    """The control for test_every_example_parses: an unknown flag after --help is still refused."""
    assert invoke("train", "--help", "--epoch", "3").exit_code == 2


@pytest.mark.parametrize(
    "args, says",
    [
        (["runs", "--limit", "0"], "must be >= 1, not 0"),
        (["predict", "-n", "10001"], "must be in [1, 10000], not 10001"),
        (["train", "--epochs", "0"], "must be >= 1, not 0"),
        (["train", "--workers", "65"], "must be in [0, 64], not 65"),
    ],
)
def test_a_value_out_of_range_is_a_usage_error_in_words(args, says):
    result = invoke(*args)
    assert result.exit_code == 2 and result.stdout == ""
    assert says in helpers.flat(result.stderr) and "9223372036854775807" not in result.stderr
