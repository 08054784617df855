"""A sweep's grid as plain data: the comma-separated lists of `softmax sweep`, their product as
configurations, the groups that can share batches, the memory a group needs, and the
`softmax train` command that reproduces one configuration alone.

Standard library only (and softmax_cli.config), so the CLI checks a grid, and refuses an
oversized one, before anything heavy is imported.
"""

from __future__ import annotations

import itertools
import math
import os
import shlex
from dataclasses import dataclass

from softmax_cli.config import RANGES, SCHEDULES, Hparams, parse_number, resolve_hparams

# The options a sweep takes as lists: each configuration is one value of each. The grid nests
# them in reverse: the seed varies slowest, the learning rate fastest (the figure's x axis).
SWEEPABLE = ("lr", "weight_decay", "momentum", "schedule", "batch_size", "seed")
FLAGS = {name: "--" + name.replace("_", "-") for name in SWEEPABLE}
SHORT_NAMES = {
    "lr": "lr",
    "weight_decay": "wd",
    "momentum": "mom",
    "schedule": "",
    "batch_size": "bs",
    "seed": "seed",
}
DEFAULT_VAL_SPLIT = 0.1
# A grid larger than this is almost surely a typo (a list pasted twice, a product that grew);
# it would also write one TensorBoard run per configuration.
MAX_CONFIGS = 4096

# Memory per configuration, in float32 numbers: W and b (784 x 10 + 10 = 7,850), their
# gradients, the momentum buffers, and the update's temporaries (lr * grad / B, decay * W).
PARAMETERS = 784 * 10 + 10
PARAMETER_COPIES = 6
# Per example of a batch and configuration, rows of 10 float32 numbers alive at the peak of a
# step: the logits, the log-softmax's intermediates and their gradients. Both counts are fitted
# to the peak RSS of K = 2,048 configurations at batch 64 and 256 on the CPU (README, "Memory").
LOGIT_COPIES = 14
FLOAT_BYTES = 4
# The data held for a group: Fashion-MNIST's 70,000 uint8 images of 784 pixels, labels as int64.
DATA_BYTES = 70_000 * (784 + 8)
# Fashion-MNIST's train split: a batch never holds more than what the validation split leaves of it.
TRAIN_IMAGES = 60_000


class GridError(ValueError):
    """A list or a grid the sweep refuses; the message names the option and says what to change."""


def parse_list(name: str, text: str) -> tuple:
    """'0.01,0.1' -> (0.01, 0.1) for the option `name`, each value checked as `softmax train` checks it.

    Refused: an empty item, a value of the wrong type or out of config.RANGES, a value listed twice.
    """
    items = [item.strip() for item in text.split(",")]
    values = []
    for item in items:
        if not item:
            raise GridError(f"an empty item in {text!r}; separate values with single commas, e.g. 0.01,0.1")
        value = _parse_value(name, item)
        if value in values:
            raise GridError(f"{item} is listed twice")
        values.append(value)
    return tuple(values)


def _parse_value(name: str, item: str):
    if name == "schedule":
        if item not in SCHEDULES:
            raise GridError(f"{item!r} is not a schedule; use {' or '.join(SCHEDULES)}")
        return item
    try:
        value = parse_number(item, whole=name in ("batch_size", "seed"))
    except ValueError as exc:
        raise GridError(str(exc)) from None
    if value not in RANGES[name]:
        raise GridError(f"each value must be {RANGES[name]}, not {item}")
    return value


def grid_size(lists: dict[str, tuple | None]) -> int:
    return math.prod(len(values) for values in lists.values() if values)


def build_configs(lists: dict[str, tuple | None], fixed: dict[str, object], preset: str | None) -> list[Hparams]:
    """Every combination of the lists (an option not given takes its single preset value), as the
    Hparams of the `softmax train --impl scratch` run it stands for.

    `fixed` holds the single-valued options given (epochs, standardize, val_split). Raises
    GridError for a grid over MAX_CONFIGS.
    """
    size = grid_size(lists)
    if size > MAX_CONFIGS:
        given = " x ".join(f"{len(v)} {FLAGS[n]}" for n, v in lists.items() if v)
        raise GridError(
            f"the grid has {size:,} configurations ({given}), over the limit of {MAX_CONFIGS:,}; shorten the lists"
        )
    names = [name for name in reversed(SWEEPABLE) if lists.get(name)]
    configs = []
    for combination in itertools.product(*(lists[name] for name in names)):
        given = {**fixed, **dict(zip(names, combination, strict=True))}
        given.setdefault("val_split", DEFAULT_VAL_SPLIT)
        configs.append(resolve_hparams({**given, "impl": "scratch", "loader": "memory"}, preset))
    return configs


