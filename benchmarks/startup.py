"""Start-up: whole `softmax` processes beside `python -c "import torch"`, the import times, and every --help."""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# For a tool whose ten epochs take about a second, start-up is most of the wait, so each
# command is timed as a user meets it: a fresh `python -m softmax_cli ...` process, from start
# to exit, output discarded. The commands: a no-op `download` (every file present and verified),
# `eval` of a checkpoint, `runs`, and `train` for 1 and for 10 epochs (memory loader, the book's
# settings). The baseline is `python -c "import torch"`; beside it, the concise floor: a process
# that imports torch and builds one torch.optim.SGD (which imports torch._dynamo), what any
# concise run pays before its first batch.
#
# Alternated rounds: each round runs every probe once, in a fixed order, so a burst of load on a
# shared machine falls on all of them alike; the median over the rounds is reported, and its
# ratio to the baseline's median. Before the rounds, one untimed `train --epochs 1` makes the
# checkpoint for `eval` and one untimed `download` records the files as verified (as any first
# run after an upgrade would); both warm the file cache.
#
# Then, in fresh processes: the seconds of importing torch, torchvision and tensorboard, and of
# `softmax --help` and every `softmax CMD --help`.

BASELINE = "import-torch"
# The project's start-up targets: at most this many times a floor's time (median against median):
# `import torch`, or for a concise run the concise floor (torch plus one torch.optim.SGD).
STARTUP_TARGETS = {
    "download-noop": (BASELINE, 0.3),
    "runs": (BASELINE, 0.3),
    "eval": (BASELINE, 1.5),
    "train-10": (BASELINE, 2.3),
    "train-10-concise": ("concise-floor", 2.3),
}
HELP_TARGET_S = 0.3
CONCISE_FLOOR = "import torch; torch.optim.SGD(torch.nn.Linear(784, 10).parameters(), lr=0.1)"

IMPORT_PROBE = """
import json, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import torchvision
t2 = time.perf_counter()
import torch.utils.tensorboard
t3 = time.perf_counter()
print(json.dumps({"torch_s": t1 - t0, "torchvision_s": t2 - t1, "tensorboard_s": t3 - t2, "total_s": t3 - t0,
                  "torch_version": torch.__version__, "torchvision_version": torchvision.__version__}))
"""


def say(message: str) -> None:
    print(message, file=sys.stderr)


def run(argv: list[str], what: str) -> tuple[float, str]:
    """Wall seconds and stdout of one whole process; exits with its last stderr lines if it fails."""
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise SystemExit(f"error: `{what}` failed (exit {done.returncode}): {tail}")
    return seconds, done.stdout


def plan_probes(data_dir: Path, device: str, checkpoint: Path, runs_dir: Path) -> list[tuple[str, str, list[str]]]:
    """(key, the command as a user types it, argv) of one round, in the order they run; the baseline first."""
    softmax = [sys.executable, "-m", "softmax_cli"]
    data = ["--data-dir", str(data_dir)]
    train = [*softmax, "train", *data, "--runs-dir", str(runs_dir), "--device", device, "--epochs"]
    return [
        (BASELINE, 'python -c "import torch"', [sys.executable, "-c", "import torch"]),
        ("concise-floor", 'python -c "import torch; torch.optim.SGD(...)"', [sys.executable, "-c", CONCISE_FLOOR]),
        ("download-noop", "softmax download (no-op)", [*softmax, "download", *data]),
        ("eval", "softmax eval CHECKPOINT", [*softmax, "eval", str(checkpoint), *data, "--device", device]),
        ("runs", "softmax runs", [*softmax, "runs", "--runs-dir", str(runs_dir)]),
        ("train-1", "softmax train --epochs 1", [*train, "1"]),
        ("train-10", "softmax train --epochs 10", [*train, "10"]),
        ("train-10-concise", "softmax train --impl concise --epochs 10", [*train, "10", "--impl", "concise"]),
    ]


def measure_startup(data_dir: Path, device: str, rounds: int) -> dict:
    """Time every probe `rounds` times, alternated; medians and ratios to `import torch`."""
    with tempfile.TemporaryDirectory(prefix="softmax-startup-") as work:
        runs_dir = Path(work) / "runs"
        say("training the checkpoint eval is timed on ...")
        train = [sys.executable, "-m", "softmax_cli", "train", "--data-dir", str(data_dir), "--runs-dir", str(runs_dir),
                 "--device", device, "--epochs", "1", "--json"]  # fmt: skip
        checkpoint = Path(json.loads(run(train, "softmax train --epochs 1 --json")[1])["checkpoint"])
        probes = plan_probes(data_dir, device, checkpoint, runs_dir)
        # Untimed: a data dir verified by an older version has no record yet; the first download makes it.
        run(probes[2][2], probes[2][1])
        times: dict[str, list[float]] = {key: [] for key, _, _ in probes}
        for round_index in range(rounds):
            for key, command, argv in probes:
                say(f"round {round_index + 1}/{rounds}: {command}")
                times[key].append(run(argv, command)[0])
    baseline = statistics.median(times[BASELINE])
    commands = []
    for key, command, argv in probes:
        median = statistics.median(times[key])
        commands.append({"key": key, "command": command, "argv": shlex.join(argv), "median_s": median,
                         "min_s": min(times[key]), "max_s": max(times[key]), "runs": times[key],
                         "ratio_to_import_torch": median / baseline})  # fmt: skip
    return {"rounds": rounds, "device": device, "statistic": "median", "baseline": BASELINE, "commands": commands,
            "note": "whole-process wall time of a fresh process, start to exit; alternated round by round"}  # fmt: skip


