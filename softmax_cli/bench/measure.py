"""`softmax bench`'s run: every row in this process, on the same data, and the result.

Everything is measured in one run, on the same data, with the same batch size and
learning rate, so the speed-ups are ratios of numbers taken minutes apart on the same
machine. Each row trains for one warm-up epoch, then `epochs` timed epochs; the figure
reported is the *median* timed epoch (the training pass only). The rows and the timing of
one row live in softmax_cli.bench.pipelines.

Memory. The rows run lightest first (pipelines.lightest_first), and before each row the
process's peak RSS is brought down to its current RSS, so a row's figure is the peak while
it ran: torch and the modules it needs, its data and its training. Where the peak cannot be
reset (not Linux) the figure is the process's peak so far, earlier rows included.

No torch at import time, never prints (progress goes through an optional callback),
knows nothing of Typer or Rich.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from typing import Optional

from softmax_cli.bench.pipelines import (
    WARMUP_EPOCHS,
    BenchSettings,
    Progress,
    lightest_first,
    measure_row,
    plan_rows,
    reset_peak_rss,
)

TIMING_STATISTIC = "median"
MEMORY_MODES = {
    "row": (
        "peak_rss_mib: peak RSS of this process while the row ran (its high-water mark reset before each row): "
        "torch and the modules the row needs, its data and its training; rows run lightest first (data only, "
        "scratch, concise, the book's), so no row carries a heavier row's imports; DataLoader workers are "
        "processes of their own and not counted"
    ),
    "so-far": (
        "peak_rss_mib: peak RSS of this process so far (its high-water mark cannot be reset here), earlier rows "
        "included; rows run lightest first (data only, scratch, concise, the book's)"
    ),
}


@dataclass
class BenchResult:
    """One benchmark run; as_dict() is the `--json` payload."""

    settings: dict
    environment: dict
    memory_mode: str  # a key of MEMORY_MODES
    rows: list[dict]
    baseline: Optional[str]

    def as_dict(self) -> dict:
        return {
            "settings": self.settings,
            "timing_statistic": TIMING_STATISTIC,
            "timed": "training pass only (no evaluation, checkpoint or logging), "
            f"{WARMUP_EPOCHS} warm-up epoch then settings.epochs timed epochs",
            "memory_mode": self.memory_mode,
            "memory_note": MEMORY_MODES[self.memory_mode],
            "environment": self.environment,
            "baseline": self.baseline,
            "rows": self.rows,
        }


def _loadavg() -> Optional[list[float]]:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _environment(device: str) -> dict:
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        # every row runs on these threads (the command line's default: one), so the rows differ
        # only in their pipeline
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "device_name": _device_name(device),
        "loadavg": _loadavg(),
    }


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_benchmark(settings: BenchSettings, progress: Progress = None) -> BenchResult:
    """Time every row; speed-ups are against the fastest book row."""
    from softmax_cli.data import batches as data

    say = progress or (lambda message: None)
    train_examples = len(data.read_split(settings.data_dir, "train"))  # fails early on a bad data dir
    environment = _environment(settings.device)

    specs = plan_rows(settings.workers)
    measured, resets = {}, []
    for spec in lightest_first(specs):
        say(f"{spec.label} ...")
        resets.append(reset_peak_rss())
        measured[spec.key] = measure_row(spec, settings, progress)
        say(f"{spec.label}: {measured[spec.key]['seconds_per_epoch']:.3f} s/epoch")
    rows = [measured[spec.key] for spec in specs]

    book = [row for row in rows if row["loader"] == "dataloader"]
    baseline = min(book, key=lambda row: row["seconds_per_epoch"]) if book else None
    for row in rows:
        row["speedup"] = (
            baseline["seconds_per_epoch"] / row["seconds_per_epoch"]
            if baseline and row["seconds_per_epoch"] > 0
            else None
        )
        row["is_baseline"] = row is baseline
    environment["loadavg_end"] = _loadavg()

    return BenchResult(
        settings={
            **asdict(settings),
            "data_dir": str(settings.data_dir),
            "warmup_epochs": WARMUP_EPOCHS,
            "train_examples": train_examples,
        },  # fmt: skip
        environment=environment,
        memory_mode="row" if all(resets) else "so-far",
        rows=rows,
        baseline=baseline["key"] if baseline else None,
    )
