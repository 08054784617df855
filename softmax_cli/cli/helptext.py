"""What `--help` shows beyond each option's own line: arguments named plainly, and the epilog.

Typer names an argument in the help by its metavar and its Python type (`RUN <list[Path]>`)
and wraps a required one in braces on the usage line (`{RUN}...`); HelpCommand names it as
a person would, `RUN...` or `[CHECKPOINT]`, and never breaks a word at its hyphen (a path
such as ~/.local/share/softmax-cli stays whole). The epilog is each command's examples, one
per line, and the page of the docs that says more.
"""

from __future__ import annotations

import textwrap

from typer.core import TyperCommand

# Click rewraps the epilog's paragraphs, except one that starts with this marker on a line of its own.
NO_REWRAP = "\b"


def epilog(examples: list[str], docs: str) -> str:
    """An "Examples:" block, one ready-to-paste command a line, then where the docs say more."""
    lines = "\n".join(f"  {example}" for example in examples)
    return f"{NO_REWRAP}\nExamples:\n{lines}\n\nDocs: {docs}"


def _argument_name(param) -> str:
    name = param.metavar or param.name.upper()
    return f"{name}..." if param.nargs != 1 else name


class HelpCommand(TyperCommand):
    """A Typer command whose help names each argument by its metavar alone."""

    def collect_usage_pieces(self, ctx):
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx, formatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                sections["Arguments"].append((_argument_name(param), record[1]))
            else:
                sections["Options"].append(record)
        for title, records in sections.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl(_unhyphenated(records, formatter.width))


def _unhyphenated(records: list[tuple[str, str]], width: int, col_max: int = 30, col_spacing: int = 2):
    """The records with each one-paragraph text wrapped here, at click's column width, without breaking
    a word at a hyphen; the no-rewrap marker makes click's definition list keep those lines."""
    first_col = min(max(len(name) for name, _ in records), col_max) + col_spacing
    wrapper = textwrap.TextWrapper(max(width - first_col - 2, 10), break_on_hyphens=False, break_long_words=False)
    return [
        (name, f"{NO_REWRAP}\n{wrapper.fill(text)}" if text and "\n" not in text else text) for name, text in records
    ]
