"""The `softmax` command line: a Typer skin over the body. Parse, call the body, render.

This module builds `app` and registers every command; the command modules never import
it back. Nothing outside softmax_cli.cli imports this package (`python -m softmax_cli`
aside). torch, torchvision and tensorboard are imported inside the commands, so every
`--help` answers instantly.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from typing import Annotated

# OpenMP's worker threads spin while they wait for work; beside one busy process on 2 cores
# they fight it for the CPU and epochs swing many times over. Passive waiting (set before
# torch loads OpenMP, and only where the user has not chosen) makes them sleep instead.
# Measured with `python benchmarks/busy.py` (docs: the README's performance section).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from softmax_cli import __version__
from softmax_cli.cli import bench, compare, download, evaluate, plot, runs, sweep, train
from softmax_cli.cli.output import prepare_streams, reader_gone, reports_errors

# With torch loaded, the interpreter's last garbage collections walk every object torch made:
# about 0.2 s of each command's exit. Frozen objects are skipped. Everything the commands write
# is closed by then; what is lost is only the finalizers of cyclic garbage left at exit.
atexit.register(gc.freeze)

app = typer.Typer(
    name="softmax",
    help="Softmax regression on Fashion-MNIST, from scratch and concisely (Dive into Deep Learning, ch. 3).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help and errors: a usage error ends in one "Error: ..." line, not a box.
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        prepare_streams()
        try:
            typer.echo(f"softmax-cli {__version__}")
            sys.stdout.flush()
        except BrokenPipeError:
            raise reader_gone() from None
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Softmax regression on Fashion-MNIST, from scratch and concisely (Dive into Deep Learning, ch. 3)."""
    # Before any command starts its work: a closed stdout is refused now, not after training.
    prepare_streams()


COMMANDS = {
    "download": download.download,
    "train": train.train,
    "eval": evaluate.evaluate,
    "predict": evaluate.predict,
    "runs": runs.runs,
    "plot": plot.plot,
    "compare": compare.compare,
    "bench": bench.bench,
    "sweep": sweep.sweep,
}
for name, command in COMMANDS.items():
    app.command(name)(reports_errors(command))
