"""`softmax runs`, and how eval and predict find their checkpoint: a file, a run folder, or the newest run.

Reads only the runs' small summary.json files and folder names (softmax_cli.runs.folders), never
torch, so listing runs is instant.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from softmax_cli.cli.options import JsonOption, RunsDirOption, within
from softmax_cli.cli.output import print_json, printable, results_console, say
from softmax_cli.config import Range
from softmax_cli.errors import SoftmaxError

# How each command that reads a checkpoint says what it does with the one it found.
VERBS = {"eval": "evaluating", "predict": "predicting with", "export": "exporting", "plot": "plotting"}


def runs(
    runs_dir: RunsDirOption = Path("runs"),
    limit: Annotated[
        Optional[int],
        typer.Option(
            "--limit",
            "-n",
            callback=within(Range(1)),
            metavar="N",
            help="Show only the newest N runs.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the runs under --runs-dir, newest first: settings, epochs, final accuracy, how each ended, its path."""
    from softmax_cli.cli.tables import render_runs
    from softmax_cli.runs.folders import list_runs

    found = list_runs(runs_dir)
    # A checkpoint some listed run has resumed needs no resume line.
    continued = {_resolved(record.resumed_from_checkpoint) for record in found if record.resumed_from_checkpoint}
    records = found[:limit]
    commands = [
        None if record.resumed_by or _resolved(record.checkpoint) in continued else resume_command(record)
        for record in records
    ]
    if as_json:
        pairs = zip(records, commands, strict=True)
        listed = [{**record.as_dict(), "resume_command": command} for record, command in pairs]
        print_json({"runs_dir": str(runs_dir), "runs": listed})
    if not records:
        where = "no folder " if not runs_dir.is_dir() else ""
        say(f"No runs: {where}{escape(printable(str(runs_dir)))} (train one with `softmax train`, or pass --runs-dir)")
        return
    render_runs(results_console(as_json), records, commands)


def _resolved(path) -> Path | None:
    """The absolute path, symbolic links followed; None for None or a path that cannot be resolved."""
    try:
        return None if path is None else Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return None


def resume_command(record) -> str | None:
    """The `softmax train --resume` line that continues a killed run from its checkpoint; None for any other.
    (`softmax runs` leaves it out, too, once a listed run has resumed from that checkpoint.)

    It repeats the device the run trained on (the batch order continues only there) and the runs
    folder it was in, unless that is the default ./runs; the data folder is not recorded.
    """
    from softmax_cli.runs.folders import KILLED

    if record.status != KILLED or record.checkpoint is None or not record.epochs_planned:
        return None
    if record.epochs_done is not None and record.epochs_done >= record.epochs_planned:
        return None  # every planned epoch is saved: killed while closing its logs, nothing to continue
    command = ["softmax", "train", "--resume", printable(str(record.checkpoint))]
    command += ["--epochs", str(record.epochs_planned)]
    runs_dir = record.path.parent.parent
    if runs_dir != Path("runs"):
        command += ["--runs-dir", printable(str(runs_dir))]
    if record.device:
        command += ["--device", printable(record.device)]
    return shlex.join(command)


def describe_run(record) -> str:
    """A run in a few words, for notes and hints: impl, epochs, how it ended, final test accuracy."""
    parts = [printable(record.impl)]  # a folder's name where the run has no summary
    if record.epochs_done is not None:
        parts.append(f"{record.epochs_done}/{record.epochs_planned} epochs")
    if record.status != "unknown":
        parts.append(record.status)
    if record.final and record.final.get("test_acc") is not None:
        parts.append(f"test acc {record.final['test_acc']:.4f}")
    return ", ".join(parts)


def newest_run(runs_dir: Path, command: str, argument: str):
    """The newest run under runs_dir that has a checkpoint (a RunRecord), for `softmax COMMAND`
    given no ARGUMENT; none is an error saying how to train one or name one. Imports no torch."""
    from softmax_cli.runs import folders as run_files

    newest = run_files.newest_checkpoints(runs_dir, 1)
    if not newest:
        raise SoftmaxError(
            f"no {argument} given, and no run under {runs_dir} has one; train one with `softmax train`, "
            f"or name a checkpoint or run folder: `softmax {command} PATH`"
        )
    return newest[0]


def find_checkpoint(given: Optional[Path], runs_dir: Path, command: str) -> Path:
    """The checkpoint `softmax COMMAND [CHECKPOINT]` works on, saying so where the user did not name the file.

    None: the newest run's under runs_dir. A run folder: its checkpoint. A folder of runs:
    its newest run's. A path that does not exist: an error naming the newest checkpoints
    under runs_dir and the command that takes one. A path that is no regular file (a
    symbolic link loop, ...): checkpoint.check_checkpoint_file's error. Imports no torch.
    """
    from softmax_cli.runs import checkpoint as ckpt

    verb = VERBS.get(command, "using")
    if given is None:
        newest = newest_run(runs_dir, command, "CHECKPOINT")
        found = escape(f"{_quoted(newest.checkpoint)} ({describe_run(newest)})")
        say(f"No CHECKPOINT given: {verb} the newest run's, {found}")
        return newest.checkpoint
    if given.is_dir():
        return _folder_checkpoint(given, runs_dir, command, verb)
    if not os.path.lexists(given):
        raise SoftmaxError(f"{given}: no such file; {_newest_hint(runs_dir, command)}")
    # A symbolic link loop or to nowhere, a FIFO or device: said as loading would, before torch is imported.
    ckpt.check_checkpoint_file(given)
    return given


def _folder_checkpoint(folder: Path, runs_dir: Path, command: str, verb: str) -> Path:
    from softmax_cli.runs import folders as run_files

    own = run_files.run_folder_checkpoint(folder)
    if own is not None:
        return own
    files = run_files.checkpoint_files(folder)
    if len(files) == 1:
        return files[0]
    if files:  # a `softmax compare` folder: scratch.pt and concise.pt
        choices = " or ".join(f"`softmax {command} {_quoted(path)}`" for path in files)
        raise SoftmaxError(f"{folder} holds {len(files)} checkpoints; name one: {choices}")
    newest = run_files.newest_checkpoints(folder, 1)
    if newest:
        say(escape(f"{printable(str(folder))} holds runs: {verb} the newest, {_quoted(newest[0].checkpoint)}"))
        return newest[0].checkpoint
    raise SoftmaxError(
        f"{folder} is a directory with no checkpoint and no run in it; {_newest_hint(runs_dir, command)}"
    )


def _newest_hint(runs_dir: Path, command: str, shown: int = 3) -> str:
    """Where the user's checkpoints are: the newest few under runs_dir and the command for the newest."""
    from softmax_cli.runs import folders as run_files

    newest = run_files.newest_checkpoints(runs_dir, shown)
    if not newest:
        return f"no run under {runs_dir} has a checkpoint either (train one with `softmax train`, or pass --runs-dir)"
    found = ", ".join(_quoted(record.checkpoint) for record in newest)
    return (
        f"the newest checkpoints under {runs_dir}: {found}; take the newest ({describe_run(newest[0])}) with "
        f"`softmax {command} {_quoted(newest[0].checkpoint)}`, or see them all with `softmax runs`"
    )


def _quoted(path: Path) -> str:
    """A path as a shell takes it, its control characters written out (output.printable)."""
    return shlex.quote(printable(str(path)))
