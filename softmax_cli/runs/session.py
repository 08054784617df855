"""One training run on disk: its folder, its claimed checkpoint, its logs, and `training.fit`.

`softmax train` and the Python API's `softmax_cli.train` both run through `train_run`, so a
run made either way has the same folder, summary, TensorBoard events and lock. It reports
through the callbacks it is given (a display, say) and never prints; a log that cannot be
written is reported through `warn` and training goes on (training.BestEffort).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from softmax_cli import stops, training
from softmax_cli.config import Hparams, RunPaths
from softmax_cli.pictures.tensorboard import TensorBoardLogger
from softmax_cli.runs import checkpoint as ckpt
from softmax_cli.runs.folders import CHECKPOINT_NAME, make_run_dir, run_of_checkpoint
from softmax_cli.runs.summaries import RunSummaryWriter


@dataclass
class TrainedRun:
    """What a run left: fit's result (history, checkpoint, how it ended) and whether TensorBoard's log is whole."""

    result: training.TrainingResult
    tensorboard_failure: str | None


def tensorboard_name(run_dir: Path, runs_dir: Path) -> str:
    """How TensorBoard names a run under `--logdir runs_dir`: its path below it (`scratch/<folder>`)."""
    try:
        return run_dir.absolute().relative_to(runs_dir.absolute()).as_posix()
    except ValueError:
        return str(run_dir)


class StopsRecordedWhileClosing:
    """A training callback, the first to hear of the end: from then on a stop request is recorded,
    no longer raised. What is left (closing the logs, the report) is short, and cutting it short
    would leave an event file unclosed or a report that says less than was saved."""

    def on_train_start(self, plan) -> None: ...
    def on_batch_end(self) -> None: ...
    def on_epoch_end(self, metrics, model) -> None: ...

    def on_train_end(self, result, model) -> None:
        stops.closing()


def train_run(
    hparams: Hparams,
    data_dir: Path,
    runs_dir: Path,
    device,
    *,
    checkpoint: Path | None = None,
    workers: int = 0,
    resumed: dict | None = None,
    resume_path: Path | None = None,
    name: str | None = None,
    callbacks=(),
    warn=lambda message: None,
) -> TrainedRun:
    """Make the run folder, claim the checkpoint, train with the summary and TensorBoard logging
    besides `callbacks`, and leave no folder behind when no epoch completed.

    A `checkpoint` given explicitly must already be claimed by the caller (the CLI claims it
    before fetching data, so a refusal comes at once); the run folder's own is claimed here.
    """
    new_folders = [folder for folder in (runs_dir, runs_dir / hparams.impl) if not folder.exists()]
    # The run this one continues: told in its summary (`softmax runs` shows the chain) and in TensorBoard.
    resumed_run = run_of_checkpoint(resume_path, runs_dir) if resume_path is not None else None
    try:
        tag = hparams.resumed_run_tag(resumed["epoch"]) if resumed else hparams.run_tag
        log_dir = make_run_dir(runs_dir, hparams.impl, tag, name)
        new_folders.append(log_dir)
        paths = RunPaths(data_dir=data_dir, log_dir=log_dir, checkpoint=checkpoint or log_dir / CHECKPOINT_NAME)
        with ExitStack() as claimed:
            if checkpoint is None:
                # Claimed as soon as the folder exists: a run killed from here on leaves the lock file
                # that tells `softmax runs` it was killed.
                claimed.enter_context(ckpt.claim_checkpoint_path(paths.checkpoint))
            # The logs are by-products: a full disk under them must not cost the training or its checkpoint.
            continues, from_epoch = None, None
            if resumed:
                continues = tensorboard_name(resumed_run, runs_dir) if resumed_run else str(resume_path)
                from_epoch = resumed["epoch"]
            logger = TensorBoardLogger(log_dir, name=name, continues=continues, from_epoch=from_epoch)
            tensorboard = training.BestEffort(logger, "TensorBoard logging", warn)
            summary = RunSummaryWriter(log_dir, resume_path, resumed_run, name)
            summary = training.BestEffort(summary, "the run summary (summary.json)", warn)
            # The summary first after the checkpoint: a run killed between the two writes (kill -9 leaves
            # no time to finish the epoch's logging) then shows its last epoch in `softmax runs` nearly always.
            listeners = training.CallbackList([StopsRecordedWhileClosing(), summary, *callbacks, tensorboard])
            result = training.fit(hparams, paths, device, listeners, workers=workers, resume_from=resumed)
    finally:
        # A run that completed no epoch (failed, interrupted, diverged) leaves no folder behind.
        _remove_empty(new_folders)
    if not log_dir.is_dir():
        result.log_dir = None
    return TrainedRun(result, tensorboard.failure)


def train_payload(result: training.TrainingResult, name: str | None = None) -> dict:
    """What a run ended with, as `softmax train --json` prints it and the Python API's result holds it."""
    return {
        "impl": result.hparams.impl,
        "device": str(result.device),
        "epochs": result.epochs_done,
        "history": result.history,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "log_dir": str(result.log_dir) if result.log_dir else None,
        "name": name,
        "hparams": result.hparams.as_dict(),
        "interrupted": result.interrupted,
    }


def _remove_empty(folders: list[Path]) -> None:
    """Remove those of these folders (made by this run) that are empty, deepest first."""
    for folder in sorted(folders, key=lambda path: len(path.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty, or already gone: it stays as it is
