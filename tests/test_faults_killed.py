"""A run killed outright (SIGKILL): `softmax runs` calls it killed, not running, and says how to continue it.

The listing tells by the run's lock on its checkpoint (softmax_cli.files.probe_lock): a summary that
says running while no process holds that lock belongs to a run that is gone.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from softmax_cli import files
from softmax_cli.runs import checkpoint as ckpt
from softmax_cli.runs import folders as runs
from tests import helpers
from tests.helpers import assert_clean, invoke, only_json
from tests.test_faults_files import POSIX_ONLY, saved_epoch

pytestmark = POSIX_ONLY


def start_training(data_dir: Path, folder: Path, *options) -> subprocess.Popen:
    """`python -m softmax_cli train` in its own process, its output to files in folder (read once it ends)."""
    command = [sys.executable, "-m", "softmax_cli", "train", "--data-dir", data_dir, "--device", "cpu"]
    command += ["--runs-dir", folder / "runs", "--batch-size", "32", *options]
    env = {**os.environ, "COLUMNS": "80"}
    with open(folder / "train.out", "w") as out, open(folder / "train.err", "w") as err:
        return subprocess.Popen(
            [str(part) for part in command], cwd=helpers.PROJECT_ROOT, env=env, stdout=out, stderr=err
        )


def wait_for(condition, process: subprocess.Popen, folder: Path, seconds: float = 300) -> None:
    """Poll condition() until it holds; fail (killing the process) if the process ends or time runs out first."""
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=60)
            pytest.fail(
                f"condition never met (exit {process.returncode}): {(folder / 'train.err').read_text()[-2000:]}"
            )
        time.sleep(0.05)


def killed_after_an_epoch(data_dir: Path, folder: Path) -> Path:
    """A run killed with SIGKILL once its first checkpoint is saved; its run folder."""
    process = start_training(data_dir, folder, "--epochs", "100000")
    checkpoints = lambda: list((folder / "runs").glob("scratch/*/checkpoint.pt"))  # noqa: E731
    wait_for(lambda: checkpoints() and saved_epoch(checkpoints()[0]) >= 1, process, folder)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    return checkpoints()[0].parent


@pytest.fixture(scope="module")
def killed_run(synthetic_data_dir, tmp_path_factory) -> Path:
    """One killed run, once per module: its run folder (tests copy it before changing anything)."""
    return killed_after_an_epoch(synthetic_data_dir, tmp_path_factory.mktemp("killed"))


def listed(runs_dir: Path) -> list[dict]:
    result = invoke("runs", "--runs-dir", runs_dir, "--json")
    assert_clean(result)
    assert result.exit_code == 0, result.output
    return only_json(result)["runs"]


def test_a_killed_run_is_listed_as_killed_with_its_epochs_and_the_resume_command(killed_run):
    runs_dir = killed_run.parent.parent
    assert runs.read_summary(killed_run)["status"] == "running"  # what the kill left on disk
    (record,) = listed(runs_dir)
    epoch = ckpt.load_checkpoint(killed_run / runs.CHECKPOINT_NAME)["epoch"]
    assert record["status"] == "killed" and record["epochs_done"] >= 1
    assert record["epochs_done"] in (epoch, epoch - 1)  # killed between the checkpoint and the summary: one behind
    assert record["final"]["epoch"] == record["epochs_done"]
    command = shlex.split(record["resume_command"])
    assert command == [
        "softmax", "train", "--resume", str(killed_run / runs.CHECKPOINT_NAME), "--epochs", "100000",
        "--runs-dir", str(runs_dir), "--device", "cpu",
    ]  # fmt: skip

    human = invoke("runs", "--runs-dir", runs_dir)
    assert human.exit_code == 0 and human.stderr == ""
    row, path, resume = human.stdout.splitlines()[1:]
    assert "killed" in row.split() and f"{record['epochs_done']}/100000" in row.split()
    assert path.strip() == str(killed_run)
    assert resume.strip() == f"continue with: {record['resume_command']}"
    assert runs.read_summary(killed_run)["status"] == "running"  # listing never rewrites it


def test_eval_and_resume_take_a_killed_run(killed_run, synthetic_data_dir, tmp_path):
    runs_dir = tmp_path / "runs"
    Path(runs_dir / "scratch").mkdir(parents=True)
    folder = runs_dir / "scratch" / killed_run.name
    shutil.copytree(killed_run, folder)
    evaluated = invoke("eval", "--runs-dir", runs_dir, "--data-dir", synthetic_data_dir, "--device", "cpu", "--json")
    assert_clean(evaluated)
    assert only_json(evaluated)["checkpoint"] == str(folder / runs.CHECKPOINT_NAME)
    assert "killed" in helpers.flat(evaluated.stderr)

    (record,) = listed(runs_dir)
    done = ckpt.load_checkpoint(folder / runs.CHECKPOINT_NAME)["epoch"]
    command = shlex.split(record["resume_command"])
    command[command.index("--epochs") + 1] = str(done + 1)
    resumed = invoke(*command[1:], "--data-dir", synthetic_data_dir, "--json")
    assert_clean(resumed)
    assert resumed.exit_code == 0, resumed.output
    assert only_json(resumed)["epochs"] == done + 1
    after = {run["path"]: run for run in listed(runs_dir)}
    assert after[str(folder)]["status"] == "killed" and after[str(folder)]["resume_command"] is None  # continued
    assert runs.read_summary(Path(only_json(resumed)["log_dir"]))["status"] == "finished"


def test_a_run_killed_before_its_first_epoch_is_killed_with_no_epoch(tmp_path):
    """What SIGKILL during the first epoch leaves: the run folder, its lock file, no summary, no checkpoint."""
    folder = tmp_path / "runs" / "scratch" / "20250101-120000-book-lr0.1-bs256-seed326"
    folder.mkdir(parents=True)
    files.lock_path_for(folder / runs.CHECKPOINT_NAME).write_text("softmax-cli lock: softmax train, pid 1\n")
    (record,) = listed(tmp_path / "runs")
    assert (record["status"], record["epochs_done"], record["checkpoint"]) == ("killed", 0, None)
    assert record["resume_command"] is None
    with files.exclusive_lock(folder / runs.CHECKPOINT_NAME, f"softmax train, pid {os.getpid()}"):
        (record,) = listed(tmp_path / "runs")  # a live run in its first epoch
        assert record["status"] == "running"


def test_a_lock_held_by_another_process_than_the_summarys_does_not_keep_a_run_alive(killed_run, tmp_path):
    """--checkpoint shared by a killed run and a later live one: the summary's pid tells them apart."""
    folder = tmp_path / "runs" / "scratch" / killed_run.name
    shutil.copytree(killed_run, folder)
    summary = json.loads((folder / runs.SUMMARY_NAME).read_text())
    summary["checkpoint"] = str(folder / runs.CHECKPOINT_NAME)
    for pid, status in ((os.getpid() + 1, "killed"), (os.getpid(), "running")):
        summary["pid"] = pid
        runs.write_summary(folder, summary)
        with files.exclusive_lock(folder / runs.CHECKPOINT_NAME, f"softmax train, pid {os.getpid()}"):
            (record,) = listed(tmp_path / "runs")
        assert record["status"] == status


@pytest.mark.benchmarks
def test_the_fault_script_passes_on_synthetic_data(synthetic_data_dir, tmp_path):
    command = [sys.executable, "benchmarks/faults.py", "--kills", "2", "--epochs", "5", "--batch-size", "32"]
    command += ["--data-dir", str(synthetic_data_dir)]
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        done = subprocess.run(command, cwd=helpers.PROJECT_ROOT, stdout=out, stderr=err, timeout=1200)
    report = (tmp_path / "out").read_text()
    assert done.returncode == 0, report + (tmp_path / "err").read_text()
    assert report.count("kill ") == 2 and "FAILED" not in report and report.endswith("all checks passed\n")
