"""The callbacks that keep a run's summary.json true while it trains: a `softmax train` run's, and a
`softmax compare` run's (both sides, and how far apart they are). The summary's fields are checked
when read, in one place: folders.check_summary.

Duck-typed like every other training callback and standard library only, so this module never imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from softmax_cli.runs.folders import COMPARE, COMPARED, SUMMARY_FORMAT, SUMMARY_VERSION, now, write_summary


class RunSummaryWriter:
    """A training callback that keeps run_dir/summary.json true: after every epoch, and at the end.

    Duck-typed like every other callback, so this module never imports torch.
    """

    def __init__(
        self,
        run_dir: Path,
        resumed_from: Path | None = None,
        resumed_run: Path | None = None,
        name: str | None = None,
    ) -> None:
        """resumed_from: the checkpoint this run continues (--resume); resumed_run: the run folder that
        wrote it, where known (run_of_checkpoint); name: the run's name (--name)."""
        self.run_dir = run_dir
        self.resumed_from = resumed_from
        self.resumed_run = resumed_run
        self.name = name
        self.summary: dict | None = None
        self.start_epoch = 0

    def on_train_start(self, plan) -> None:
        hparams = plan.hparams.as_dict()
        self.start_epoch = plan.start_epoch
        self.summary = {
            "format": SUMMARY_FORMAT,
            "version": SUMMARY_VERSION,
            "started": now(),
            "updated": None,
            "impl": hparams["impl"],
            "device": str(plan.device),
            "hparams": hparams,
            "epochs_planned": hparams["epochs"],
            "epochs_done": plan.start_epoch,
            "train_examples": plan.train_examples,
            "status": "running",
            # Whose lock on the checkpoint says this run still lives (`softmax runs`, folders._still_running).
            "pid": os.getpid(),
            # Absolute: `softmax runs` and `softmax eval RUN_FOLDER` may run from another folder.
            "checkpoint": str(plan.paths.checkpoint.absolute()),
            "name": self.name,
            # The run folder this one continues, and the checkpoint file it resumed.
            "resumed_from": None if self.resumed_run is None else str(self.resumed_run.absolute()),
            "resumed_from_checkpoint": None if self.resumed_from is None else str(self.resumed_from.absolute()),
            "start_epoch": plan.start_epoch,
            "history": list(plan.history),
        }

    def on_batch_end(self) -> None:
        pass

    def on_epoch_end(self, metrics, model) -> None:
        self.summary["history"].append(metrics.as_dict())
        self.summary["epochs_done"] = metrics.epoch
        self._write()

    def on_train_end(self, result, model) -> None:
        if self.summary is None or result.epochs_done == self.start_epoch:
            return  # this run completed no epoch: it leaves no summary (and no run folder)
        # The result is the truth: an epoch whose on_epoch_end a stop cut short is still saved.
        self.summary["history"] = list(result.history)
        self.summary["epochs_done"] = result.epochs_done
        if result.diverged:
            self.summary["status"] = "diverged"
        elif result.interrupted:
            self.summary["status"] = "interrupted"
        else:
            self.summary["status"] = "finished"
        self._write()

    def _write(self) -> None:
        self.summary["updated"] = now()
        write_summary(self.run_dir, self.summary)


class CompareSummaryWriter:
    """Keeps a `softmax compare` run's summary.json true, written atomically after every epoch of
    either side and when the comparison ends.

    One object hears both sides' training callbacks (duck-typed: on_train_start, on_epoch_end,
    on_train_end; the side is the plan's impl) and on_compared for each epoch whose two sides
    were compared. epochs_done counts the compared epochs; "final" holds each side's last epoch.
    """

    def __init__(self, run_dir: Path, tolerance: float, name: str | None = None) -> None:
        self.run_dir = run_dir
        self.tolerance = tolerance
        self.name = name
        self.summary: dict | None = None
        self.side: str | None = None

    def on_train_start(self, plan) -> None:
        self.side = plan.hparams.impl
        if self.summary is not None:
            return
        hparams = {key: value for key, value in plan.hparams.as_dict().items() if key != "impl"}
        self.summary = {
            "format": SUMMARY_FORMAT,
            "version": SUMMARY_VERSION,
            "started": now(),
            "updated": None,
            "impl": COMPARE,
            "name": self.name,
            "device": str(plan.device),
            "hparams": hparams,
            "epochs_planned": hparams["epochs"],
            "epochs_done": 0,
            "train_examples": plan.train_examples,
            "status": "running",
            "checkpoint": None,
            "resumed_from": None,
            "resumed_from_checkpoint": None,
            "start_epoch": 0,
            "history": [],  # per compared epoch: {"epoch", "max_weight_diff", "max_bias_diff"}
            "final": {side: None for side in COMPARED},
            "agree": None,
            "max_abs_diff": None,
            "tolerance": self.tolerance,
        }

    def on_batch_end(self) -> None:
        pass

    def on_epoch_end(self, metrics, model) -> None:
        self.summary["final"][self.side] = metrics.as_dict()
        self._write()

    def on_compared(self, row) -> None:
        """One epoch of both sides compared (training.ComparedEpoch)."""
        entry = {"epoch": row.epoch, "max_weight_diff": row.max_weight_diff, "max_bias_diff": row.max_bias_diff}
        self.summary["history"].append(entry)
        self.summary["epochs_done"] = row.epoch
        largest = max(self.summary["max_abs_diff"] or 0.0, row.max_weight_diff, row.max_bias_diff)
        self.summary["max_abs_diff"] = largest
        self.summary["agree"] = largest <= self.tolerance
        self._write()

    def on_train_end(self, result, model) -> None:
        if self.summary is None:
            return
        if result.diverged:
            self.summary["status"] = "diverged"
        elif result.interrupted:
            self.summary["status"] = "interrupted"
        elif self.side == COMPARED[-1]:
            self.summary["status"] = "finished"
        else:
            return  # one side done, the other to come
        if any(self.summary["final"].values()):
            self._write()  # a comparison that completed no epoch leaves no summary

    def stopped(self) -> None:
        """The comparison ended before both sides finished (Ctrl-C between the sides, a failure):
        a summary still "running" says "interrupted"."""
        if self.summary is not None and self.summary["status"] == "running" and any(self.summary["final"].values()):
            self.summary["status"] = "interrupted"
            self._write()

    def _write(self) -> None:
        self.summary["updated"] = now()
        write_summary(self.run_dir, self.summary)
