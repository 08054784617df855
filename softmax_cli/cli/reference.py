"""The command reference in docs/commands.md, generated from the CLI's own Click commands.

Hand-written prose sits around generated blocks, each between
`<!-- generated: NAME -->` and `<!-- end generated -->`; this module rewrites only what is
inside them, from Click's own help records (flags, metavars, defaults and ranges exactly as
`--help` shows them), so the reference cannot drift from the code. tests/test_docs.py fails
when the committed file differs from a fresh generation.

    python -m softmax_cli.cli.reference docs/commands.md          # rewrite in place
    python -m softmax_cli.cli.reference docs/commands.md --check  # exit 1 when stale
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import typer.main

REGENERATE = "python -m softmax_cli.cli.reference docs/commands.md"
BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.DOTALL)
# Help is laid out for this width, whatever terminal runs the generator.
WIDTH = 80


def root_command():
    """The `softmax` Click group that Typer builds from the app (Typer ships its own Click)."""
    from softmax_cli.cli import app

    return typer.main.get_command(app)


def _cell(text: str) -> str:
    """One Markdown table cell: pipes escaped, line breaks folded."""
    return " ".join(text.split()).replace("|", "\\|")


def command_block(name: str) -> str:
    """The generated Markdown for one command: usage, what it does, its options, its examples."""
    group = root_command()
    parent = group.context_class(group, info_name="softmax", terminal_width=WIDTH, max_content_width=WIDTH)
    command = group.commands[name]
    ctx = command.context_class(command, info_name=name, parent=parent, terminal_width=WIDTH, max_content_width=WIDTH)
    lines = ["```text", " ".join(command.collect_usage_pieces(ctx)).join([f"Usage: softmax {name} ", ""]), "```", ""]
    help_lines = [line for line in (command.help or "").splitlines() if line.strip() != "\b"]
    lines += ["\n".join(help_lines).strip(), "", "| argument or option | meaning |", "| --- | --- |"]
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None:
            flags, meaning = record
            if param.param_type_name == "argument":  # as plain --help names it, without Typer's type
                flags = (param.metavar or param.name.upper()) + ("..." if param.nargs != 1 else "")
            lines.append(f"| `{_cell(flags)}` | {_cell(meaning)} |")
    if command.epilog:
        # The epilog's examples; its "Docs:" line points here.
        epilog = [line for line in command.epilog.splitlines() if line.strip() != "\b" and not line.startswith("Docs:")]
        lines += ["", "```text", *"\n".join(epilog).strip().splitlines(), "```"]
    return "\n".join(lines) + "\n"


def regenerate(text: str) -> str:
    """`text` with every generated block rewritten from the commands."""
    return BLOCK.sub(lambda match: match.group(1) + command_block(match.group("name")) + match.group(4), text)


def generated_names(text: str) -> list[str]:
    """The commands that `text` has a generated block for, in order."""
    return [match.group("name") for match in BLOCK.finditer(text)]


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(f"usage: {REGENERATE} [--check]", file=sys.stderr)
        return 2
    path = Path(argv[0])
    text = path.read_text(encoding="utf-8")
    fresh = regenerate(text)
    if "--check" in argv:
        if fresh != text:
            print(f"{path} is stale: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    path.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
