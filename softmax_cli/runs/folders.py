"""Run folders: making them, the small summary each run keeps up to date, and finding runs again.

A run lives in RUNS_DIR/<impl>/<timestamp>-<tag>/ (or RUNS_DIR/<impl>/<NAME>/, a name a person
chose with --name) with its TensorBoard events, its checkpoint.pt and summary.json; a
`softmax compare` run in RUNS_DIR/compare/<timestamp>-<tag>/ with scratch.pt, concise.pt and a
summary of both sides. The summary is plain JSON, rewritten atomically after
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
from softmax_cli.errors import SoftmaxError, UsageError

SUMMARY_NAME = "summary.json"
CHECKPOINT_NAME = "checkpoint.pt"
SUMMARY_FORMAT = "softmax-cli/run-summary"
SUMMARY_VERSION = 1
STATUSES = ("running", "finished", "interrupted", "diverged")
# What `softmax runs` may show besides: a summary that says running while no process holds the run's
# lock (its process was killed), a folder with neither summary nor lock, one whose summary is damaged.
KILLED = "killed"
COMPARE = "compare"  # the impl of a `softmax compare` run's summary, and its folder under RUNS_DIR
COMPARED = ("scratch", "concise")  # the sides of a compare run, in the order they train
_STAMP = "%Y%m%d-%H%M%S"


# A name's limit in bytes: a folder name's on common file systems.
NAME_BYTES = 255


def name_problem(name: str) -> str | None:
    """What makes `name` unfit as a run folder's name (--name), in a few words; None if it is fit.

    A name is one path component a shell, TensorBoard and a table show as it is: not empty,
    not . or .., no / or \\, printable, no space at either end, at most NAME_BYTES bytes.
    """
    if not name:
        return "is empty"
    if name in (".", ".."):
        return f"cannot be {name!r}"
    if "/" in name or "\\" in name:
        return "must be one folder name, without / or \\"
    if not name.isprintable():
        return "must be printable (no control characters)"
    if name != name.strip():
        return "must not begin or end with a space"
    if len(name.encode("utf-8")) > NAME_BYTES:
        return f"is longer than {NAME_BYTES} bytes"
    return None


def named_run_dir(runs_dir: Path, impl: str, name: str) -> Path:
    """Where a run named `name` (--name) lives: runs/<impl>/<name>."""
    return runs_dir / impl / name


def make_run_dir(runs_dir: Path, impl: str, tag: str, name: str | None = None) -> Path:
    """A fresh folder runs/<impl>/<timestamp>-<tag>, so repeated runs never mix curves.

    With a name (--name): exactly runs/<impl>/<name>; one that exists already is a usage error.
    """
    base = runs_dir / impl
    if name is not None:
        folder = named_run_dir(runs_dir, impl, name)
        try:
            base.mkdir(parents=True, exist_ok=True)
            folder.mkdir()
        except FileExistsError:
            raise UsageError(f"{folder} already exists; choose another name or remove that folder", "--name") from None
        except OSError as exc:
            raise SoftmaxError(f"cannot create the run folder {folder}: {exc.strerror}") from None
        return folder
    stamp = time.strftime(_STAMP)
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
    for key, allowed in (("impl", (*IMPLS, COMPARE)), ("status", STATUSES)):
        if raw[key] not in allowed or not isinstance(raw[key], str):
            raise damaged(f"{key} is not one of {', '.join(allowed)}")
        summary[key] = raw[key]
    for key in ("device", "checkpoint", "resumed_from", "resumed_from_checkpoint"):
        value = raw.get(key)
        if not (value is None or _is_text(value) and "\0" not in value):
            raise damaged(f"{key} is not text")
        summary[key] = value
    if "resumed_from_checkpoint" not in raw:
        # Written before runs named the run they continue: resumed_from was the checkpoint file.
        summary["resumed_from_checkpoint"], summary["resumed_from"] = summary["resumed_from"], None
    name = raw.get("name")
    if not (name is None or isinstance(name, str) and name_problem(name) is None):
        raise damaged("name is not a run folder's name")
    summary["name"] = name
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
    if summary["impl"] == COMPARE:
        summary.update(_checked_comparison(raw, damaged))
    return summary


def _checked_comparison(raw: dict, damaged) -> dict:
    """A compare run's own fields: each side's last epoch ("final": {"scratch": ..., "concise": ...}),
    whether the weights agree so far, the largest difference and the tolerance."""
    final = raw.get("final")
    if not isinstance(final, dict):
        raise damaged("final is not an object")
    sides = {}
    for side in COMPARED:
        entry = final.get(side)
        if entry is None:
            sides[side] = None
            continue
        if not (isinstance(entry, dict) and all(_is_text(k) and _is_plain(v) for k, v in entry.items())):
            raise damaged(f"final {side} is not an object of numbers")
        if not _is_count(entry.get("epoch")) or any(
            not (entry.get(key) is None or _is_number(entry[key])) for key in _METRICS
        ):
            raise damaged(f"final {side} is not an epoch's figures")
        sides[side] = dict(entry)
    agree = raw.get("agree")
    if not (agree is None or isinstance(agree, bool)):
        raise damaged("agree is not true or false")
    checked = {"final": sides, "agree": agree}
    for key in ("max_abs_diff", "tolerance"):
        value = raw.get(key)
        if not (value is None or _is_number(value) and value >= 0):
            raise damaged(f"{key} is not a number >= 0")
        checked[key] = value
    return checked


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


def now() -> str:
    """Now, as the summaries write it: ISO, local offset, milliseconds."""
    # Milliseconds: two runs started within one second still list newest first.
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")


def run_of_checkpoint(checkpoint: Path, runs_dir: Path) -> Path | None:
    """The run folder that wrote `checkpoint`, where it can be told: the folder it lies in, when that
    is a run naming it, else the newest run under runs_dir whose checkpoint it is; None if none."""
    target = _resolved(checkpoint)
    folder = checkpoint.parent
    summary = read_summary(folder)
    if summary is not None and summary["checkpoint"] and _resolved(Path(summary["checkpoint"])) == target:
        return folder
    for record in list_runs(runs_dir):
        if record.checkpoint is not None and _resolved(record.checkpoint) == target:
            return record.path
    return None


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
    resumed_from: str | None = None  # the run folder this one continues (as listed, where it is)
    resumed_from_checkpoint: str | None = None  # the checkpoint file it resumed
    resumed_by: list[str] = field(default_factory=list)  # the listed runs that continue this one
    start_epoch: int | None = None
    checkpoints: list[Path] = field(default_factory=list)
    damaged: str | None = None  # why its summary.json cannot be trusted (status "damaged")
    device: str | None = None  # the device it trained on, as --device takes it
    name: str | None = None  # the name a person gave the run (--name)
    comparison: dict | None = None  # a compare run's {"agree", "max_abs_diff", "tolerance"}

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
                "name": self.name,
                "resumed_from": self.resumed_from,
                "resumed_from_checkpoint": self.resumed_from_checkpoint,
                "resumed_by": list(self.resumed_by),
                "start_epoch": self.start_epoch,
                "has_summary": self.has_summary,
                "damaged": self.damaged,
                "device": self.device,
                "comparison": self.comparison,
            }
        )


def list_runs(runs_dir: Path) -> list[RunRecord]:
    """Every run folder under runs_dir (RUNS_DIR/<impl>/<run>/), newest first.

    A runs_dir that is itself one impl's folder (runs/scratch) works too: a child whose
    name starts with a run's timestamp is a run, any other folder is a group of runs.
    """
    records = []
    for child in _subfolders(runs_dir):
        if _STAMPED.match(child.name) or _is_run_folder(child):
            records.append(_record(child, runs_dir.name))
        else:
            records.extend(_record(folder, child.name) for folder in _subfolders(child))
    records = sorted(records, key=_newest_first_key, reverse=True)
    _link_resumed(records)
    return records


def _is_run_folder(folder: Path) -> bool:
    """A folder that holds a run's own files (a run named with --name has no timestamp to tell it)."""
    return _is_file(folder / SUMMARY_NAME) or bool(checkpoint_files(folder))


