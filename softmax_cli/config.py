"""Training settings as plain data: the names the CLI offers, the presets, one run's config.

Imports nothing heavy, so the CLI can build its help and validate options without torch.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

IMPLS = ("scratch", "concise")
LOADERS = ("memory", "dataloader")
SCHEDULES = ("constant", "cosine")
DEFAULT_SEED = 326

# The weights are float32, so a larger learning rate or weight decay cannot even be stored.
FLOAT32_MAX = 3.4028234663852886e38
# torch (seeds, generator states) and TensorBoard (steps) take integers as int64.
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Range:
    """Where a numeric setting may lie: [low, high], either end open or absent."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        def number(value: float) -> str:
            return str(value) if isinstance(value, int) else f"{value:g}"  # integers exactly, e.g. 2**63 - 1

        if self.high is None:
            return f"{'>' if self.low_open else '>='} {number(self.low)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{number(self.low)}, {number(self.high)}{right}"


def out_of_range(allowed: Range, value) -> str:
    """What a refused value is told, e.g. "must be > 0, not -1.0": the range it missed, without a storage
    limit nobody would reach (2**63 - 1). The CLI's option checks and the Python API say the same."""
    if allowed.high in (INT64_MAX, FLOAT32_MAX) and not value > allowed.high:
        words = f"{'>' if allowed.low_open else '>='} {allowed.low}"
    else:
        words = str(allowed)
    return f"must be {words}, not {value}"


# The one table of ranges: option validation, help text and checkpoint validation all read it.
RANGES: dict[str, Range] = {
    "epochs": Range(1, INT64_MAX),
    "batch_size": Range(1, INT64_MAX),
    "seed": Range(0, INT64_MAX),
    # Each worker is a process holding its own copy of the pipeline: beyond a few per core they only
    # cost memory and start-up, and 10,000 forked without bound (389 processes in 35 s).
    "workers": Range(0, 64),
    "lr": Range(0, FLOAT32_MAX, low_open=True),
    "momentum": Range(0, 1, high_open=True),
    "weight_decay": Range(0, FLOAT32_MAX),
    "val_split": Range(0, 1, high_open=True),
}


def parse_number(text: str, whole: bool = False) -> int | float:
    """The one reading of a number typed on the command line: `train`'s options and `sweep`'s lists alike.

    Python's int() (whole) or float() of the text, surrounding spaces aside, in ASCII only: those
    would also read other scripts' digits ('٠.١' as 0.1), which nothing else in a command takes.
    Raises ValueError saying what was expected; the range is checked apart (RANGES).
    """
    stripped = text.strip()
    if stripped.isascii():
        try:
            return int(stripped) if whole else float(stripped)
        except ValueError:
            pass
    raise ValueError(f"{text!r} is not a whole number" if whole else f"{text!r} is not a number")


# The settings a preset fixes; any option given explicitly overrides its preset value.
PRESETS: dict[str, dict[str, object]] = {
    # Dive into Deep Learning, chapter 3: batch 256, lr 0.1, plain SGD, raw pixels in [0, 1].
    "book": {
        "epochs": 10,
        "lr": 0.1,
        "batch_size": 256,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "schedule": "constant",
        "standardize": False,
    },
    # Still one linear layer: momentum, a little L2, a cosine schedule and standardised pixels.
    "tuned": {
        "epochs": 10,
        "lr": 0.05,
        "batch_size": 256,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "schedule": "cosine",
        "standardize": True,
    },
}


@dataclass(frozen=True)
class Hparams:
    """What defines a training run's result; stored in checkpoints and TensorBoard."""

    impl: str = "scratch"
    epochs: int = 10
    lr: float = 0.1
    batch_size: int = 256
    seed: int = DEFAULT_SEED
    loader: str = "memory"
    naive_softmax: bool = False
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    standardize: bool = False
    val_split: float = 0.0
    preset: str = "book"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Hparams":
        """Rebuild from a dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> "Hparams":
        """A checkpoint's settings; its top-level impl and seed are the authority for those two."""
        return cls.from_dict({**checkpoint["hparams"], "impl": checkpoint["impl"], "seed": checkpoint["seed"]})

    @property
    def run_tag(self) -> str:
        """The short tag in a run folder's name: enough to tell recipes apart in TensorBoard's run list.

        preset, lr, batch size and seed always; the naive softmax, a validation split and the
        DataLoader pipeline only when chosen, e.g. book-lr0.1-bs256-seed326-val0.1-dataloader.
        runs.parse_run_tag reads it back.
        """
        extras = [
            "naive" if self.naive_softmax else "",
            f"val{self.val_split:g}" if self.val_split else "",
            self.loader if self.loader != Hparams.loader else "",
        ]
        return "-".join([f"{self.preset}-lr{self.lr:g}-bs{self.batch_size}-seed{self.seed}", *filter(None, extras)])

    def resumed_run_tag(self, from_epoch: int) -> str:
        """The tag of a run that resumes a checkpoint after `from_epoch` epochs: its own folder, named so."""
        return f"{self.run_tag}-resumed-from-{from_epoch}"

    def lr_at(self, progress: float) -> float:
        """Learning rate after `progress` (0 to 1) of all training steps: constant, or cosine-annealed
        towards 0 step by step (as torch's CosineAnnealingLR stepped every batch)."""
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.lr

    def learning_rates(self, epoch_index: int, batches_per_epoch: int) -> list[float]:
        """The schedule, the one both `train` and `sweep` follow: the learning rate of each step of
        the epoch `epoch_index` (from 0), every step's progress counted over all epochs."""
        total, first = self.epochs * batches_per_epoch, epoch_index * batches_per_epoch
        return [self.lr_at((first + step) / total) for step in range(batches_per_epoch)]


