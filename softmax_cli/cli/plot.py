"""`softmax plot`: the book's training curves (loss and accuracy per epoch) of one or more runs, as a PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from softmax_cli.cli.options import JsonOption, OverwriteOption, RunsDirOption, check_picture_target, write_image
from softmax_cli.cli.output import print_json, printable, results_console, say
from softmax_cli.cli.runs import VERBS, describe_run, newest_run
from softmax_cli.config import count
from softmax_cli.errors import UsageError

CURVES_NAME = "curves.png"


def plot(
    paths: Annotated[
        Optional[list[Path]],
        typer.Argument(
            metavar="RUN",
            show_default=False,
            help="Run folders (runs/<impl>/<run>) or checkpoints; several are overlaid, labelled by what differs. "
            "[default: the newest run under --runs-dir]",
        ),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            metavar="FILE",
            help="PNG to write. [default: curves.png in the first RUN's folder (a checkpoint's: the folder it is in)]",
            show_default=False,
        ),
    ] = None,
    runs_dir: RunsDirOption = Path("runs"),
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
) -> None:
    """Draw train loss, test loss, train/test (and val) accuracy per epoch, like the book's Animator.

    With no RUN, the newest run under --runs-dir.
    """
    from softmax_cli.runs.checkpoint import check_checkpoint_file

    if not paths:
        newest = newest_run(runs_dir, "plot", "RUN")
        found = f"{printable(str(newest.path))} ({describe_run(newest)})"
        say(escape(f"No RUN given: {VERBS['plot']} the newest run, {found}"))
        paths = [newest.path]
    # Every path before any is read, so a bad one is said at once and costs no torch import.
    for path in paths:
        if not os.path.lexists(path):
            raise UsageError(f"{path} does not exist", "RUN")
        if not path.is_dir():
            check_checkpoint_file(path)  # a symbolic link loop or to nowhere, a FIFO, ...: as eval says it
    if out is None:
        out = (paths[0] if paths[0].is_dir() else paths[0].parent) / CURVES_NAME
    check_picture_target(out, overwrite, "--out")
    from softmax_cli.pictures.figures import save_png, training_curves_figure
    from softmax_cli.runs.histories import identical_curves, label_runs, read_history

    runs = [read_history(path) for path in paths]
    labels, heading = label_runs(runs)
    groups = identical_curves(runs)
    # Runs with identical curves would hide one another: one line, labelled by all of them.
    curves = [(" = ".join(labels[i] for i in group) + (" (identical curves)" if len(group) > 1 else ""),
               runs[group[0]].history) for group in groups]  # fmt: skip
    figure = training_curves_figure(curves, heading)
    write_image(lambda path: save_png(figure, path), out)
    results = results_console(as_json)
    for label, run in zip(labels, runs, strict=True):
        last = run.history[-1]
        test_acc = "" if last["test_acc"] is None else f", final test accuracy {last['test_acc']:.4f}"
        results.print(escape(f"{label}: {count(len(run.history), 'epoch')} plotted{test_acc}."), soft_wrap=True)
    for group in groups:
        if len(group) > 1:
            say(escape(f"{' and '.join(labels[i] for i in group)} have identical curves: one line is drawn for them"))
    if as_json:
        print_json({
            "out": str(out),
            "title": heading,
            "runs": [
                {"path": str(run.path), "label": label, "epochs": len(run.history), "status": run.status,
                 "identical_curves": [str(runs[i].path) for group in groups if index in group for i in group
                                      if i != index],
                 "last": run.history[-1]}
                for index, (label, run) in enumerate(zip(labels, runs, strict=True))
            ],
        })  # fmt: skip
