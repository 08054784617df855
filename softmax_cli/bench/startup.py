"""`softmax bench`'s start-up probes: whole-process times of the everyday commands, next to `import torch`.

For a tool whose ten epochs take about a second, start-up is most of the wait, so bench
times each command as a user meets it: a fresh `python -m softmax_cli ...` process, from
start to exit, output discarded. The commands: a no-op `download` (every file present and
verified), `eval` of a checkpoint, `runs` (where this version has it), and `train` for 1
and for 10 epochs (memory loader, the book's settings). The baseline is
`python -c "import torch"` in the same way.

Alternated rounds: each round runs every probe once, in a fixed order, so a burst of load
on a shared machine falls on all of them alike; the median over the rounds is reported,
and its ratio to the baseline's median. Before the rounds, one untimed `train --epochs 1`
makes the checkpoint for `eval` and one untimed `download` records the files as verified
(as any first run after an upgrade would); both warm the file cache.

Standard library only at import time, never prints (progress through a callback).
"""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from softmax_cli.errors import SoftmaxError

STARTUP_ROUNDS = 5
BASELINE = "import-torch"
# The project's start-up targets: at most this many times `import torch` (median against median).
STARTUP_TARGETS = {"download-noop": 0.3, "runs": 0.3, "eval": 1.5, "train-10": 2.5}


class StartupError(SoftmaxError):
    """A probed command failed."""


@dataclass(frozen=True)
class StartupProbe:
    key: str
    command: str  # as a user would type it, without the temporary paths and the device
    argv: list[str]


def plan_probes(data_dir: Path, device: str, checkpoint: Path, runs_dir: Path, has_runs: bool) -> list[StartupProbe]:
    """The probes of one round, in the order they run; the baseline first."""
    softmax = [sys.executable, "-m", "softmax_cli"]
    data = ["--data-dir", str(data_dir)]
    train = [*softmax, "train", *data, "--runs-dir", str(runs_dir), "--device", device, "--epochs"]
    probes = [
        StartupProbe(BASELINE, 'python -c "import torch"', [sys.executable, "-c", "import torch"]),
        StartupProbe("download-noop", "softmax download (no-op)", [*softmax, "download", *data]),
        StartupProbe("eval", "softmax eval CHECKPOINT", [*softmax, "eval", str(checkpoint), *data, "--device", device]),
    ]
    if has_runs:
        probes.append(StartupProbe("runs", "softmax runs", [*softmax, "runs", "--runs-dir", str(runs_dir)]))
    probes += [
        StartupProbe("train-1", "softmax train --epochs 1", [*train, "1"]),
        StartupProbe("train-10", "softmax train --epochs 10", [*train, "10"]),
    ]
    return probes


def _run(argv: list[str], what: str) -> float:
    """Wall seconds of one whole process; StartupError (with its last stderr lines) if it fails."""
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise StartupError(f"start-up probe `{what}` failed (exit {done.returncode}): {tail}")
    return seconds


def _prepare_checkpoint(data_dir: Path, device: str, runs_dir: Path) -> Path:
    argv = [sys.executable, "-m", "softmax_cli", "train", "--data-dir", str(data_dir), "--runs-dir", str(runs_dir)]
    argv += ["--device", device, "--epochs", "1", "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise StartupError(f"cannot train the checkpoint for the start-up probes (exit {done.returncode}): {tail}")
    return Path(json.loads(done.stdout)["checkpoint"])


def measure_startup(
    data_dir: Path,
    device: str,
    has_runs: bool,
    rounds: int = STARTUP_ROUNDS,
    progress: Optional[Callable[[str], None]] = None,
) -> dict:
    """Time every probe `rounds` times, alternated; medians and ratios to `import torch`."""
    say = progress or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="softmax-bench-startup-") as work:
        runs_dir = Path(work) / "runs"
        say("start-up: training the checkpoint eval is timed on ...")
        checkpoint = _prepare_checkpoint(data_dir, device, runs_dir)
        probes = plan_probes(data_dir, device, checkpoint, runs_dir, has_runs)
        # Untimed: a data dir verified by an older version has no record yet; the first download makes it.
        _run(probes[1].argv, probes[1].command)
        times: dict[str, list[float]] = {probe.key: [] for probe in probes}
        for round_index in range(rounds):
            for probe in probes:
                say(f"start-up, round {round_index + 1}/{rounds}: {probe.command}")
                times[probe.key].append(_run(probe.argv, probe.command))
    baseline = statistics.median(times[BASELINE])
    commands = []
    for probe in probes:
        median = statistics.median(times[probe.key])
        commands.append(
            {
                "key": probe.key,
                "command": probe.command,
                "argv": shlex.join(probe.argv),
                "median_s": median,
                "min_s": min(times[probe.key]),
                "max_s": max(times[probe.key]),
                "runs": times[probe.key],
                "ratio_to_import_torch": median / baseline if baseline > 0 else None,
            }
        )
    return {
        "rounds": rounds,
        "device": device,
        "statistic": "median",
        "baseline": BASELINE,
        "note": "whole-process wall time of a fresh process, start to exit; probes alternated round by round",
        "commands": commands,
    }


def startup_targets(startup: Optional[dict]) -> list[dict]:
    """The start-up targets one run can check (ratio of medians to `import torch`), for the JSON record."""
    if not startup:
        return []
    targets = []
    for command in startup["commands"]:
        limit = STARTUP_TARGETS.get(command["key"])
        if limit is not None and command["ratio_to_import_torch"] is not None:
            ratio = command["ratio_to_import_torch"]
            targets.append(
                {
                    "target": f"{command['command']} <= {limit}x `import torch` (whole process, median)",
                    "value": ratio,
                    "limit": limit,
                    "met": ratio <= limit,
                }
            )
    return targets
