"""Per-epoch time of `softmax train`, `compare` and `sweep`, quiet and beside one busy process, by thread setting."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

# Each command as a user runs it, --json, so the per-epoch seconds can be read from its output:
# train's history; compare's scratch and concise epochs; the sweep's epochs (one group, every
# configuration trained together, so any configuration's history has the group's seconds).
COMMANDS = {
    "train": ["train"],
    "compare": ["compare"],
    "sweep": ["sweep", "--lr", "0.03,0.1,0.3"],
}

# The thread settings compared, as the environment each process gets. "default" leaves them to
# the tool (one intra-op thread); the others give torch every core, with OpenMP's own wait
# (libgomp spins a while before sleeping), always spinning, sleeping at once, or spinning for
# GOMP_SPINCOUNT rounds only. The first four run unless --settings says otherwise.
CORES = str(os.cpu_count() or 1)
SETTINGS = {
    "default": {},
    "all-cores": {"OMP_NUM_THREADS": CORES},
    "all-cores-active": {"OMP_NUM_THREADS": CORES, "OMP_WAIT_POLICY": "ACTIVE"},
    "all-cores-passive": {"OMP_NUM_THREADS": CORES, "OMP_WAIT_POLICY": "PASSIVE"},
    **{f"spin-{n}": {"OMP_NUM_THREADS": CORES, "GOMP_SPINCOUNT": str(int(float(n)))} for n in ("1e3", "1e4", "1e5")},
}
DEFAULT_SETTINGS = "default,all-cores,all-cores-active,all-cores-passive"
CHOSEN_BY_US = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def epoch_seconds(name: str, payload: dict) -> list[float]:
    """The seconds of each epoch, from one command's --json object."""
    if name == "train":
        return [entry["seconds"] for entry in payload["history"]]
    if name == "compare":
        return [row[side]["seconds"] for row in payload["epochs"] for side in ("scratch", "concise")]
    return [entry["seconds"] for entry in payload["configs"][0]["history"]]


def epochs(name: str, data_dir: str | None, n: int, setting: str) -> list[float]:
    """One `softmax NAME --json` process; the seconds of each of its epochs."""
    with tempfile.TemporaryDirectory() as runs:
        command = [sys.executable, "-m", "softmax_cli", *COMMANDS[name], "--json", "--epochs", str(n)]
        command += ["--runs-dir", runs, *(["--data-dir", data_dir] if data_dir else [])]
        env = {key: value for key, value in os.environ.items() if key not in CHOSEN_BY_US}
        env.update(SETTINGS[setting])
        out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
        return epoch_seconds(name, json.loads(out))


def describe(seconds: list[float]) -> str:
    median = statistics.median(seconds)
    return f"median {median:.3f} s, max/median {max(seconds) / median:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", help="the folder of the four .gz files (default: the tool's own)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="processes per command and setting, alternated")
    parser.add_argument("--commands", default="train,compare,sweep", help="comma-separated: train, compare, sweep")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help=f"comma-separated, of: {', '.join(SETTINGS)}")
    args = parser.parse_args()
    settings = args.settings.split(",")
    unknown = [name for name in settings if name not in SETTINGS]
    if unknown:
        parser.error(f"unknown --settings {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
    for name in args.commands.split(","):
        # Quiet first, then loaded; within each, the settings take turns so that a drift in the
        # machine's speed falls on all of them alike.
        quiet = {setting: [] for setting in settings}
        loaded = {setting: [] for setting in settings}
        for times in (quiet, loaded):
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if times is loaded else None
            try:
                for _ in range(args.rounds):
                    for setting in settings:
                        times[setting] += epochs(name, args.data_dir, args.epochs, setting)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
        fastest_quiet = min(statistics.median(seconds) for seconds in quiet.values())
        for setting in settings:
            ratio = statistics.median(loaded[setting]) / statistics.median(quiet[setting])
            versus = statistics.median(quiet[setting]) / fastest_quiet
            print(f"{name}, {setting}: quiet {describe(quiet[setting])} ({versus:.2f}x the fastest quiet); "
                  f"busy {describe(loaded[setting])}; busy/quiet {ratio:.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
