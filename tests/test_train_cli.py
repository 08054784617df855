"""`softmax train` end to end through the real CLI: JSON, TensorBoard, bad options, Ctrl-C, light --help."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import invoke, run_train


def test_train_json_is_the_only_stdout_and_matches_the_run(synthetic_data_dir, tmp_path):
    result = run_train(
        synthetic_data_dir, tmp_path, "--impl", "concise", "--epochs", "2", "--batch-size", "64", "--json"
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) >= {"impl", "device", "epochs", "history", "checkpoint", "log_dir", "hparams"}
    assert payload["impl"] == "concise" and payload["epochs"] == 2 and payload["device"] == "cpu"
    assert [entry["epoch"] for entry in payload["history"]] == [1, 2]
    for entry in payload["history"]:
        assert set(entry) >= {"epoch", "train_loss", "train_acc", "test_acc", "seconds"}
    log_dir = Path(payload["log_dir"])
    assert log_dir.parent == tmp_path / "runs" / "concise"
    assert Path(payload["checkpoint"]) == log_dir / "checkpoint.pt"
    assert payload["hparams"]["lr"] == 0.1 and payload["hparams"]["seed"] == 326
    # The JSON object is the whole result: no human table, no hints beside it.
    assert "train loss" not in result.stderr and "tensorboard --logdir" not in result.stderr


def test_tensorboard_run_holds_the_tags_and_runs_never_mix(synthetic_data_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for _ in range(2):
        assert run_train(synthetic_data_dir, tmp_path, "--epochs", "2", "--batch-size", "64").exit_code == 0
    runs = sorted((tmp_path / "runs" / "scratch").iterdir())
    assert len(runs) == 2  # two runs, two folders: nothing overwritten or mixed
    events = EventAccumulator(str(runs[0]), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss/train", "accuracy/train", "accuracy/test"} <= set(tags["scalars"])
    assert [event.step for event in events.Scalars("accuracy/test")] == [1, 2]
    assert "weights/Ankle boot" in tags["images"] and "confusion_matrix/text_summary" in tags["tensors"]
    assert any(path.name.startswith("events.out.tfevents") for path in runs[1].iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "--epochs"),
        (["--lr", "0"], "--lr"),
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "inf"], "--lr"),
        (["--batch-size", "0"], "--batch-size"),
        (["--workers", "-1"], "--workers"),
        (["--workers", "10000"], "--workers"),  # forked without bound before
        (["--impl", "keras"], "--impl"),
        (["--loader", "ffcv"], "--loader"),
        (["--device", "tpu"], "--device"),
        (["--device", "cuda:99"], "--device"),
        (["--impl", "concise", "--naive-softmax"], "--naive-softmax"),
        (["--val-split", "1.5"], "--val-split"),
    ],
)
def test_bad_options_are_usage_errors(args, message, synthetic_data_dir, tmp_path):
    result = run_train(synthetic_data_dir, tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_workers_with_the_memory_loader_is_noted_not_an_error(synthetic_data_dir, tmp_path):
    result = run_train(synthetic_data_dir, tmp_path, "--epochs", "1", "--workers", "2")
    assert result.exit_code == 0 and "--workers only applies" in result.stderr


def test_dataloader_workers_run_from_the_console_script(synthetic_data_dir, tmp_path):
    """The seed article's DataLoader workers crashed outside a notebook; ours start from `softmax`."""
    script = Path(sys.executable).with_name("softmax")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "softmax_cli"]
    completed = subprocess.run(
        [
            *command,
            "train",
            "--loader",
            "dataloader",
            "--workers",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--data-dir",
            str(synthetic_data_dir),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--device",
            "cpu",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["hparams"]["loader"] == "dataloader"


def test_help_imports_nothing_heavy():
    """Importing the CLI and asking every command for --help stays instant: no torch, torchvision
    or tensorboard. In a fresh interpreter, which gets the app through helpers.cli_app's own source."""
    code = textwrap.dedent(inspect.getsource(helpers.cli_app)) + textwrap.dedent("""
        import sys
        from typer.main import get_command
        from typer.testing import CliRunner

        app = cli_app()
        commands = sorted(get_command(app).commands)
        assert {"train", "eval", "download", "bench"} <= set(commands), commands
        for args in [["--help"], *([name, "--help"] for name in commands)]:
            assert CliRunner().invoke(app, args).exit_code == 0, args
        heavy = [m for m in ("torch", "torchvision", "tensorboard") if m in sys.modules]
        assert not heavy, heavy
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_ctrl_c_keeps_the_last_epoch_and_prints_a_working_resume_command(synthetic_data_dir, tmp_path, monkeypatch):
    from softmax_cli import training

    real_train_epoch = training.train_epoch
    calls = []

    def interrupted_in_epoch_three(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", interrupted_in_epoch_three)
    result = run_train(synthetic_data_dir, tmp_path, "--epochs", "5", "--batch-size", "64")
    assert result.exit_code == 130
    text = helpers.flat(result.stderr)
    assert "Interrupted" in text and "Traceback" not in result.output
    command = text[text.index("Continue with: ") + len("Continue with: ") :].split()
    assert command[:3] == ["softmax", "train", "--resume"]
    monkeypatch.setattr(training, "train_epoch", real_train_epoch)
    resumed = invoke(*command[1:], "--json")
    assert resumed.exit_code == 0, resumed.output
    assert [entry["epoch"] for entry in json.loads(resumed.stdout)["history"]] == [1, 2, 3, 4, 5]


@pytest.mark.realdata
def test_data_dir_pointing_at_the_files_themselves_is_imported(real_data_dir, synthetic_data_dir, tmp_path):
    """--data-dir at the folder of the four .gz files: a command imports them into its raw folder."""
    import shutil

    from softmax_cli.data import download

    flat = tmp_path / "flat"
    shutil.copytree(real_data_dir, flat)
    path = helpers.train_checkpoint(synthetic_data_dir, tmp_path, "--epochs", "1")[0]
    result = invoke("eval", path, "--data-dir", flat, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert "holds the dataset files themselves" in helpers.flat(result.stderr)
    assert helpers.only_json(result)["n"] == 10_000
    assert download.dataset_present(flat)
