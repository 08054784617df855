"""`softmax plot`: the book's training curves (loss and accuracy per epoch) of one or more runs, as a PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from softmax_cli.cli.options import JsonOption, write_image
from softmax_cli.cli.output import print_json, say
from softmax_cli.errors import UsageError


def plot(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="RUN",
            show_default=False,
            help="Run folders (runs/<impl>/<run>) or checkpoints; several are overlaid, labelled by what differs.",
        ),
    ],
    out: Annotated[Path, typer.Option(metavar="FILE", help="PNG to write.")] = Path("curves.png"),
    as_json: JsonOption = False,
) -> None:
    """Draw train loss, test loss, train/test (and val) accuracy per epoch, like the book's Animator."""
    from softmax_cli.runs.checkpoint import check_checkpoint_file

    # Every path before any is read, so a bad one is said at once and costs no torch import.
    for path in paths:
        if not os.path.lexists(path):
            raise UsageError(f"{path} does not exist", "RUN")
        if not path.is_dir():
            check_checkpoint_file(path)  # a symbolic link loop or to nowhere, a FIFO, ...: as eval says it
    from softmax_cli.pictures.figures import save_png, training_curves_figure
    from softmax_cli.runs.histories import label_runs, read_history

    runs = [read_history(path) for path in paths]
    labels, heading = label_runs(runs)
    figure = training_curves_figure([(label, run.history) for label, run in zip(labels, runs, strict=True)], heading)
    for label, run in zip(labels, runs, strict=True):
        last = run.history[-1]
        test_acc = "" if last["test_acc"] is None else f", test acc {last['test_acc']:.4f}"
        if not as_json:  # with --json, the JSON object is the result
            say(f"{escape(label)}: {len(run.history)} epochs{test_acc}")
    write_image(lambda path: save_png(figure, path), out)
    if as_json:
        print_json({
            "out": str(out),
            "runs": [
                {"path": str(run.path), "label": label, "epochs": len(run.history), "last": run.history[-1]}
                for label, run in zip(labels, runs, strict=True)
            ],
        })  # fmt: skip
