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

# One intra-op thread where the user has not chosen (read when torch loads). With more, OpenMP's
# threads wait on each other at every step of this small model; beside a busy process they fight
# it for the CPU and epochs swing several times over, while on an idle 2-core machine a second
# thread saved 9-25% an epoch. One thread also gives the same bits on any number of cores.
# Measured with `python benchmarks/busy.py` (docs/performance.md, "A busy machine").
os.environ.setdefault("OMP_NUM_THREADS", "1")

import typer

from softmax_cli import __version__
from softmax_cli.cli import bench, compare, download, evaluate, export, plot, runs, sweep, train
from softmax_cli.cli.helptext import HelpCommand, epilog
from softmax_cli.cli.output import prepare_streams, reader_gone, reports_errors

# With torch loaded, the interpreter's last garbage collections walk every object torch made:
# about 0.2 s of each command's exit. Frozen objects are skipped. Everything the commands write
# is closed by then; what is lost is only the finalizers of cyclic garbage left at exit.
atexit.register(gc.freeze)

# What `softmax --help` ends with: the first steps, in order.
APP_EXAMPLES = [
    "softmax download",
    "softmax train --preset tuned",
    "softmax eval --confusion-png confusion.png",
]

app = typer.Typer(
    name="softmax",
    help="Softmax regression on Fashion-MNIST, from scratch and concisely (Dive into Deep Learning, ch. 3).",
    epilog=epilog(APP_EXAMPLES, "docs/README.md"),
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
    "export": export.export,
    "runs": runs.runs,
    "plot": plot.plot,
    "compare": compare.compare,
    "bench": bench.bench,
    "sweep": sweep.sweep,
}
# Each command's line in `softmax --help`.
SUMMARIES = {
    "download": "Fetch the four Fashion-MNIST files and verify them.",
    "train": "Train a model: a row per epoch, a checkpoint, TensorBoard logs.",
    "eval": "Test a checkpoint: accuracy, per-class table, confusion matrix.",
    "predict": "Show test images (or your own pictures) with their predicted classes.",
    "export": "Write a checkpoint's model as ONNX (or .pt2) for other tools.",
    "runs": "List the runs, newest first, with how each ended.",
    "plot": "Draw the training curves of one or more runs.",
    "compare": "Train scratch and concise side by side; check they agree.",
    "bench": "Time the book's data pipeline, the memory loader and both models.",
    "sweep": "Train a grid of settings; keep the best on validation.",
}
# The examples each command's --help ends with: ready to paste, one a line, each starting with
# `softmax <command>` (tests/test_help.py runs each with --help appended, so every flag exists).
EXAMPLES = {
    "download": [
        "softmax download",
        "softmax download --from ~/Downloads/fashion-mnist",
        "softmax download --data-dir ~/datasets/fashion-mnist --force",
    ],
    "train": [
        "softmax train",
        "softmax train --preset tuned --epochs 20 --val-split 0.1",
        "softmax train --impl concise --device cpu --json",
    ],
    "eval": [
        "softmax eval",
        "softmax eval runs/concise --confusion-png confusion.png",
        "softmax eval --weights-png weights.png --json",
    ],
    "predict": [
        "softmax predict",
        "softmax predict --only-wrong -n 36 --out wrong.png",
        "softmax predict runs/concise --json",
        "softmax predict --image shirt.jpg --image photos/ --out seen.png",
    ],
    "export": [
        "softmax export --out model.onnx",
        "softmax export runs/concise --out model.onnx --overwrite --json",
        "softmax export runs/scratch/checkpoint.pt --out model.pt2",
    ],
    "runs": [
        "softmax runs",
        "softmax runs -n 5",
        "softmax runs --runs-dir experiments --json",
    ],
    "plot": [
        "softmax plot",
        "softmax plot runs/scratch/*",
        "softmax plot runs/scratch/* runs/concise/* --out both.png",
    ],
    "compare": [
        "softmax compare",
        "softmax compare --epochs 3 --tolerance 1e-5",
        "softmax compare --preset tuned --device cpu",
    ],
    "bench": [
        "softmax bench",
        "softmax bench --epochs 1 --workers 2",
        "softmax bench --device cuda --json",
    ],
    "sweep": [
        "softmax sweep --lr 0.03,0.1,0.3",
        "softmax sweep --preset tuned --lr 0.02,0.05 --weight-decay 0,1e-4,1e-3",
        "softmax sweep --lr 0.1 --seed 1,2,3 --epochs 5 --top 3",
    ],
}
for name, command in COMMANDS.items():
    app.command(
        name,
        cls=HelpCommand,
        short_help=SUMMARIES[name],
        epilog=epilog(EXAMPLES[name], f"docs/commands.md#{name}"),
    )(reports_errors(command))
