"""`softmax bench`'s measuring logic: the book's DataLoader pipeline against the memory loader.

Everything is measured in one run, on the same data, with the same batch size and
learning rate, so the speed-ups are ratios of numbers taken minutes apart on the same
machine. Each row trains for one warm-up epoch, then `epochs` timed epochs; the figure
reported is the *median* timed epoch (the training pass only).

The rows and the timing of one row live in softmax_cli.bench.pipelines, the whole-process
start-up times of the everyday commands in softmax_cli.bench.startup; this module is the
harness around them: settings, the fresh processes rows run in, the import and --help
probes, the environment, and the result.

Memory. ru_maxrss is a process-wide high-water mark, so rows that share a process
cannot be told apart. By default (isolate=True) every row runs in a fresh
`python -m softmax_cli.bench.measure row ...` process, which reports its own peak RSS (VmHWM:
imports + data + training), its RSS right after the imports, and the largest peak of
its DataLoader workers (forked, so they share most pages with the row process and must
not be added to it); the launcher adds that process's whole-life max RSS, exit
included, as /usr/bin/time would report it. In-process mode (the default for --quick)
only reports the benchmarking process's peak so far.

This module imports no torch at import time, never prints (progress goes through an
optional callback) and knows nothing of Typer or Rich. The one exception to "never
prints" is the row-worker entry point at the bottom, whose stdout is the protocol.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from softmax_cli.bench.pipelines import (
    WARMUP_EPOCHS,
    BenchSettings,
    Progress,
    RowSpec,
    children_peak_rss_mib,
    measure_row,
    peak_rss_mib,
    plan_rows,
)
from softmax_cli.bench.startup import measure_startup, startup_targets
from softmax_cli.errors import SoftmaxError

__all__ = [
    "BenchError",
    "BenchResult",
    "BenchSettings",
    "RowSpec",
    "children_peak_rss_mib",
    "evaluate_targets",
    "measure_help",
    "measure_imports",
    "measure_row",
    "measure_row_isolated",
    "peak_rss_mib",
    "plan_rows",
    "run_benchmark",
]

QUICK_MAX_BATCHES = 20
TIMING_STATISTIC = "median"
IMPORT_STATEMENT = "import torch, torchvision, torch.utils.tensorboard"
MEMORY_MODES = {
    "isolated": (
        "peak_rss_mib: peak RSS (VmHWM) of the row's own fresh process at the end of the row: imports + data + "
        "training; rss_after_imports_mib: the same right after importing torch (and torchvision, for the book's "
        "rows: the memory loader does not import it); "
        "process_maxrss_mib: that whole process's max RSS as /usr/bin/time reports it, interpreter exit included "
        "(torch's teardown alone adds ~100+ MiB); workers_peak_rss_mib: the largest DataLoader worker's peak "
        "(forked, shares pages with the row process: do not add). ru_maxrss is not read in-process because on "
        "Linux it survives execve (a child of a 700 MiB process reports 700 MiB)"
    ),
    "in-process": (
        "peak_rss_mib: peak RSS of the benchmarking process so far (process-wide and monotonic: "
        "it includes every earlier row, so it is not a per-row figure); no per-row baseline, whole-process or "
        "worker figures"
    ),
}


class BenchError(SoftmaxError):
    """A benchmark row or a timing subprocess failed."""


# ---------------------------------------------------------------------------------------
# Subprocesses: isolated rows, the import baseline, --help wall times


def _settings_to_json(settings: BenchSettings) -> dict:
    values = asdict(settings)
    values["data_dir"] = str(settings.data_dir)
    return values


# Runs argv as a child *forked from this small launcher*, then prints the child's ru_maxrss
# as a last JSON line. A process started straight from the benchmarking process (700+ MiB
# with torch loaded) would inherit that high-water mark through vfork + execve; a child
# forked from a 10 MiB launcher starts clean. The figure covers the whole process, exit
# included, as /usr/bin/time reports it (interpreter teardown after `import torch` alone
# adds ~100+ MiB on Linux).
_CLEAN_LAUNCHER = """
import json, os, sys
argv = json.loads(sys.argv[1])
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
scale = 1024 * 1024 if sys.platform == "darwin" else 1024
print(json.dumps({"process_maxrss_mib": usage.ru_maxrss / scale}))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _run_json_subprocess(argv: list[str], what: str) -> dict:
    """Run argv (which prints one JSON object as its last stdout line); add its whole-process peak RSS."""
    launcher = [sys.executable, "-c", _CLEAN_LAUNCHER, json.dumps(argv)]
    try:
        done = subprocess.run(launcher, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BenchError(f"cannot start {what}: {exc}") from None
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise BenchError(f"{what} failed (exit {done.returncode}): {tail}")
    lines = done.stdout.strip().splitlines()
    try:
        result, launcher_line = json.loads(lines[-2]), json.loads(lines[-1])
    except (ValueError, IndexError):
        raise BenchError(f"{what} printed no JSON result") from None
    result["process_maxrss_mib"] = launcher_line["process_maxrss_mib"]
    return result


def measure_row_isolated(spec: RowSpec, settings: BenchSettings) -> dict:
    """measure_row in a fresh interpreter, so its peak RSS belongs to this row alone."""
    payload = json.dumps({"spec": asdict(spec), "settings": _settings_to_json(settings)})
    return _run_json_subprocess(
        [sys.executable, "-m", "softmax_cli.bench.measure", "row", payload], f"benchmark row {spec.key!r}"
    )


_IMPORT_PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import torchvision
t2 = time.perf_counter()
import torch.utils.tensorboard
t3 = time.perf_counter()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rss = rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
try:  # ru_maxrss survives execve (it would report our parent's peak); VmHWM does not
    rss = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) / 1024