def varying(configs: list[Hparams]) -> list[str]:
    """The sweepable settings that take more than one value in these configurations, in grid order."""
    return [name for name in SWEEPABLE if len({getattr(h, name) for h in configs}) > 1]


def config_tag(hparams: Hparams) -> str:
    """A configuration's folder name, naming every sweepable setting: lr0.1-wd0-mom0.9-cosine-bs256-seed326."""
    return "-".join(f"{SHORT_NAMES[name]}{format_value(getattr(hparams, name))}" for name in SWEEPABLE)


def format_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def is_plain(hparams: Hparams) -> bool:
    """True where `softmax train --impl scratch` steps with the book's `sgd` (no momentum, no decay)."""
    return not hparams.momentum and not hparams.weight_decay


def group_configs(configs: list[Hparams]) -> list[list[int]]:
    """Indices of the configurations that can share batches: the same batch size and the same seed
    (the seed fixes the initial weights, the validation split and the batch order).

    Groups come in the order the grid first meets them. Within a group, the plain configurations
    come first, so the stacked trainer updates them with the book's `sgd` as one slice and the
    others with `sgd_momentum` as another, exactly as each would train alone.
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for index, hparams in enumerate(configs):
        groups.setdefault((hparams.batch_size, hparams.seed), []).append(index)
    return [sorted(indices, key=lambda i: not is_plain(configs[i])) for indices in groups.values()]


@dataclass(frozen=True)
class MemoryEstimate:
    """What the largest group needs, in bytes, beside what the device has free."""

    needed: int
    available: int | None
    configs: int
    batch_size: int

    @property
    def fits(self) -> bool:
        return self.available is None or self.needed <= self.available


def group_bytes(configs: int, batch_size: int) -> int:
    """Bytes one group of `configs` configurations needs at `batch_size`, as README's Memory section says."""
    per_config = PARAMETERS * PARAMETER_COPIES + batch_size * 10 * LOGIT_COPIES
    return configs * per_config * FLOAT_BYTES + DATA_BYTES


def largest_batch(hparams: Hparams) -> int:
    """The most examples a batch of this configuration holds: its batch size, capped by the train split
    that the validation split leaves (54,000 of Fashion-MNIST's 60,000 at --val-split 0.1)."""
    return min(hparams.batch_size, TRAIN_IMAGES - int(round(TRAIN_IMAGES * hparams.val_split)))


def estimate_memory(configs: list[Hparams], groups: list[list[int]], available: int | None) -> MemoryEstimate:
    """The largest group's need (groups run one after another, so only one is alive at a time)."""
    sizes = [(group_bytes(len(group), largest_batch(configs[group[0]])), len(group), largest_batch(configs[group[0]]))
             for group in groups]  # fmt: skip
    needed, count, batch_size = max(sizes)
    return MemoryEstimate(needed, available, count, batch_size)


def available_host_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping: MemAvailable, else free pages; None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_refusal(estimate: MemoryEstimate, device: str) -> str:
    """The one line that refuses a grid which would not fit."""
    gib = 1024**3
    return (
        f"the largest group ({estimate.configs:,} configurations at batch {estimate.batch_size}) needs about "
        f"{estimate.needed / gib:.1f} GiB but {device} has {estimate.available / gib:.1f} GiB free; "
        "shorten the lists, or split the sweep by --batch-size or --seed (groups run one after another)"
    )


def train_command(hparams: Hparams, data_dir: str | None = None, device: str | None = None) -> str:
    """The `softmax train` command that trains this configuration alone, every setting spelled out.

    Floats are written with repr(), which reads back as the very same float.
    """
    argv = ["softmax", "train", "--impl", "scratch", "--preset", hparams.preset, "--epochs", str(hparams.epochs)]
    for name in SWEEPABLE:
        value = getattr(hparams, name)
        argv += [FLAGS[name], repr(value) if isinstance(value, float) else str(value)]
    argv += ["--standardize" if hparams.standardize else "--no-standardize", "--val-split", repr(hparams.val_split)]
    if data_dir is not None:
        argv += ["--data-dir", data_dir]
    if device is not None:
        argv += ["--device", device]
    return shlex.join(argv)
