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
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from softmax_cli import files
from softmax_cli.atomic import atomic_write
from softmax_cli.config import IMPLS, INT64_MAX, LOADERS, Hparams, Range, hparam_problem
from softmax_cli.errors import SoftmaxError

SUMMARY_NAME = "summary.json"
CHECKPOINT_NAME = "checkpoint.pt"
SUMMARY_FORMAT = "softmax-cli/run-summary"
SUMMARY_VERSION = 1
STATUSES = ("running", "finished", "interrupted", "diverged")
# What `softmax runs` may show besides: a summary that says running while no process holds the run's
# lock (its process was killed), a folder with neither summary nor lock, one whose summary is damaged.
KILLED = "killed"
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
    """The run's checked summary (check_summary), or None when it has none or it is damaged (never raises)."""
    try:
        return load_summary(run_dir)
    except DamagedSummary:
        return None


class DamagedSummary(ValueError):
    """A run's summary.json is there but cannot be trusted; str() says why in a few words."""


def load_summary(run_dir: Path) -> dict | None:
    """The run's summary as check_summary returns it; None when the folder has no summary.json.

    A run folder is untrusted input, like a checkpoint: the file is read as checkpoints are
    (softmax_cli.files.read_bounded: a regular file only, at most MAX_SUMMARY_BYTES, an open that
    never blocks), so a FIFO, /dev/zero or a huge file is a DamagedSummary at once, as is
    anything that is not a summary this version can rely on.
    """
    path = run_dir / SUMMARY_NAME
    if not os.path.lexists(path):
        return None
    try:
        data = files.read_bounded(path, MAX_SUMMARY_BYTES)
    except files.NotARegularFile as exc:
        raise DamagedSummary(f"{SUMMARY_NAME} is a {exc.kind}, not a regular file") from None
    except files.TooLarge as exc:
        raise DamagedSummary(f"{SUMMARY_NAME} is {exc.size:,} bytes, more than any run summary") from None
    except OSError as exc:
        raise DamagedSummary(f"{SUMMARY_NAME} cannot be read ({exc.strerror or exc})") from None
    try:
        raw = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; so is an integer of 5,000 digits
        raise DamagedSummary(f"{SUMMARY_NAME} is not JSON") from None
    return check_summary(raw)


# A summary is at most a few hundred bytes per epoch (indented JSON): 16 MiB holds tens of
# thousands of epochs, and refuses /dev/zero or a huge file before reading it.
MAX_SUMMARY_BYTES = 16 * 2**20
_REQUIRED = ("version", "started", "impl", "status", "hparams", "history", "epochs_done")
_COUNT = Range(0, INT64_MAX)
# The figures of an epoch (training.EpochMetrics.as_dict) that `softmax runs` and `softmax plot` show.
_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "val_acc", "seconds", "examples_per_s", "lr")