# The values a stored hparam of these names must take (impl, loader, schedule, preset).
CHOICES: dict[str, tuple] = {"impl": IMPLS, "loader": LOADERS, "schedule": SCHEDULES, "preset": tuple(PRESETS)}


def hparam_problem(values: dict) -> str | None:
    """What is wrong with stored settings (a checkpoint's, a run summary's), in a few words; None if nothing.

    Each known field must have its default's type, one of CHOICES and lie in RANGES. Keys this
    version does not know are not looked at, and a missing key is fine (Hparams' default holds).
    """
    for spec in fields(Hparams):
        if spec.name not in values:
            continue
        value, expected = values[spec.name], type(spec.default)
        if expected is bool:
            ok, kind = isinstance(value, bool), "true or false"
        elif expected is int:
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif expected is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            kind = "a number"
        else:
            ok, kind = isinstance(value, expected), "text"
        if not ok:
            return f"{spec.name} is not {kind}: {_short(value)}"
        if spec.name in CHOICES and value not in CHOICES[spec.name]:
            return f"{spec.name} is {_short(value)}, not one of {', '.join(CHOICES[spec.name])}"
        if spec.name in RANGES and value not in RANGES[spec.name]:
            return f"{spec.name} {_short(value)} is not {RANGES[spec.name]}"
    return None


def _short(value: object) -> str:
    """repr(value), cut to fit in an error line (a damaged file can hold anything)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def count(n: int, noun: str) -> str:
    """How every message says a number of things: '1 epoch', '20 epochs', '1,000 configurations'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def default_workers() -> int:
    """DataLoader workers when --workers is not given: the book's 4, at most one per core."""
    return min(4, os.cpu_count() or 1)


@dataclass(frozen=True)
class RunPaths:
    """Where one training run reads and writes."""

    data_dir: Path
    log_dir: Path
    checkpoint: Path


class ConflictingOption(ValueError):
    """An option contradicts the checkpoint being resumed (or is out of range for it)."""


def resolve_hparams(given: dict[str, object], preset: str | None, resumed: dict | None = None) -> Hparams:
    """Combine the options the user actually gave (None = not given) with a preset or a resumed run.

    Fresh run: dataclass defaults < preset values < given options.
    Resume: the checkpoint's hparams hold; a given option that differs is refused, except
    --epochs, which may extend the run (but not a cosine schedule, whose shape depends on it).
    """
    given = {name: value for name, value in given.items() if value is not None}
    if resumed is None:
        values = {**PRESETS[preset or "book"], **given, "preset": preset or "book"}
        return Hparams(**values)
    stored = Hparams.from_checkpoint(resumed)
    if preset is not None and preset != stored.preset:
        raise ConflictingOption(f"--preset {preset} contradicts the checkpoint's preset {stored.preset}")
    for name, value in given.items():
        if name != "epochs" and value != getattr(stored, name):
            flag = "--" + name.replace("_", "-")
            raise ConflictingOption(
                f"{flag} {value} contradicts the checkpoint's {getattr(stored, name)}; "
                f"drop {flag} to resume with the checkpoint's settings"
            )
    epochs = given.get("epochs", stored.epochs)
    done = resumed["epoch"]
    if stored.schedule == "cosine" and done >= stored.epochs:
        raise ConflictingOption(
            f"this run's cosine schedule is complete ({done} of {stored.epochs} epochs) and cannot be extended; "
            "start a new run with more --epochs instead"
        )
    if epochs <= done:
        raise ConflictingOption(
            f"the checkpoint has already trained {done} epochs; pass --epochs larger than {done} to continue"
        )
    if stored.schedule == "cosine" and epochs != stored.epochs:
        raise ConflictingOption(
            f"--epochs {epochs} would change the cosine schedule planned for {stored.epochs} epochs; "
            f"resume with --epochs {stored.epochs}"
        )
    return Hparams(**{**stored.as_dict(), "epochs": epochs})
