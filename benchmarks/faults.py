"""SIGKILL `softmax train` at random moments: its checkpoint loads, `softmax runs` says killed, resuming is bitwise."""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOFTMAX = [sys.executable, "-m", "softmax_cli"]


class Failed(Exception):
    """One check did not hold; str() says which."""


def run(command: list[str], folder: Path, name: str, timeout: float = 1800) -> tuple[int, str, str]:
    """A softmax command to its end, stdout and stderr through files in folder; (exit status, stdout, stderr)."""
    out, err = folder / f"{name}.out", folder / f"{name}.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        code = subprocess.run(command, stdout=stdout, stderr=stderr, env=child_env(), timeout=timeout).returncode
    return code, out.read_text(), err.read_text()


def child_env() -> dict[str, str]:
    # One thread unless told otherwise: light on a shared machine, and the same arithmetic in every run.
    return {"OMP_NUM_THREADS": "1", **os.environ, "COLUMNS": "200"}


def train_command(args, runs_dir: Path) -> list[str]:
    return [
        *SOFTMAX, "train", "--data-dir", str(args.data_dir), "--runs-dir", str(runs_dir), "--device", "cpu",
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--json",
    ]  # fmt: skip


def tensors(checkpoint: Path) -> dict[str, object]:
    """Every tensor of a checkpoint, by its place in the dict ("weight", "optimizer_state.state.0...")."""
    import torch

    found: dict[str, object] = {}

    def walk(value, where: str) -> None:
        if isinstance(value, torch.Tensor):
            found[where] = value
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}" if where else str(key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")

    walk(load(checkpoint), "")
    return found


def load(checkpoint: Path) -> dict:
    import torch

    return torch.load(checkpoint, weights_only=True, map_location="cpu")


def same_tensors(got: Path, straight: dict[str, object]) -> None:
    import torch

    mine = tensors(got)
    if mine.keys() != straight.keys():
        raise Failed(f"{got} holds tensors {sorted(mine)}, the straight run's {sorted(straight)}")
    differ = [key for key in mine if not torch.equal(mine[key], straight[key])]
    if differ:
        raise Failed(f"{got} differs from the straight run's checkpoint in {', '.join(differ)}")


def runs_json(runs_dir: Path, folder: Path) -> list[dict]:
    code, out, err = run([*SOFTMAX, "runs", "--runs-dir", str(runs_dir), "--json"], folder, "runs")
    if code != 0:
        raise Failed(f"softmax runs exited {code}: {err.strip()}")
    return json.loads(out)["runs"]


def start_train(args, folder: Path) -> tuple[subprocess.Popen, Path]:
    """`softmax train` started in folder, its output to files there; (the process, its runs folder)."""
    runs_dir = folder / "runs"
    with open(folder / "train.out", "w") as stdout, open(folder / "train.err", "w") as stderr:
        process = subprocess.Popen(train_command(args, runs_dir), stdout=stdout, stderr=stderr, env=child_env())
    return process, runs_dir