def _link_resumed(records: list[RunRecord]) -> None:
    """Tie each resumed run to the listed run it continues, both ways (resumed_from, resumed_by).

    Derived here, from the summaries alone: listing never writes. A run continues the folder its
    summary names, or (a summary written before runs named it) the newest older run whose
    checkpoint is the file it resumed. records are newest first.
    """
    by_folder = {_resolved(record.path): record for record in records}
    for at, record in enumerate(records):
        target = None
        if record.resumed_from is not None:
            target = by_folder.get(_resolved(Path(record.resumed_from)))
        elif record.resumed_from_checkpoint is not None:
            resumed = _resolved(Path(record.resumed_from_checkpoint))
            target = next(
                (older for older in records[at + 1 :] if older.checkpoint and _resolved(older.checkpoint) == resumed),
                None,
            )
        if target is not None and target is not record:
            record.resumed_from = str(target.path)
            target.resumed_by.append(str(record.path))


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return path.absolute()


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
    resumed = summary["resumed_from"] or summary["resumed_from_checkpoint"]
    if summary["impl"] == COMPARE:
        final = summary["final"]
        checkpoint = None  # two checkpoints: `softmax eval` must be told which
    else:
        final = history[-1] if history else None
    return RunRecord(
        path=folder,
        impl=summary["impl"],
        started=summary["started"],
        status=summary["status"],
        hparams=summary["hparams"],
        epochs_done=summary["epochs_done"],
        epochs_planned=summary["epochs_planned"],
        final=final,
        checkpoint=checkpoint,
        has_summary=True,
        resumed_from=summary["resumed_from"],
        resumed_from_checkpoint=summary["resumed_from_checkpoint"],
        start_epoch=start_epoch if start_epoch is not None or resumed else 0,
        checkpoints=checkpoints if checkpoint is None or checkpoint in checkpoints else [*checkpoints, checkpoint],
        device=summary["device"],
        name=summary["name"],
        comparison={key: summary[key] for key in ("agree", "max_abs_diff", "tolerance")}
        if summary["impl"] == COMPARE
        else None,
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