def measure_imports() -> dict:
    """`import torch`, then torchvision, then tensorboard in a fresh interpreter: seconds of each."""
    seconds, out = run([sys.executable, "-c", IMPORT_PROBE], "the import probe")
    return {**json.loads(out), "process_wall_s": seconds}


def help_commands() -> list[list[str]]:
    """[] for `softmax --help`, then [name] for every command, as registered on the app."""
    from typer.main import get_command

    from softmax_cli.cli import app

    return [[]] + [[name] for name in sorted(get_command(app).commands)]


def measure_help(repeats: int) -> list[dict]:
    """Wall time of `softmax [CMD] --help`, each a fresh `python -m softmax_cli` process, alternated."""
    commands = help_commands()
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(repeats):
        for args, runs in zip(commands, times, strict=True):
            runs.append(run([sys.executable, "-m", "softmax_cli", *args, "--help"], f"softmax {args} --help")[0])
    return [{"command": " ".join(["softmax", *args, "--help"]), "median_s": statistics.median(runs),
             "min_s": min(runs), "runs": runs} for args, runs in zip(commands, times, strict=True)]  # fmt: skip


def evaluate_targets(startup: dict, help_times: list[dict]) -> list[dict]:
    """The project's start-up targets (ratio of medians to `import torch`) and the --help target."""
    targets = []
    medians = {command["key"]: command["median_s"] for command in startup["commands"]}
    names = {command["key"]: command["command"] for command in startup["commands"]}
    for command in startup["commands"]:
        if command["key"] not in STARTUP_TARGETS:
            continue
        floor, limit = STARTUP_TARGETS[command["key"]]
        ratio = command["median_s"] / medians[floor]
        targets.append({"target": f"{command['command']} <= {limit}x `{names[floor]}` (whole process, median)",
                        "value": ratio, "limit": limit, "met": ratio <= limit})  # fmt: skip
    worst = max(help_times, key=lambda h: h["median_s"])
    slowest = worst["median_s"]
    targets.append({"target": f"every --help <= {HELP_TARGET_S} s (slowest: {worst['command']})", "value": slowest,
                    "limit": HELP_TARGET_S, "met": slowest <= HELP_TARGET_S})  # fmt: skip
    return targets


def describe(result: dict) -> list[str]:
    startup, imports = result["startup"], result["imports"]
    lines = [f"Start-up on {startup['device']}: whole processes, median of {startup['rounds']} rounds, alternated"]
    for command in startup["commands"]:
        lines.append(
            f"  {command['command']:<48} {command['median_s']:6.2f} s ({command['min_s']:.2f}-{command['max_s']:.2f})"
            f" {command['ratio_to_import_torch']:5.2f}x import torch"
        )
    lines.append(
        f"Importing in a fresh process: torch {imports['torch_s']:.2f} s, "
        f"torchvision {imports['torchvision_s']:.2f} s, tensorboard {imports['tensorboard_s']:.2f} s "
        f"({imports['total_s']:.2f} s in all)"
    )
    helps = ", ".join(
        f"{h['command'].removesuffix(' --help').removeprefix('softmax').strip() or 'softmax'} {h['median_s']:.2f}"
        for h in result["help"]
    )
    lines.append(f"--help, in seconds (median of fresh processes): {helps}")
    for target in result["targets"]:
        lines.append(f"target: {target['target']}: {target['value']:.2f} ({'met' if target['met'] else 'missed'})")
    return lines


def main() -> None:
    from softmax_cli.data.paths import resolve_data_dir

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, help="the folder of the four .gz files (default: the tool's own)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default: cpu)")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds of the start-up probes")
    parser.add_argument("--help-repeats", type=int, default=3, help="fresh processes per --help")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout instead of the lines")
    args = parser.parse_args()
    startup = measure_startup(resolve_data_dir(args.data_dir), args.device, args.rounds)
    say("importing torch, torchvision and tensorboard in a fresh process ...")
    imports = measure_imports()
    say("timing --help ...")
    help_times = measure_help(args.help_repeats)
    result = {"startup": startup, "imports": imports, "help": help_times,
              "targets": evaluate_targets(startup, help_times)}  # fmt: skip
    print(json.dumps(result) if args.json else "\n".join(describe(result)))


if __name__ == "__main__":
    main()
