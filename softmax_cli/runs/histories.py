"""Training histories for `softmax plot`: read from run folders or checkpoints, and labelled by
the settings that differ between them.

A run folder's summary.json (see folders.py) holds the history and the hyperparameters and is
read without torch; a checkpoint (or a run folder that has only its checkpoint, from before
summaries existed or beside a damaged summary) is read through checkpoint.load_checkpoint,
which imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from softmax_cli.config import PRESETS, Hparams, count
from softmax_cli.errors import SoftmaxError
from softmax_cli.runs.folders import CHECKPOINT_NAME, COMPARE, SUMMARY_NAME, DamagedSummary, load_summary

# The per-epoch numbers a curve can show, as `softmax train` records them.
CURVE_KEYS = ("train_loss", "test_loss", "train_acc", "test_acc", "val_acc")
# Which settings name a run, in the order a label lists them (what a learner varies first).
LABEL_ORDER = (
    "impl", "preset", "lr", "batch_size", "momentum", "weight_decay", "schedule", "standardize",
    "val_split", "naive_softmax", "loader", "seed", "epochs",
)  # fmt: skip


@dataclass
class RunHistory:
    """One run's per-epoch metrics and the settings it was trained with."""

    path: Path
    hparams: dict
    history: list[dict]
    chosen_name: str | None = None  # the name a person gave the run (--name), from its summary
    status: str | None = None  # how the run ended, from its summary (None: read from a checkpoint)

    @property
    def name(self) -> str:
        """The run's name, else its folder's (a checkpoint named checkpoint.pt is named by its folder)."""
        if self.chosen_name is not None:
            return self.chosen_name
        if self.path.is_file() and self.path.name == CHECKPOINT_NAME:
            return self.path.resolve().parent.name
        return self.path.name

    @property
    def folder(self) -> Path:
        """The run's folder: the folder given, or the one a checkpoint file is in."""
        return self.path if self.path.is_dir() else self.path.parent

    @property
    def progress(self) -> str:
        """What the run has, in words: "20 epochs", or for a run that stopped short of its plan
        "1 of 50 epochs, interrupted" (diverged, still running; a checkpoint does not say why)."""
        done = self.history[-1]["epoch"]
        planned = self.hparams.get("epochs")
        ended = {"interrupted": "interrupted", "diverged": "diverged", "running": "still running"}.get(self.status)
        if isinstance(planned, int) and done < planned:
            return f"{done} of {count(planned, 'epoch')}" + (f", {ended}" if ended else "")
        return count(done, "epoch") + (f", {ended}" if ended else "")


def read_history(path: Path) -> RunHistory:
    """The history of a run folder (from its summary, else its checkpoint) or of a checkpoint file.

    Raises SoftmaxError, in one line, for a path that is neither or that holds no epoch.
    """
    source = path
    if path.is_dir():
        try:
            summary = load_summary(path)
        except DamagedSummary as exc:
            summary, damaged = None, str(exc)
        else:
            damaged = None
        if summary is not None and summary["impl"] == COMPARE:
            sides = " ".join(str(path / f"{side}.pt") for side in summary["final"])
            raise SoftmaxError(f"{path} is a `softmax compare` run: plot its two sides' checkpoints, {sides}")
        if summary is not None:
            history = _entries(summary["history"])
            return _checked(RunHistory(path, dict(summary["hparams"]), history, summary["name"], summary["status"]))
        source = path / CHECKPOINT_NAME
        if damaged is not None and not source.is_file():
            raise SoftmaxError(f"{path}: {damaged}, and the folder has no {CHECKPOINT_NAME} to read instead")
        if not source.is_file():
            raise SoftmaxError(
                f"{path} is not a run folder: it has neither {SUMMARY_NAME} nor {CHECKPOINT_NAME} "
                "(pass run folders such as runs/scratch/<run>, or checkpoints)"
            )
    from softmax_cli.runs import checkpoint as ckpt

    loaded = ckpt.load_checkpoint(source)
    return _checked(RunHistory(path, Hparams.from_checkpoint(loaded).as_dict(), _entries(loaded["history"])))


def _entries(history: object) -> list[dict]:
    """The usable epochs of a stored history: an integer epoch, and finite numbers or None."""
    if not isinstance(history, list):
        return []
    entries = []
    for entry in history:
        if not isinstance(entry, dict) or not isinstance(entry.get("epoch"), int):
            continue
        kept = {"epoch": entry["epoch"]}
        for key in CURVE_KEYS:
            value = entry.get(key)
            usable = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            kept[key] = float(value) if usable else None
        entries.append(kept)
    return sorted(entries, key=lambda entry: entry["epoch"])