def check_summary(raw: object) -> dict:
    """The one check of a parsed summary.json: a fresh dict of its fields, each of the right type and range.

    Raises DamagedSummary saying what is wrong ("summary.json: hparams lr is not a number: 'x'").
    Keys this version does not know are left out; so are hparams it does not know.
    """
    if not isinstance(raw, dict) or raw.get("format") != SUMMARY_FORMAT:
        raise DamagedSummary(f"{SUMMARY_NAME} is not a softmax-cli run summary")
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise DamagedSummary(f"{SUMMARY_NAME} lacks {', '.join(missing)}")

    def damaged(what: str) -> DamagedSummary:
        return DamagedSummary(f"{SUMMARY_NAME}: {what}")

    version = raw["version"]
    if not _is_count(version) or version < 1:
        raise damaged("version is not a positive integer")
    if version > SUMMARY_VERSION:
        raise damaged(f"version {version} is newer than this softmax-cli reads ({SUMMARY_VERSION})")
    summary = {"format": SUMMARY_FORMAT, "version": version}
    for key in ("started", "updated"):
        value = raw.get(key)
        if not (value is None and key == "updated" or _is_text(value) and _moment(value) is not None):
            raise damaged(f"{key} is not a date and time")
        summary[key] = value
    for key, allowed in (("impl", IMPLS), ("status", STATUSES)):
        if raw[key] not in allowed or not isinstance(raw[key], str):
            raise damaged(f"{key} is not one of {', '.join(allowed)}")
        summary[key] = raw[key]
    for key in ("device", "checkpoint", "resumed_from"):
        value = raw.get(key)
        if not (value is None or _is_text(value) and "\0" not in value):
            raise damaged(f"{key} is not text")
        summary[key] = value
    for key in ("epochs_done", "epochs_planned", "start_epoch", "train_examples", "pid"):
        value = raw.get(key)
        if not (value is None and key != "epochs_done" or _is_count(value)):
            raise damaged(f"{key} is not a whole number >= 0")
        summary[key] = value
    hparams = raw["hparams"]
    if not isinstance(hparams, dict):
        raise damaged("hparams is not an object")
    problem = hparam_problem(hparams)
    if problem:
        raise damaged(f"hparams {problem}")
    summary["hparams"] = {key: hparams[key] for key in Hparams.__dataclass_fields__ if key in hparams}
    history = raw["history"]
    if not isinstance(history, list):
        raise damaged("history is not a list")
    for number, entry in enumerate(history, 1):
        if not (isinstance(entry, dict) and all(_is_text(key) and _is_plain(value) for key, value in entry.items())):
            raise damaged(f"history entry {number} is not an object of numbers")
        if not _is_count(entry.get("epoch")):
            raise damaged(f"history entry {number} has no epoch number")
        for key in _METRICS:
            if not (entry.get(key) is None or _is_number(entry[key])):
                raise damaged(f"history entry {number}: {key} is not a number")
    summary["history"] = [dict(entry) for entry in history]
    return summary


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in _COUNT


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_text(value: object) -> bool:
    """A str that can be printed and written: a lone surrogate (JSON's "\\ud800") cannot be encoded."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_plain(value: object) -> bool:
    """What a history entry holds: a finite number, None, true/false, or printable text."""
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (bool, int)) or _is_text(value)


def _is_file(path: Path) -> bool:
    """Path.is_file, False too where the path cannot even be looked up (a name too long, say)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _moment(stamp: str) -> float | None:
    """An ISO date and time as seconds since the epoch; None if it is not one."""
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


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
            # Whose lock on the checkpoint says this run still lives (`softmax runs`, see _still_running).
            "pid": os.getpid(),
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
    status is the summary's, except "killed" for a run whose summary says running while no
    process holds its checkpoint's lock (see _still_running): epochs_done is then the last
    epoch its summary recorded, and its checkpoint holds that one or, killed between the two
    writes, the next.
    A run whose summary.json is damaged is told from its folder's name and its own checkpoint.pt,
    with status "damaged" and the reason in `damaged`.
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
    damaged: str | None = None  # why its summary.json cannot be trusted (status "damaged")
    device: str | None = None  # the device it trained on, as --device takes it

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
                "damaged": self.damaged,
                "device": self.device,
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
    return (_moment(record.started) if record.started else None) or 0.0, str(record.path)


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
    checkpoints = checkpoint_files(folder)
    own = folder / CHECKPOINT_NAME
    try:
        summary = load_summary(folder)
        damaged = None
    except DamagedSummary as exc:
        summary, damaged = None, str(exc)
    if summary is None:
        # An older run, a compare folder, a run killed outright, or a damaged summary: the folder's
        # name still says when it started and with which recipe (Hparams.run_tag).
        parsed = parse_run_name(folder.name)
        status = "unknown" if damaged is None else "damaged"
        epochs_done = None
        if damaged is None and parsed is not None:
            # A run in its first epoch holds the lock on its own checkpoint.pt; killed there, it left the file.
            state = files.probe_lock(own)
            if state is not None and state[0] == "held":
                status = "running"
            elif state is not None and state[0] == "free":
                status, epochs_done = KILLED, 0
        return RunRecord(
            path=folder,
            impl=impl,
            started=parsed["started"] if parsed else None,
            status=status,
            epochs_done=epochs_done,
            hparams=parsed["hparams"] if parsed else {},
            checkpoint=own if own in checkpoints else None,
            start_epoch=parsed["start_epoch"] if parsed else None,
            checkpoints=checkpoints,
            damaged=damaged,
        )
    summary = _still_running(folder, summary)
    history = summary["history"]
    named = Path(summary["checkpoint"]) if summary["checkpoint"] is not None else None
    if own in checkpoints:
        checkpoint = own
    else:
        checkpoint = named if named is not None and _is_file(named) else None
    start_epoch = summary["start_epoch"]
    return RunRecord(
        path=folder,
        impl=summary["impl"],
        started=summary["started"],
        status=summary["status"],
        hparams=summary["hparams"],
        epochs_done=summary["epochs_done"],
        epochs_planned=summary["epochs_planned"],
        final=history[-1] if history else None,
        checkpoint=checkpoint,
        has_summary=True,
        resumed_from=summary["resumed_from"],
        start_epoch=start_epoch if start_epoch is not None or summary["resumed_from"] else 0,
        checkpoints=checkpoints if checkpoint is None or checkpoint in checkpoints else [*checkpoints, checkpoint],
        device=summary["device"],
    )


def _still_running(folder: Path, summary: dict) -> dict:
    """The summary, its status "killed" where it says running but the run's process is gone. Reads only.

    A training run holds the lock on its checkpoint (files.exclusive_lock) from before its first
    epoch until after its summary's last write, and the kernel drops the lock when the process
    ends in any way. So a summary that says running while nobody holds that lock (or another
    process than the summary's pid does) belongs to a run that ended without saying how: killed.
    Where the lock cannot be probed (no flock), the summary is taken at its word.
    """
    if summary["status"] != "running" or summary["checkpoint"] is None:
        return summary
    state = files.probe_lock(Path(summary["checkpoint"]))
    if state is None:
        return summary
    found, holder = state
    if found == "held" and summary["pid"] in (None, files.lock_holder_pid(holder)):
        return summary
    # The run may have ended cleanly since its summary was read: it writes its last summary before
    # it lets go of the lock, so reading it again now tells.
    again = read_summary(folder)
    if again is not None and again["status"] != "running":
        return again
    return {**summary, "status": KILLED}


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
