"""Run folders: making them, the small summary each run keeps up to date, and finding runs again.

A run lives in RUNS_DIR/<impl>/<timestamp>-<tag>/ with its TensorBoard events, its
checkpoint.pt and summary.json. The summary is plain JSON, rewritten atomically after
every epoch and when the run ends, so `softmax runs`, `softmax eval` with no argument and
`softmax plot` can read a run without importing torch. A run that completed no epoch
writes none (and its folder is removed), so a summary always describes a usable run.

Standard library only, like everything a light command touches.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from softmax_cli.atomic import atomic_write
from softmax_cli.errors import SoftmaxError

SUMMARY_NAME = "summary.json"
CHECKPOINT_NAME = "checkpoint.pt"
SUMMARY_FORMAT = "softmax-cli/run-summary"
SUMMARY_VERSION = 1
STATUSES = ("running", "finished", "interrupted", "diverged")
_STAMP = "%Y%m%d-%H%M%S"


def make_run_dir(runs_dir: Path, impl: str, tag: str) -> Path:
    """A fresh folder runs/<impl>/<timestamp>-<tag>, so repeated runs never mix curves."""
    stamp = time.strftime(_STAMP)
    base = runs_dir / impl
    for attempt in range(1, 1000):
        suffix = "" if attempt == 1 else f"-{attempt}"
        candidate = base / f"{stamp}-{tag}{suffix}"
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise SoftmaxError(f"cannot create the run folder {candidate}: {exc.strerror}") from None
    raise SoftmaxError(f"cannot create a fresh run folder under {base}")


def json_safe(value):
    """NaN and infinities become None: JSON has no such numbers, and a reader must never choke on them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_summary(run_dir: Path, summary: dict) -> None:
    """Replace run_dir/summary.json atomically."""
    with atomic_write(run_dir / SUMMARY_NAME, "w") as handle:
        json.dump(json_safe(summary), handle, indent=1, allow_nan=False)
        handle.write("\n")


def read_summary(run_dir: Path) -> dict | None:
    """The run's summary, or None when it has none or it is not one of ours (never raises)."""
    try:
        summary = json.loads((run_dir / SUMMARY_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("format") != SUMMARY_FORMAT:
        return None
    return summary


class RunSummaryWriter:
    """A training callback that keeps run_dir/summary.json true: after every epoch, and at the end.

    Duck-typed like every other callback, so this module never imports torch.
    """

    def __init__(self, run_dir: Path, resumed_from: Path | None = None) -> None:
        self.run_dir = run_dir
        self.resumed_from = resumed_from
        self.summary: dict | None = None
        self.start_epoch = 0

    def on_train_start(self, plan) -> None:
        hparams = plan.hparams.as_dict()
        self.start_epoch = plan.start_epoch
        self.summary = {
            "format": SUMMARY_FORMAT,
            "version": SUMMARY_VERSION,
            "started": _now(),
            "updated": None,
            "impl": hparams["impl"],
            "device": str(plan.device),
            "hparams": hparams,
            "epochs_planned": hparams["epochs"],
            "epochs_done": plan.start_epoch,
            "train_examples": plan.train_examples,
            "status": "running",
            "checkpoint": str(plan.paths.checkpoint),
            "resumed_from": None if self.resumed_from is None else str(self.resumed_from),
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
        self.summary["updated"] = _now()
        write_summary(self.run_dir, self.summary)


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """One run folder as `softmax runs` shows it; fields are None where the folder does not tell."""

    path: Path
    impl: str
    started: str | None
    status: str
    hparams: dict = field(default_factory=dict)
    epochs_done: int | None = None
    epochs_planned: int | None = None
    final: dict | None = None
    checkpoint: Path | None = None
    has_summary: bool = False

    def as_dict(self) -> dict:
        return json_safe(
            {
                "path": str(self.path),
                "impl": self.impl,
                "started": self.started,
                "status": self.status,
                "hparams": self.hparams,
                "epochs_done": self.epochs_done,
                "epochs_planned": self.epochs_planned,
                "final": self.final,
                "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
                "has_summary": self.has_summary,
            }
        )


def list_runs(runs_dir: Path) -> list[RunRecord]:
    """Every run folder under runs_dir (RUNS_DIR/<impl>/<run>/), newest first."""
    records = []
    try:
        groups = [group for group in runs_dir.iterdir() if group.is_dir()]
    except OSError:
        return []
    for group in groups:
        try:
            folders = [folder for folder in group.iterdir() if folder.is_dir()]
        except OSError:
            continue
        records.extend(_record(folder, group.name) for folder in folders)
    return sorted(records, key=lambda record: (record.started or "", str(record.path)), reverse=True)


def _record(folder: Path, impl: str) -> RunRecord:
    summary = read_summary(folder)
    if summary is None:
        # An older run (or one killed outright): the folder name still says when and roughly what.
        checkpoint = folder / CHECKPOINT_NAME
        return RunRecord(
            path=folder,
            impl=impl,
            started=_started_from_name(folder.name),
            status="unknown",
            checkpoint=checkpoint if checkpoint.is_file() else None,
        )
    history = summary.get("history") or []
    checkpoint = Path(summary["checkpoint"]) if summary.get("checkpoint") else None
    return RunRecord(
        path=folder,
        impl=summary.get("impl", impl),
        started=summary.get("started"),
        status=summary.get("status", "unknown"),
        hparams=summary.get("hparams") or {},
        epochs_done=summary.get("epochs_done"),
        epochs_planned=summary.get("epochs_planned"),
        final=history[-1] if history else None,
        checkpoint=checkpoint if checkpoint is not None and checkpoint.is_file() else None,
        has_summary=True,
    )


def _started_from_name(name: str) -> str | None:
    try:
        started = datetime.strptime(name[:15], _STAMP)
    except ValueError:
        return None
    return started.astimezone().isoformat(timespec="seconds")
