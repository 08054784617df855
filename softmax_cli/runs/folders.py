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
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from softmax_cli.atomic import atomic_write
from softmax_cli.config import LOADERS, Hparams
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
            # Absolute: `softmax runs` and `softmax eval RUN_FOLDER` may run from another folder.
            "checkpoint": str(plan.paths.checkpoint.absolute()),
            "resumed_from": None if self.resumed_from is None else str(self.resumed_from),
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
        self.summary["updated"] = _now()
        write_summary(self.run_dir, self.summary)


def _now() -> str:
    # Milliseconds: two runs started within one second still list newest first.
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")


@dataclass
class RunRecord:
    """One run folder as `softmax runs` shows it; fields are None where the folder does not tell.

    impl is "compare" for a `softmax compare` folder, which holds scratch.pt and concise.pt.
    checkpoint is the file `softmax eval RUN_FOLDER` evaluates (None for a compare folder,
    whose two files must be named); checkpoints lists every .pt file in the folder.
    """

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
    resumed_from: str | None = None
    start_epoch: int | None = None
    checkpoints: list[Path] = field(default_factory=list)

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
                "checkpoints": [str(path) for path in self.checkpoints],
                "resumed_from": self.resumed_from,
                "start_epoch": self.start_epoch,
                "has_summary": self.has_summary,
            }
        )


def list_runs(runs_dir: Path) -> list[RunRecord]:
    """Every run folder under runs_dir (RUNS_DIR/<impl>/<run>/), newest first.

    A runs_dir that is itself one impl's folder (runs/scratch) works too: a child whose
    name starts with a run's timestamp is a run, any other folder is a group of runs.
    """
    records = []
    for child in _subfolders(runs_dir):
        if _STAMPED.match(child.name):
            records.append(_record(child, runs_dir.name))
        else:
            records.extend(_record(folder, child.name) for folder in _subfolders(child))
    return sorted(records, key=_newest_first_key, reverse=True)


def _newest_first_key(record: RunRecord) -> tuple[float, str]:
    """When the run started (as a moment: ISO strings in different UTC offsets do not sort), then its path."""
    try:
        moment = datetime.fromisoformat(record.started).timestamp() if record.started else 0.0
    except ValueError:
        moment = 0.0
    return moment, str(record.path)


def newest_checkpoints(runs_dir: Path, limit: int | None = None) -> list[RunRecord]:
    """The runs under runs_dir that have a checkpoint to evaluate, newest first."""
    return [record for record in list_runs(runs_dir) if record.checkpoint is not None][:limit]


def run_folder_checkpoint(folder: Path) -> Path | None:
    """The checkpoint a training run's folder stands for: its checkpoint.pt, or the --checkpoint its summary names."""
    return _record(folder, folder.parent.name).checkpoint


def checkpoint_files(folder: Path) -> list[Path]:
    """The .pt files directly in folder, by name (a compare folder: concise.pt, scratch.pt)."""
    try:
        return sorted(path for path in folder.iterdir() if path.suffix == ".pt" and path.is_file())
    except OSError:
        return []


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [child for child in folder.iterdir() if child.is_dir()]
    except OSError:
        return []


def _record(folder: Path, impl: str) -> RunRecord:
    summary = read_summary(folder)
    checkpoints = checkpoint_files(folder)
    own = folder / CHECKPOINT_NAME
    if summary is None:
        # An older run, a compare folder, or a run killed outright: the folder's name still
        # says when it started and with which recipe (Hparams.run_tag).
        parsed = parse_run_name(folder.name)
        return RunRecord(
            path=folder,
            impl=impl,
            started=parsed["started"] if parsed else None,
            status="unknown",
            hparams=parsed["hparams"] if parsed else {},
            checkpoint=own if own in checkpoints else None,
            start_epoch=parsed["start_epoch"] if parsed else None,
            checkpoints=checkpoints,
        )
    history = summary.get("history") or []
    named = Path(summary["checkpoint"]) if isinstance(summary.get("checkpoint"), str) else None
    if own.is_file():
        checkpoint = own
    else:
        checkpoint = named if named is not None and named.is_file() else None
    return RunRecord(
        path=folder,
        impl=summary.get("impl", impl),
        started=summary.get("started"),
        status=summary.get("status", "unknown"),
        hparams=summary.get("hparams") or {},
        epochs_done=summary.get("epochs_done"),
        epochs_planned=summary.get("epochs_planned"),
        final=history[-1] if history and isinstance(history[-1], dict) else None,
        checkpoint=checkpoint,
        has_summary=True,
        resumed_from=summary.get("resumed_from"),
        start_epoch=summary.get("start_epoch", 0 if not summary.get("resumed_from") else None),
        checkpoints=checkpoints if checkpoint is None or checkpoint in checkpoints else [*checkpoints, checkpoint],
    )


# A run folder's name: make_run_dir's timestamp, Hparams.run_tag (resumed_run_tag), and
# make_run_dir's "-2", "-3", ... when two runs start within the same second.
_STAMPED = re.compile(r"(?P<stamp>\d{8}-\d{6})(-|$)")
_NUMBER = r"\d+(?:\.\d+)?(?:e[+-]?\d+)?"
_RUN_NAME = re.compile(
    rf"\d{{8}}-\d{{6}}-(?P<preset>[a-z]+)-lr(?P<lr>{_NUMBER})-bs(?P<batch_size>\d+)-seed(?P<seed>\d+)"
    rf"(?P<naive>-naive)?(?:-val(?P<val_split>{_NUMBER}))?(?:-(?P<loader>{'|'.join(LOADERS)}))?"
    r"(?:-resumed-from-(?P<resumed_from>\d+))?(?:-\d+)?$"
)


def parse_run_name(name: str) -> dict | None:
    """What a run folder's name tells: {"started", "hparams": {...}, "start_epoch"}; None if it is not one.

    A name from an older softmax-cli may give only its timestamp (empty hparams, start_epoch None).
    """
    stamped = _STAMPED.match(name)
    if stamped is None:
        return None
    try:
        started = datetime.strptime(stamped["stamp"], _STAMP).astimezone().isoformat(timespec="seconds")
    except ValueError:
        return None
    match = _RUN_NAME.match(name)
    if match is None:
        return {"started": started, "hparams": {}, "start_epoch": None}
    hparams = {
        "preset": match["preset"],
        "lr": float(match["lr"]),
        "batch_size": int(match["batch_size"]),
        "seed": int(match["seed"]),
        "naive_softmax": match["naive"] is not None,
        "val_split": float(match["val_split"]) if match["val_split"] else Hparams.val_split,
        "loader": match["loader"] or Hparams.loader,
    }
    return {"started": started, "hparams": hparams, "start_epoch": int(match["resumed_from"] or 0)}
