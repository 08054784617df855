"""`softmax sweep` under faults: a disk that fills up after the first group, a stop while the results
are written, a kill after a group ended, and options that must be refused before any training.

Faults are real where they can be without root: a file size limit (RLIMIT_FSIZE, with SIGXFSZ ignored
so that a write past it fails with EFBIG as on a full disk) on a `python -m softmax_cli sweep`
subprocess, a real SIGINT delivered to the process while it writes, a real SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from softmax_cli.runs import checkpoint as ckpt
from softmax_cli.runs import folders as runs
from softmax_cli.sweep.grid import build_configs, estimate_memory, group_configs
from tests import helpers
from tests.test_faults_files import POSIX_ONLY, one_error, wait_for
from tests.test_sweep import run_sweep_cli


def start_sweep(data_dir: Path, folder: Path, *options, file_size_limit: int | None = None) -> subprocess.Popen:
    """`python -m softmax_cli sweep` in its own process on the CPU, one thread, its runs under folder/runs."""
    command = [sys.executable, "-m", "softmax_cli", "sweep", "--data-dir", data_dir, "--device", "cpu"]
    command += ["--runs-dir", folder / "runs", *options]

    def prepare() -> None:
        helpers.default_stop_signals()
        if file_size_limit is None:
            return
        # Ignored, SIGXFSZ no longer kills the process: a write past the limit fails with EFBIG instead.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.Popen(
        [str(part) for part in command],
        cwd=helpers.PROJECT_ROOT,
        env={**os.environ, "COLUMNS": "80"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=prepare,
    )


def sweep_folder(folder: Path) -> Path:
    found = list((folder / "runs" / "sweep").glob("*")) if (folder / "runs" / "sweep").is_dir() else []
    return found[0] if found else folder / "no-sweep-yet"


def stored(run_dir: Path) -> dict | None:
    """The sweep.json on disk, or None while there is none."""
    try:
        return json.loads((run_dir / "sweep.json").read_text())
    except (OSError, ValueError):
        return None


def leftovers(folder: Path) -> list[str]:
    return [str(path) for path in folder.rglob("*") if path.name.endswith((".tmp", ".lock"))]


# --------------------------------------------------------------------------- 1. a disk that fills up


@POSIX_ONLY
def test_a_full_disk_after_the_first_group_loses_nothing_of_it(synthetic_data_dir, tmp_path):
    """Two groups of 8 configurations, 10 epochs: sweep.json holds about 31 kB after the first group and
    62 kB after the second; the checkpoint about 40 kB. With files limited to 48 kB, the first group's
    files all fit and the second group's sweep.json cannot: a warning names it, the sweep ends with its
    whole table, one error line says what is missing, and everything of the first group stays on disk."""
    lrs = "0.01,0.02,0.03,0.05,0.1,0.2,0.3,0.5"
    process = start_sweep(synthetic_data_dir, tmp_path, "--lr", lrs, "--seed", "1,2", "--epochs", "10", "--json",
                          file_size_limit=48 * 1024)  # fmt: skip
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    assert "Traceback" not in err and "Exception" not in err and "stdout" not in err
    run_dir = sweep_folder(tmp_path)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "sweep.json" in warnings[0] and "File too large" in warnings[0], err
    assert err.strip().splitlines()[-1].startswith("error: the sweep finished, but these results could not be")
    assert "sweep.json" in helpers.flat(err.strip().splitlines()[-1])

    payload = json.loads(out)  # the result in full: every configuration of both groups
    assert payload["trained"] == 16 and not payload["interrupted"]
    kept = stored(run_dir)
    assert kept["trained"] == 8 and {c["hparams"]["seed"] for c in kept["configs"]} == {1}
    full = {c["tag"]: c for c in payload["configs"]}
    for config in kept["configs"]:  # nothing of group 1 lost: every epoch of every configuration
        assert config["history"] == full[config["tag"]]["history"]
        events = helpers.tensorboard_events(Path(config["log_dir"]))
        assert [event.step for event in events.Scalars("accuracy/val")] == list(range(1, 11))
    checkpoint = ckpt.load_checkpoint(run_dir / "checkpoint.pt")
    assert checkpoint["hparams"] == payload["best"]["hparams"] and checkpoint["epoch"] == 10
    assert runs.read_summary(run_dir)["status"] == "finished"
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- 2. a stop while writing


@POSIX_ONLY
def test_ctrl_c_while_the_results_are_written_waits_for_them(synthetic_data_dir, tmp_path, monkeypatch):
    """A real SIGINT arrives while the figure is being put in place, in the middle of the last writes:
    the stop waits for them, so the checkpoint, summary, figure and sweep.json are all whole; exit 130."""
    from PIL import Image

    from softmax_cli import atomic

    real_replace = os.replace

    def replace_with_a_stop_meanwhile(source, target, *args, **kwargs):
        if Path(target).name == "val_acc_vs_lr.png":
            os.kill(os.getpid(), signal.SIGINT)  # handled at once: the stop lands inside the write
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "replace", replace_with_a_stop_meanwhile)
    result = run_sweep_cli(synthetic_data_dir, tmp_path, "--lr", "0.05,0.2", "--seed", "1,2", "--epochs", "2", "--json")
    monkeypatch.undo()
    helpers.assert_clean(result)
    assert result.exit_code == 130, result.output
    payload = helpers.only_json(result)
    run_dir = Path(payload["run_dir"])
    assert payload["trained"] == 4 and stored(run_dir) == payload
    assert ckpt.load_checkpoint(Path(payload["checkpoint"]))["hparams"] == payload["best"]["hparams"]
    summary = runs.read_summary(run_dir)
    assert summary["status"] == "finished" and summary["hparams"] == payload["best"]["hparams"]
    with Image.open(payload["plot"]) as image:
        assert image.format == "PNG"
    assert "Interrupted" in result.stderr
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- 3. a kill after a group


@POSIX_ONLY
def test_a_killed_sweep_keeps_its_finished_groups(synthetic_data_dir, tmp_path):
    process = start_sweep(synthetic_data_dir, tmp_path, "--lr", "0.05,0.2", "--seed", ",".join(map(str, range(200))),
                          "--epochs", "3")  # fmt: skip
    wait_for(lambda: (stored(sweep_folder(tmp_path)) or {}).get("trained", 0) >= 2, process, seconds=240)
    process.kill()
    process.communicate(timeout=60)
    run_dir = sweep_folder(tmp_path)
    kept = stored(run_dir)
    assert kept["trained"] >= 2 and kept["trained"] % 2 == 0 and kept["trained"] < 400
    assert all(len(c["history"]) == 3 for c in kept["configs"])
    assert all(Path(c["log_dir"]).is_dir() for c in kept["configs"])
    checkpoint = ckpt.load_checkpoint(run_dir / "checkpoint.pt")
    assert checkpoint["epoch"] == 3
    summary = runs.read_summary(run_dir)
    assert summary["status"] == "running" and summary["hparams"] == checkpoint["hparams"]


# --------------------------------------------------------------------------- 4. options refused before training


@pytest.mark.parametrize(
    "options, says",
    [
        (("--plot", "p.txt"), "name a .png"),
        (("--plot", "figure"), "name a .png"),
        (("--epochs", "9223372036854775808"), "must be in [1, 9223372036854775807]"),
        (("--runs-dir", "NOTES"), "exists and is not a folder"),
        (("--lr", "٠.١"), "is not a number"),
        (("--seed", "١,2"), "is not a whole number"),
    ],
    ids=["plot-suffix", "plot-no-suffix", "epochs-over-int64", "runs-dir-a-file", "lr-arabic-digits", "seed-digits"],
)
def test_options_are_refused_before_any_data_is_read(tmp_path, options, says):
    """A usage error (exit 2) before the data folder is even looked at: it is not created, nothing downloaded."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    options = tuple(str(notes) if option == "NOTES" else option for option in options)
    result = run_sweep_cli(tmp_path / "no-data", tmp_path, *options)
    assert result.exit_code == 2
    one_error(result, says)
    assert not (tmp_path / "no-data").exists() and not (tmp_path / "runs").exists()
    assert notes.read_text() == "mine\n"


