"""Per-epoch time of `softmax train`, `compare` and `sweep`, quiet and beside one busy process, by wait policy."""

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


def epoch_seconds(name: str, payload: dict) -> list[float]:
    """The seconds of each epoch, from one command's --json object."""
    if name == "train":
        return [entry["seconds"] for entry in payload["history"]]
    if name == "compare":
        return [row[side]["seconds"] for row in payload["epochs"] for side in ("scratch", "concise")]
    return [entry["seconds"] for entry in payload["configs"][0]["history"]]


def epochs(name: str, data_dir: str | None, n: int, policy: str | None) -> list[float]:
    """One `softmax NAME --json` process; the seconds of each of its epochs."""
    with tempfile.TemporaryDirectory() as runs:
        command = [sys.executable, "-m", "softmax_cli", *COMMANDS[name], "--json", "--epochs", str(n)]
        command += ["--runs-dir", runs, *(["--data-dir", data_dir] if data_dir else [])]
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)
        if policy is not None:
            env["OMP_WAIT_POLICY"] = policy
        out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
        return epoch_seconds(name, json.loads(out))


def describe(seconds: list[float]) -> str:
    median = statistics.median(seconds)
    return f"median {median:.3f} s, max/median {max(seconds) / median:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", help="the folder of the four .gz files (default: the tool's own)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--commands", default="train,compare,sweep", help="comma-separated: train, compare, sweep")
    parser.add_argument(
        "--policies",
        default="default,ACTIVE",
        help="comma-separated OMP_WAIT_POLICY values; 'default' leaves it to the tool (which sets PASSIVE)",
    )
    args = parser.parse_args()
    for name in args.commands.split(","):
        for policy in args.policies.split(","):
            chosen = None if policy == "default" else policy
            quiet = epochs(name, args.data_dir, args.epochs, chosen)
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                loaded = epochs(name, args.data_dir, args.epochs, chosen)
            finally:
                busy.kill()
            ratio = statistics.median(loaded) / statistics.median(quiet)
            print(f"{name}, OMP_WAIT_POLICY={policy}: quiet {describe(quiet)}; busy {describe(loaded)}; "
                  f"busy/quiet {ratio:.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