def _checked(run: RunHistory) -> RunHistory:
    if not run.history:
        raise SoftmaxError(f"{run.path} has no completed epoch to plot")
    return run


def describe(key: str, value: object) -> str:
    """One setting as a learner would say it: "lr 0.1", "batch 256", "standardized"."""
    if isinstance(value, float):
        value = f"{value:g}"
    if key == "epochs" and isinstance(value, str):  # a run's progress, already in words
        return value
    words = {
        "impl": f"{value}",
        "preset": f"{value} preset",
        "lr": f"lr {value}",
        "batch_size": f"batch {value}",
        "momentum": f"momentum {value}",
        "weight_decay": f"weight decay {value}",
        "schedule": f"{value} lr",
        "standardize": "standardized" if value else "raw pixels",
        "val_split": f"val split {value}",
        "naive_softmax": "naive softmax" if value else "stable softmax",
        "loader": f"{value} loader",
        "seed": f"seed {value}",
        "epochs": count(value, "epoch") if isinstance(value, int) else f"{value} epochs",
    }
    return words.get(key, f"{key} {value}")


# Settings left out of a heading at these values: the book's plain defaults say nothing.
_UNREMARKABLE = {"momentum": 0.0, "weight_decay": 0.0, "val_split": 0.0, "naive_softmax": False, "loader": "memory"}


def _explained_by_preset(key: str, settings: Sequence[dict]) -> bool:
    """True when every run has its preset's value for `key`: then the preset in the label says it."""
    if key == "preset":
        return False
    for run in settings:
        preset = PRESETS.get(run.get("preset"), {})
        if key not in preset or preset[key] != run.get(key):
            return False
    return True


def label_runs(runs: Sequence[RunHistory]) -> tuple[list[str], str]:
    """A label for each run naming the settings that differ between them, and a heading that
    says what they share. Runs with the same settings are told apart by their folder names.
    A run's epochs are what it has (RunHistory.progress), not what it planned."""
    settings = [{**run.hparams, **({"epochs": run.progress} if run.history else {})} for run in runs]
    keys = [*LABEL_ORDER, *sorted({key for run in settings for key in run} - set(LABEL_ORDER))]
    present = [key for key in keys if any(key in run for run in settings)]
    same = [key for key in present if len({repr(run.get(key)) for run in settings}) == 1]
    differing = [key for key in present if key not in same and not _explained_by_preset(key, settings)]
    first = settings[0]
    shared = [describe(key, first[key]) for key in same if _UNREMARKABLE.get(key, ()) != first[key]]
    if len(runs) == 1:
        return [runs[0].name], f"{runs[0].name}\n{', '.join(shared)}"
    # A run a person named is labelled by its name; the others by the settings that differ.
    labels = [
        run.chosen_name
        if run.chosen_name is not None
        else ", ".join(describe(key, values.get(key)) for key in differing) or run.name
        for values, run in zip(settings, runs, strict=True)
    ]
    repeated = {label for label in labels if labels.count(label) > 1}
    labels = [
        (f"{label} ({run.name})" if differing and run.chosen_name is None else str(run.path))
        if label in repeated
        else label
        for label, run in zip(labels, runs, strict=True)
    ]
    heading = f"{len(runs)} runs" + (f", all {', '.join(shared)}" if shared else "")
    return labels, heading


# Curves this close are one line on any figure (a pixel is about 1e-3 of an axis).
CURVES_REL_TOL = 1e-5


def identical_curves(runs: Sequence[RunHistory]) -> list[list[int]]:
    """The runs grouped by their curves, in order of first appearance: runs whose every plotted
    number agrees to CURVES_REL_TOL share a group, since one line would hide the other. (scratch and
    concise with the same seed agree to about 1e-7: float32 sums in another order, no more.)"""
    groups: list[list[int]] = []
    for index, run in enumerate(runs):
        for group in groups:
            if _same_curves(runs[group[0]].history, run.history):
                group.append(index)
                break
        else:
            groups.append([index])
    return groups


def _same_curves(a: list[dict], b: list[dict]) -> bool:
    if len(a) != len(b):
        return False
    for first, second in zip(a, b, strict=True):
        if first["epoch"] != second["epoch"]:
            return False
        for key in CURVE_KEYS:
            x, y = first[key], second[key]
            if x is None or y is None:
                if x is not y:
                    return False
            elif not math.isclose(x, y, rel_tol=CURVES_REL_TOL, abs_tol=1e-9):
                return False
    return True