def wait_for_run_folder(process: subprocess.Popen, runs_dir: Path, timeout: float = 600) -> bool:
    """Wait until the run's folder appears (training is about to start); False if the process ended first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if any(runs_dir.glob("*/*")):
            return True
        time.sleep(0.01)
    return False


def check_kill(args, number: int, moment: float, startup: float, straight: dict[str, object], work: Path) -> str:
    """Train, kill it `moment` seconds after its run folder appears (before, if negative: `startup` is when
    the straight run's did), check what is left and resume it; a line saying what happened."""
    folder = work / f"kill-{number}"
    folder.mkdir()
    process, runs_dir = start_train(args, folder)
    if moment >= 0:
        wait_for_run_folder(process, runs_dir)
    try:
        process.wait(timeout=max(0.0, moment if moment >= 0 else startup + moment))
        ended = f"ended by itself (exit {process.returncode}) before the kill"
        if process.returncode != 0:
            raise Failed(f"train {ended}: {(folder / 'train.err').read_text().strip()[-500:]}")
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        ended = "killed"
    listed = runs_json(runs_dir, folder)
    running = [run for run in listed if run["status"] == "running"]
    if running:
        raise Failed(f"softmax runs still says running: {running[0]['path']}")
    saved = [run for run in listed if run["checkpoint"]]
    if not saved:
        done = [run["epochs_done"] for run in listed]
        if any(epochs not in (None, 0) for epochs in done):
            raise Failed(f"no checkpoint, yet softmax runs lists epochs {done}")
        return f"{ended} before epoch 1 was saved: no checkpoint, listed as {[run['status'] for run in listed]}"
    if len(saved) != 1:
        raise Failed(f"{len(saved)} runs with a checkpoint after one training")
    record = saved[0]
    checkpoint = Path(record["checkpoint"])
    epoch = load(checkpoint)["epoch"]
    # Killed after its last summary was written (while closing its logs), a run has finished.
    expected = {"finished"} if process.returncode == 0 else {"killed"}
    if process.returncode != 0 and epoch == args.epochs:
        expected.add("finished")
    if record["status"] not in expected:
        raise Failed(f"softmax runs says {record['status']}, not {' or '.join(sorted(expected))}")
    lag = ""
    if record["epochs_done"] == epoch - 1:
        lag = " (summary one epoch behind the checkpoint: killed between the two writes)"
    elif record["epochs_done"] != epoch:
        raise Failed(f"softmax runs says {record['epochs_done']} epochs done, the checkpoint holds {epoch}")
    code, out, err = run(
        [*SOFTMAX, "eval", "--runs-dir", str(runs_dir), "--data-dir", str(args.data_dir), "--device", "cpu", "--json"],
        folder,
        "eval",
    )
    if code != 0 or json.loads(out)["checkpoint"] != str(checkpoint):
        raise Failed(f"softmax eval with no argument exited {code}: {err.strip()[-500:]}")
    line = f"{ended}; epoch {epoch} saved, listed as {record['status']} with {record['epochs_done']} done{lag}"
    final = checkpoint
    if record["resume_command"] and epoch < args.epochs:
        command = shlex.split(record["resume_command"])
        if command[:3] != ["softmax", "train", "--resume"]:
            raise Failed(f"the resume command is {record['resume_command']!r}")
        code, out, err = run([*SOFTMAX, *command[1:], "--data-dir", str(args.data_dir), "--json"], folder, "resume")
        if code != 0:
            raise Failed(f"{record['resume_command']} exited {code}: {err.strip()[-500:]}")
        final = Path(json.loads(out)["checkpoint"])
        line += f"; resumed to epoch {args.epochs}"
    elif epoch != args.epochs:
        raise Failed(f"no resume command, yet the checkpoint holds epoch {epoch} of {args.epochs}")
    same_tensors(final, straight)
    return line + "; weights equal the straight run's"


def check_full_disk(args, work: Path) -> bool:
    """A sweep on a tmpfs too small for all it writes: finished groups kept, warnings naming the file."""
    if os.geteuid() != 0:
        print("full disk: skipped, mounting a tmpfs needs root")
        return True
    sweep = [*SOFTMAX, "sweep", "--data-dir", str(args.data_dir), "--device", "cpu", "--epochs", "2"]
    sweep += ["--lr", "0.05,0.1", "--seed", "1,2,3", "--batch-size", str(args.batch_size), "--json"]
    roomy = work / "sweep-roomy"
    roomy.mkdir()
    code, _, err = run([*sweep, "--runs-dir", str(roomy / "runs")], roomy, "sweep")
    if code != 0:
        print(f"full disk: FAILED, the sweep fails even with room: {err.strip()[-500:]}")
        return False
    needed = sum(path.stat().st_size for path in (roomy / "runs").rglob("*") if path.is_file())
    disk = work / "sweep-full"
    disk.mkdir()
    size = max(needed // 2, 16 * 1024)  # room for about half of it: the first group, not all
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        print(f"full disk: skipped, mount -t tmpfs failed: {mounted.stderr.strip() or mounted.returncode}")
        return True
    try:
        logs = work / "sweep-full-logs"
        logs.mkdir()
        code, out, err = run([*sweep, "--runs-dir", str(disk / "runs")], logs, "sweep")
        return judge_full_disk(code, out, err, disk, needed, size)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def judge_full_disk(code: int, out: str, err: str, disk: Path, needed: int, size: int) -> bool:
    where = f"a {size:,}-byte tmpfs for a sweep that writes {needed:,} bytes"
    problems = []
    if "Traceback" in err:
        problems.append("a traceback")
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    if not any(str(disk) in line for line in warnings):
        problems.append("no warning: line naming a file on the full disk")
    try:
        payload = json.loads(out)
        trained = payload.get("trained", 0)
    except ValueError:
        payload, trained = None, 0
    if not trained:
        problems.append(f"no finished group kept (exit {code})")
    if problems:
        last = err.strip().splitlines()[-1:] or ["(no stderr)"]
        print(f"full disk: FAILED on {where}: {'; '.join(problems)}; last line: {last[0]}")
        return False
    print(f"full disk: ok on {where}: exit {code}, {trained} configurations kept, {len(warnings)} warning(s)")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", required=True, type=Path, help="a data folder softmax train reads")
    parser.add_argument("--kills", type=int, default=20, help="how many runs to kill (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments and the training (default 0)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of each run (default 4)")
    parser.add_argument("--batch-size", type=int, default=256, help="(default 256)")
    parser.add_argument("--full-disk", action="store_true", help="also run a sweep on a tmpfs too small for it")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="softmax-faults-"))
    try:
        straight_dir = work / "straight"
        straight_dir.mkdir()
        started = time.monotonic()
        process, runs_dir = start_train(args, straight_dir)
        wait_for_run_folder(process, runs_dir)
        startup = time.monotonic() - started
        process.wait()
        span = time.monotonic() - started - startup
        out, err = (straight_dir / "train.out").read_text(), (straight_dir / "train.err").read_text()
        if process.returncode != 0:
            print(f"the straight run failed (exit {process.returncode}): {err.strip()[-500:]}")
            return 1
        straight = tensors(Path(json.loads(out)["checkpoint"]))
        # Most moments fall in the training, the rest in the last second of starting up (reading the data).
        print(
            f"straight run: {args.epochs} epochs; its run folder appeared after {startup:.1f} s, it ended "
            f"{span:.1f} s later; killing {args.kills} runs from 1 s before their folder appears to {span:.1f} s after"
        )
        moments = random.Random(args.seed)
        failures = 0
        for number in range(1, args.kills + 1):
            moment = moments.uniform(-1.0, span)
            when = f"kill {number}/{args.kills}, {moment:+.2f} s from its run folder"
            try:
                print(f"{when}: ok, {check_kill(args, number, moment, startup, straight, work)}", flush=True)
            except (Failed, subprocess.TimeoutExpired, ValueError, KeyError, OSError) as exc:
                failures += 1
                print(f"{when}: FAILED, {exc}", flush=True)
        if args.full_disk and not check_full_disk(args, work):
            failures += 1
        print(f"{failures} failure(s)" if failures else "all checks passed")
        return 1 if failures else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