except (OSError, StopIteration, ValueError):
    pass
print(json.dumps({"torch_s": t1 - t0, "torchvision_s": t2 - t1, "tensorboard_s": t3 - t2,
                  "total_s": t3 - t0, "peak_rss_mib": rss, "torch_version": torch.__version__,
                  "torchvision_version": torchvision.__version__, "torch_threads": torch.get_num_threads()}))
"""


def measure_imports() -> dict:
    """`import torch, torchvision, torch.utils.tensorboard` in a fresh interpreter: seconds and peak RSS."""
    started = time.perf_counter()
    result = _run_json_subprocess([sys.executable, "-c", _IMPORT_PROBE], "the import probe")
    result["process_wall_s"] = time.perf_counter() - started
    result["statement"] = IMPORT_STATEMENT
    return result


def measure_help(commands: list[list[str]], repeats: int = 3) -> list[dict]:
    """Wall time of `softmax [CMD] --help`, each a fresh `python -m softmax_cli` process."""
    results = []
    for args in commands:
        argv = [sys.executable, "-m", "softmax_cli", *args, "--help"]
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, check=False)
            runs.append(time.perf_counter() - t0)
            if done.returncode != 0:
                raise BenchError(f"`softmax {' '.join(args + ['--help'])}` exited {done.returncode}")
        results.append(
            {
                "command": " ".join(["softmax", *args, "--help"]),
                "median_s": statistics.median(runs),
                "min_s": min(runs),
                "runs": runs,
            }
        )
    return results


# ---------------------------------------------------------------------------------------
# The whole benchmark


@dataclass
class BenchResult:
    """One benchmark run; as_dict() is the `--json` payload.

    targets are the project's own performance goals (evaluate_targets), kept for the
    JSON record of a run: they say nothing a user of the tool needs, so no human-facing
    rendering should show them.
    """

    settings: dict
    environment: dict
    rows: list[dict]
    baseline: Optional[str]
    imports: Optional[dict]
    help: list[dict]
    targets: list[dict] = field(default_factory=list)
    startup: Optional[dict] = None  # softmax_cli.bench.startup.measure_startup

    def as_dict(self) -> dict:
        return {
            "settings": self.settings,
            "timing_statistic": TIMING_STATISTIC,
            "timed": "training pass only (no evaluation, checkpoint or logging), "
            f"{WARMUP_EPOCHS} warm-up epoch then settings.epochs timed epochs",
            "memory_mode": "isolated" if self.settings["isolate"] else "in-process",
            "memory_note": MEMORY_MODES["isolated" if self.settings["isolate"] else "in-process"],
            "environment": self.environment,
            "baseline": self.baseline,
            "rows": self.rows,
            "imports": self.imports,
            "help": self.help,
            "startup": self.startup,
            "targets": self.targets,
        }


def _environment() -> dict:
    import torch

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        # libgomp's spin-waiting makes 2-thread CPU runs collapse when another process competes
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg": list(load) if load else None,
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


def evaluate_targets(rows: list[dict], imports: Optional[dict], help_times: list[dict], isolate: bool) -> list[dict]:
    """The project's performance targets that one run can check, with the measured values (JSON only)."""
    by_key = {row["key"]: row for row in rows}
    book = [row for row in rows if row["loader"] == "dataloader"]
    targets = []
    if book and "memory-concise" in by_key and "memory-scratch" in by_key:
        fastest_book = min(row["seconds_per_epoch"] for row in book)
        slower_memory = max(by_key[k]["seconds_per_epoch"] for k in ("memory-concise", "memory-scratch"))
        value = fastest_book / slower_memory
        targets.append(
            {
                "target": "memory loader >= 20x faster per epoch than the fastest book row",
                "value": value,
                "limit": 20.0,
                "met": value >= 20.0,
            }
        )
        ratio = by_key["memory-scratch"]["seconds_per_epoch"] / by_key["memory-concise"]["seconds_per_epoch"]
        targets.append(
            {"target": "scratch within 1.3x of concise per epoch", "value": ratio, "limit": 1.3, "met": ratio <= 1.3}
        )
    if isolate and imports is not None:
        for measure, label in (
            ("process_maxrss_mib", "whole processes, as /usr/bin/time"),
            ("peak_rss_mib", "in-process VmHWM, before interpreter exit"),
        ):
            limit = imports[measure] + 150
            for key in ("memory-concise", "memory-scratch"):
                if key in by_key and by_key[key].get(measure) is not None:
                    value = by_key[key][measure]
                    targets.append(
                        {
                            "target": f"{key} peak RSS <= import RSS + 150 MiB ({label})",
                            "value": value,
                            "limit": limit,
                            "met": value <= limit,
                        }
                    )
    if help_times:
        worst = max(help_times, key=lambda h: h["median_s"])
        targets.append(
            {
                "target": f"every --help <= 0.3 s (slowest: {worst['command']})",
                "value": worst["median_s"],
                "limit": 0.3,
                "met": worst["median_s"] <= 0.3,
            }
        )
    return targets


