"""Peak memory of each `softmax bench` row in a fresh process of its own, next to importing torch, with the targets."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

# `softmax bench` runs its rows in one process, so a row's memory there is that process's peak
# while the row ran. Here every row runs in a fresh `python benchmarks/memory.py --row ...`
# process, which reports its own peak RSS (VmHWM: imports + data + training), its RSS right
# after the imports, and the largest peak of its DataLoader workers (forked, so they share most
# pages with the row process and must not be added to it); this script adds that process's
# whole-life max RSS, exit included, as /usr/bin/time would report it. The baseline is a fresh
# `import torch, torchvision, torch.utils.tensorboard`, measured the same way. The targets are the
# project's: the memory loader 20x faster per epoch than the fastest book row, scratch within
# 1.3x of concise, and each memory-loader row within 150 MiB of the imports.

IMPORT_STATEMENT = "import torch, torchvision, torch.utils.tensorboard"

# Runs argv as a child *forked from this small launcher*, then prints the child's ru_maxrss as a
# last JSON line. A process started straight from a process that has imported torch (700+ MiB)
# would inherit that high-water mark through execve; a child forked from a 10 MiB launcher starts
# clean. The figure covers the whole process, exit included (interpreter teardown after
# `import torch` alone adds ~100+ MiB on Linux).
CLEAN_LAUNCHER = """
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

IMPORT_PROBE = f"""
import json
{IMPORT_STATEMENT}
from softmax_cli.bench.pipelines import peak_rss_mib
print(json.dumps({{"peak_rss_mib": peak_rss_mib()}}))
"""


def run_json_process(argv: list[str], what: str) -> dict:
    """Run argv (which prints one JSON object as its last stdout line) and add its whole-process peak RSS."""
    done = subprocess.run([sys.executable, "-c", CLEAN_LAUNCHER, json.dumps(argv)], capture_output=True, text=True)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise SystemExit(f"error: {what} failed (exit {done.returncode}): {tail}")
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-2])
    result["process_maxrss_mib"] = json.loads(lines[-1])["process_maxrss_mib"]
    return result


# ---------------------------------------------------------------------------------------
# One row, in its own process


def child_pids() -> list[str]:
    """Live children of this process, from /proc/<pid>/stat (Linux); [] elsewhere."""
    me, children = str(os.getpid()), []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for pid in filter(str.isdigit, entries):
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == me:
            children.append(pid)
    return children


def children_peak_rss_mib() -> Optional[float]:
    """The largest peak RSS among this process's live children (the DataLoader workers), Linux only.

    Not RUSAGE_CHILDREN: that also counts helpers that torch's import runs, which inherit their
    parent's high-water mark through execve.
    """
    from softmax_cli.bench.pipelines import vmhwm_mib

    peaks = [peak for peak in map(vmhwm_mib, child_pids()) if peak is not None]
    return max(peaks) if peaks else None


def row_main(payload: str) -> None:
    """Measure one row in this fresh process and print it as one JSON line."""
    values = json.loads(payload)
    import torch

    if values["spec"]["loader"] == "dataloader":
        import torchvision  # noqa: F401  (the book's pipeline imports it: its memory is the row's)

    from softmax_cli.bench.pipelines import BenchSettings, RowSpec, measure_row, peak_rss_mib

    if values["threads"]:
        torch.set_num_threads(values["threads"])
    after_imports = peak_rss_mib()
    workers_peak: list[float] = []

    def sample_workers(message: str) -> None:  # after every epoch, while the workers are alive
        peak = children_peak_rss_mib()
        if peak is not None:
            workers_peak.append(peak)

    spec = RowSpec(**values["spec"])
    settings = BenchSettings(**{**values["settings"], "data_dir": Path(values["settings"]["data_dir"])})
    row = measure_row(spec, settings, sample_workers if spec.workers else None)
    row["rss_after_imports_mib"] = after_imports
    row["workers_peak_rss_mib"] = max(workers_peak) if workers_peak else None
    print(json.dumps(row))


# ---------------------------------------------------------------------------------------
# Every row, and the targets