@pytest.mark.parametrize("val_split", ["1e-9", "0.99999999"])
def test_a_val_split_that_leaves_no_example_is_a_usage_error(synthetic_data_dir, tmp_path, val_split):
    result = run_sweep_cli(synthetic_data_dir, tmp_path, "--lr", "0.1", "--val-split", val_split)
    assert result.exit_code == 2
    one_error(result, "--val-split", "leaves no train or no validation examples")
    assert not (tmp_path / "runs").exists()


def test_train_and_sweep_read_numbers_alike(synthetic_data_dir, tmp_path):
    """One parser: what `train --lr` refuses, a sweep list refuses with the same words."""
    for command in (helpers.run_train, run_sweep_cli):
        result = command(synthetic_data_dir, tmp_path, "--lr", "٠.١")
        assert result.exit_code == 2
        one_error(result, "'٠.١' is not a number")


def test_a_batch_larger_than_the_train_split_is_estimated_at_the_split(synthetic_data_dir, tmp_path):
    """A batch holds at most the 54,000 train images --val-split 0.1 leaves: batch 10**9 needs no more
    memory than batch 54,000, and trains (one batch per epoch)."""
    huge, split = (build_configs({"batch_size": (size,)}, {}, None) for size in (10**9, 54_000))
    assert (
        estimate_memory(huge, group_configs(huge), None).needed
        == estimate_memory(split, group_configs(split), None).needed
        < 2 * 1024**3
    )
    result = run_sweep_cli(synthetic_data_dir, tmp_path, "--batch-size", "1000000000", "--epochs", "1", "--json")
    helpers.assert_clean(result)
    assert result.exit_code == 0, result.output
    assert helpers.only_json(result)["best"]["hparams"]["batch_size"] == 10**9
