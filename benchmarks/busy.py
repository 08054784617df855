"""Per-epoch time of `softmax train`, quiet and beside one busy process, for each OpenMP wait policy."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def epochs(data_dir: str | None, n: int, policy: str) -> list[float]:
    """One `softmax train --json` process; the seconds of each epoch from its history."""
    with tempfile.TemporaryDirectory() as runs:
        command = [sys.executable, "-m", "softmax_cli", "train", "--json", "--epochs", str(n), "--runs-dir", runs]
        command += ["--data-dir", data_dir] if data_dir else []
        env = {**os.environ, "OMP_WAIT_POLICY": policy}
        out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
        return [entry["seconds"] for entry in json.loads(out)["history"]]


def describe(seconds: list[float]) -> str:
    median = statistics.median(seconds)
    return f"median {median:.3f} s, max/median {max(seconds) / median:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", help="the folder of the four .gz files (default: the tool's own)")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    for policy in ("PASSIVE", "ACTIVE"):
        quiet = epochs(args.data_dir, args.epochs, policy)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            loaded = epochs(args.data_dir, args.epochs, policy)
        finally:
            busy.kill()
        ratio = statistics.median(loaded) / statistics.median(quiet)
        print(f"OMP_WAIT_POLICY={policy}: quiet {describe(quiet)}; busy {describe(loaded)}; busy/quiet {ratio:.2f}")


if __name__ == "__main__":
    main()