def evaluate_targets(rows: list[dict], imports: dict) -> list[dict]:
    """The project's speed and memory targets that these rows can check, with the measured values."""
    by_key = {row["key"]: row for row in rows}
    book = [row for row in rows if row["loader"] == "dataloader"]
    fastest_book = min(row["seconds_per_epoch"] for row in book)
    slower_memory = max(by_key[k]["seconds_per_epoch"] for k in ("memory-concise", "memory-scratch"))
    speed = fastest_book / slower_memory
    ratio = by_key["memory-scratch"]["seconds_per_epoch"] / by_key["memory-concise"]["seconds_per_epoch"]
    targets = [
        {"target": "memory loader >= 20x faster per epoch than the fastest book row", "value": speed, "limit": 20.0,
         "met": speed >= 20.0},
        {"target": "scratch within 1.3x of concise per epoch", "value": ratio, "limit": 1.3, "met": ratio <= 1.3},
    ]  # fmt: skip
    for measure, label in (
        ("process_maxrss_mib", "whole processes, as /usr/bin/time"),
        ("peak_rss_mib", "in-process VmHWM, before interpreter exit"),
    ):
        limit = imports[measure] + 150
        for key in ("memory-concise", "memory-scratch"):
            value = by_key[key][measure]
            targets.append({"target": f"{key} peak RSS <= import RSS + 150 MiB ({label})", "value": value,
                            "limit": limit, "met": value <= limit})  # fmt: skip
    return targets


def measure(settings, threads: Optional[int]) -> dict:
    from softmax_cli.bench.pipelines import plan_rows

    rows = []
    for spec in plan_rows(settings.workers):
        print(f"{spec.label} ...", file=sys.stderr)
        payload = {"spec": asdict(spec), "settings": {**asdict(settings), "data_dir": str(settings.data_dir)},
                   "threads": threads}  # fmt: skip
        rows.append(run_json_process([sys.executable, __file__, "--row", json.dumps(payload)], spec.label))
    baseline = min((row for row in rows if row["loader"] == "dataloader"), key=lambda row: row["seconds_per_epoch"])
    for row in rows:
        row["speedup"] = baseline["seconds_per_epoch"] / row["seconds_per_epoch"]
    print(f"{IMPORT_STATEMENT} ...", file=sys.stderr)
    imports = run_json_process([sys.executable, "-c", IMPORT_PROBE], "the import probe")
    imports["statement"] = IMPORT_STATEMENT
    return {
        "settings": {**asdict(settings), "data_dir": str(settings.data_dir), "threads": threads},
        "timing_statistic": "median",
        "baseline": baseline["key"],
        "rows": rows,
        "imports": imports,
        "targets": evaluate_targets(rows, imports),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def mib(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.0f}"


def describe(result: dict) -> list[str]:
    imports = result["imports"]
    lines = [
        f"{'row':<48} {'s/epoch':>8} {'speed-up':>9} {'peak MiB':>9} {'after imports':>14} {'whole process':>14} "
        f"{'workers':>8}"
    ]
    for row in result["rows"]:
        lines.append(
            f"{row['label']:<48} {row['seconds_per_epoch']:>8.3f} {row['speedup']:>8.1f}x "
            f"{mib(row['peak_rss_mib']):>9} {mib(row['rss_after_imports_mib']):>14} "
            f"{mib(row['process_maxrss_mib']):>14} {mib(row['workers_peak_rss_mib']):>8}"
        )
    lines.append(
        f"{imports['statement']}: peak {mib(imports['peak_rss_mib'])} MiB, whole process "
        f"{mib(imports['process_maxrss_mib'])} MiB"
    )
    for target in result["targets"]:
        lines.append(f"target: {target['target']}: {target['value']:.3g} ({'met' if target['met'] else 'missed'})")
    lines.append(
        "peak: the row process's VmHWM at its end (imports + data + training); after imports: the same right after "
        "importing torch (and torchvision, for the book's rows); whole process: its max RSS as /usr/bin/time "
        "reports it, exit included; workers: the largest DataLoader worker's peak (shares pages: do not add)"
    )
    return lines


def main() -> None:
    from softmax_cli.bench.pipelines import BenchSettings
    from softmax_cli.config import default_workers
    from softmax_cli.data.paths import resolve_data_dir

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, help="the folder of the four .gz files (default: the tool's own)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default: cpu)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per row, after one warm-up epoch")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=default_workers(), help="workers of the book's N-worker rows")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads in every row (default: torch's)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout instead of the table")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # the row process: its spec and settings as JSON
    args = parser.parse_args()
    if args.row:
        row_main(args.row)
        return
    settings = BenchSettings(
        data_dir=resolve_data_dir(args.data_dir),
        device=args.device,
        batch_size=args.batch_size,
        epochs=args.epochs,
        workers=args.workers,
    )
    result = measure(settings, args.threads)
    print(json.dumps(result) if args.json else "\n".join(describe(result)))


if __name__ == "__main__":
    main()
