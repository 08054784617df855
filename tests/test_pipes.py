"""Output made for pipes and files, through the real CLI in a real shell: a reader that leaves early
(`| head`), a closed stdout, an encoding without the run's characters, output to a file, --json.

Each command runs as `bash -c '... | head ...'` with stdout and stderr in files, so the pipe and its
exit statuses are the shell's own (three of the --json checks run in-process; see there)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests import helpers

pytestmark = [
    pytest.mark.skipif(os.name != "posix", reason="pipes, SIGPIPE and bash are POSIX"),
]

SOFTMAX = f"{shlex.quote(sys.executable)} -m softmax_cli"
READER_GONE = 141  # 128 + SIGPIPE, as a shell reports a tool that SIGPIPE ended


def shell(script: str, folder: Path, env: dict | None = None) -> tuple[int, str, str]:
    """Run `script` in bash, its stdout and stderr into files in folder; (exit status, stdout, stderr).

    `softmax` in the script is this interpreter's `python -m softmax_cli`. COLUMNS is left out of the
    environment, as in a script or a cron job.
    """
    environment = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    environment.update(env or {})
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        done = subprocess.run(
            ["bash", "-c", f'softmax() {{ {SOFTMAX} "$@"; }}\n{script}'],
            cwd=folder,
            env=environment,
            stdout=stdout,
            stderr=stderr,
            timeout=300,
        )
    return done.returncode, out.read_text(), err.read_text()


def piped(command: str, reader: str, folder: Path) -> tuple[int, str, str]:
    """`softmax COMMAND | READER`; (softmax's exit status, what the reader printed, softmax's stderr)."""
    script = f'set -o pipefail\nsoftmax {command} 2>softmax-stderr.txt | {reader}\nexit "${{PIPESTATUS[0]}}"'
    code, out, _ = shell(script, folder)
    return code, out, (folder / "softmax-stderr.txt").read_text()


@pytest.fixture(scope="module")
def run_folder(synthetic_data_dir, tmp_path_factory) -> Path:
    """A folder holding ck.pt (2 epochs) and its run under runs/."""
    folder = tmp_path_factory.mktemp("pipes")
    helpers.train_checkpoint(synthetic_data_dir, folder, "--epochs", "2")
    (folder / "checkpoint.pt").rename(folder / "ck.pt")
    return folder


# --------------------------------------------------------------------------- 1. a reader that leaves early


@pytest.mark.parametrize(
    "command",
    ["eval ck.pt --data-dir {data} --device cpu", "runs", "runs --json", "--version"],
)
def test_a_reader_that_leaves_early_ends_quietly_with_141(command, run_folder, synthetic_data_dir):
    # `head -c 0` leaves before the command writes anything: its first write meets a closed pipe.
    code, out, err = piped(command.format(data=synthetic_data_dir), "head -c 0", run_folder)
    assert code == READER_GONE, err
    assert err == "" and out == ""


def test_head_gets_the_first_lines_of_a_file_like_output(run_folder, synthetic_data_dir):
    code, out, err = piped(f"eval ck.pt --data-dir {synthetic_data_dir} --device cpu", "head -2", run_folder)
    assert code in (0, READER_GONE) and "Traceback" not in err and "error" not in err
    assert out.splitlines()[0] == "ck.pt" and out.splitlines()[1].startswith("scratch, epoch 2 of 2, preset book")


def test_a_reader_that_leaves_during_training_stops_it_like_ctrl_c(synthetic_data_dir, tmp_path):
    """`softmax train | head -2`: stopped, recorded as interrupted, every finished epoch kept, exit 141."""
    command = f"train --data-dir {synthetic_data_dir} --device cpu --epochs 500 --checkpoint c.pt"
    code, out, err = piped(command, "head -2", tmp_path)
    assert code == READER_GONE, err
    assert "Traceback" not in err and "error" not in err
    settings, header = out.splitlines()
    assert settings.startswith("Training scratch on cpu") and header.split()[:3] == ["epoch", "train", "loss"]
    said = helpers.flat(err)
    assert "Interrupted: the checkpoint of epoch " in said
    epochs = int(said.split("Interrupted: the checkpoint of epoch ")[1].split(",")[0])
    assert 1 <= epochs < 500
    assert "Continue with: softmax train --resume c.pt --epochs 500" in said

    from softmax_cli.runs import checkpoint as ckpt

    saved = ckpt.load_checkpoint(tmp_path / "c.pt")
    assert saved["epoch"] == epochs and len(saved["history"]) == epochs
    listed = helpers.only_json(helpers.invoke("runs", "--runs-dir", tmp_path / "runs", "--json"))["runs"]
    assert [(run["status"], run["epochs_done"]) for run in listed] == [("interrupted", epochs)]


def test_a_reader_gone_before_trains_json_ends_quietly(synthetic_data_dir, tmp_path):
    command = f"train --data-dir {synthetic_data_dir} --device cpu --epochs 1 --json"
    code, out, err = piped(command, "head -c 0", tmp_path)
    assert code == READER_GONE and err == ""


# --------------------------------------------------------------------------- 2. stdout closed


@pytest.mark.parametrize(
    "command", ["eval ck.pt --data-dir {data} --device cpu", "runs", "--version", "train --data-dir {data} -r x"]
)
def test_a_closed_stdout_is_one_line_before_any_work(command, run_folder, synthetic_data_dir, tmp_path):
    command = command.replace("-r x", f"--runs-dir {shlex.quote(str(tmp_path / 'new-runs'))} --device cpu")
    code, out, err = shell(f"softmax {command.format(data=synthetic_data_dir)} >&-", run_folder)
    assert code == 1
    assert err == "error: standard output is closed\n"
    assert not (tmp_path / "new-runs").exists()  # nothing was trained for nothing


# --------------------------------------------------------------------------- 3. any encoding


def test_runs_with_non_ascii_names_survive_an_ascii_stdout(synthetic_data_dir, tmp_path):
    helpers.train_json(synthetic_data_dir, tmp_path, "--epochs", "1")
    (run,) = (tmp_path / "runs" / "scratch").iterdir()
    run.rename(run.parent / "café-Ω")
    for command in ("runs", "runs --json"):
        code, out, err = shell(f"softmax {command}", tmp_path, env={"PYTHONIOENCODING": "ascii"})
        assert code == 0 and err == "", err
        assert out.isascii()
    assert "caf\\xe9-\\u03a9" in shell("softmax runs", tmp_path, env={"PYTHONIOENCODING": "ascii"})[1]
    assert json.loads(out)["runs"][0]["path"].endswith("café-Ω")  # JSON escapes in its own way


# --------------------------------------------------------------------------- 4. output to a file


def test_output_to_a_file_is_not_wrapped_and_has_no_trailing_spaces(run_folder, synthetic_data_dir):
    code, out, err = shell(f"softmax eval ck.pt --data-dir {synthetic_data_dir} --device cpu > eval.txt", run_folder)
    assert code == 0, err
    text = (run_folder / "eval.txt").read_text()
    (settings,) = [line for line in text.splitlines() if "batch size" in line]  # grep finds it whole
    assert "batch size 256" in settings and settings.endswith("loader memory")
    assert all(line == line.rstrip() for line in text.splitlines())
    assert "Per class" in text and "Confusion matrix" in text  # still tables
    assert "precision" in text and "recall" in text


# --------------------------------------------------------------------------- 5. --json: stderr has no result


# Through the shell: the commands a script pipes most. The others are run in-process just below
# (the same app, its stderr apart), which spares a process that imports torch for each; what only
# a fresh process shows (a warning at import or at exit) is covered by these three.
@pytest.mark.parametrize(
    "command",
    [
        "eval ck.pt --data-dir {data} --device cpu --json",
        "runs --json",
        "train --data-dir {data} --device cpu --epochs 1 --runs-dir json-runs --json",
    ],
)
def test_json_leaves_stderr_to_warnings_and_errors(command, run_folder, synthetic_data_dir):
    code, out, err = shell(f"softmax {command.format(data=synthetic_data_dir)}", run_folder)
    assert code == 0, err
    assert out.count("\n") == 1 and isinstance(json.loads(out), dict)
    # Only the notes of files written remain: no table, no row, no result line.
    assert [line for line in err.splitlines() if not line.startswith("Wrote ")] == []


@pytest.mark.parametrize(
    "command",
    [
        "predict ck.pt --data-dir {data} --device cpu --out p.png --json",
        "compare --data-dir {data} --device cpu --epochs 1 --runs-dir json-runs --json",
        "plot ck.pt --out curves.png --json",
    ],
)
def test_json_leaves_stderr_to_warnings_and_errors_in_process(command, run_folder, synthetic_data_dir, monkeypatch):
    monkeypatch.chdir(run_folder)
    result = helpers.invoke(*shlex.split(command.format(data=synthetic_data_dir)))
    helpers.assert_clean(result)
    assert result.exit_code == 0, result.output
    helpers.only_json(result)
    assert [line for line in result.stderr.splitlines() if not line.startswith("Wrote ")] == []


# --------------------------------------------------------------------------- 6. train's log file


def test_train_to_a_file_keeps_the_settings_rows_and_checkpoint(synthetic_data_dir, tmp_path):
    code, out, err = shell(f"softmax train --data-dir {synthetic_data_dir} --device cpu --epochs 2 > log.txt", tmp_path)
    assert code == 0, err
    settings, header, *rows, done = (tmp_path / "log.txt").read_text().splitlines()
    assert settings.startswith("Training scratch on cpu, preset book: epochs 2, lr 0.1, batch size 256")
    assert header.split()[0] == "epoch" and [row.split()[0] for row in rows] == ["1", "2"]
    assert done.startswith("Done: test acc ") and done.endswith("/checkpoint.pt")
    assert "Evaluate it: softmax eval" in err and "Training" not in err and "Done" not in err