def run_benchmark(settings: BenchSettings, help_commands: list[list[str]], progress: Progress = None) -> BenchResult:
    """Time every row, the imports and the help screens; speed-ups are against the fastest book row."""
    from softmax_cli.data import batches as data

    if settings.quick and settings.max_batches is None:
        settings.max_batches = QUICK_MAX_BATCHES
    say = progress or (lambda message: None)
    train_examples = len(data.read_split(settings.data_dir, "train"))  # fails early on a bad data dir
    environment = _environment()
    environment["device_name"] = _device_name(settings.device)

    rows = []
    for spec in [] if settings.startup_only else plan_rows(settings.workers):
        say(f"{spec.label} ...")
        if settings.isolate:
            row = measure_row_isolated(spec, settings)
        else:
            row = measure_row(spec, settings, progress)
        if not settings.isolate:  # process-wide figures: no per-row baseline or worker peak to claim
            row["rss_after_imports_mib"] = row["workers_peak_rss_mib"] = row["process_maxrss_mib"] = None
        rows.append(row)
        say(f"{spec.label}: {row['seconds_per_epoch']:.3f} s/epoch")

    book = [row for row in rows if row["loader"] == "dataloader"]
    baseline = min(book, key=lambda row: row["seconds_per_epoch"]) if book else None
    for row in rows:
        row["speedup"] = (
            baseline["seconds_per_epoch"] / row["seconds_per_epoch"]
            if baseline and row["seconds_per_epoch"] > 0
            else None
        )
        row["is_baseline"] = row is baseline

    imports, help_times, startup = None, [], None
    if not settings.quick:  # a smoke run skips the seconds-long probes (imports, startup: null, help, targets: [])
        if not settings.startup_only:
            say("importing torch, torchvision and tensorboard in a fresh process ...")
            imports = measure_imports()
            say("timing --help ...")
            help_times = measure_help(help_commands)
        startup = measure_startup(settings.data_dir, settings.device, ["runs"] in help_commands, progress=progress)
    try:
        environment["loadavg_end"] = list(os.getloadavg())
    except OSError:
        pass

    return BenchResult(
        settings={**_settings_to_json(settings), "warmup_epochs": WARMUP_EPOCHS, "train_examples": train_examples},
        environment=environment,
        rows=rows,
        baseline=baseline["key"] if baseline else None,
        imports=imports,
        help=help_times,
        # A capped smoke run measures nothing worth judging.
        targets=[]
        if settings.quick
        else evaluate_targets(rows, imports, help_times, settings.isolate) + startup_targets(startup),
        startup=startup,
    )


# ---------------------------------------------------------------------------------------
# Row worker: python -m softmax_cli.bench.measure row '<json>'


def _row_main(argv: list[str]) -> int:
    """Measure one row and print it as one JSON line: the protocol measure_row_isolated reads."""
    if len(argv) != 2 or argv[0] != "row":
        sys.stderr.write("usage: python -m softmax_cli.bench.measure row '<json spec and settings>'\n")
        return 2
    payload = json.loads(argv[1])
    settings = BenchSettings(**{**payload["settings"], "data_dir": Path(payload["settings"]["data_dir"])})
    spec = RowSpec(**payload["spec"])
    row = measure_row(spec, settings)
    sys.stdout.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_row_main(sys.argv[1:]))
