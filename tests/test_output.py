"""The output contract, through the real CLI: results on stdout, progress and notes on stderr, --json
alone on stdout, tables that fit 80 and 60 columns without cutting a number; and the small things
a newcomer trips over (--version, -n, enum typos, picture formats, help, headers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

import softmax_cli
from tests import helpers
from tests.helpers import assert_clean, invoke, only_json


def invoke_at(width: int, *args):
    """`softmax ARGS` on a console `width` columns wide (Rich reads $COLUMNS)."""
    return CliRunner().invoke(helpers.cli_app(), [str(arg) for arg in args], env={"COLUMNS": str(width)})


def assert_fits(text: str, width: int) -> None:
    """No line wider than the console, and nothing cut: Rich marks a cut with an ellipsis."""
    assert text.strip(), "no output"
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} > {width}: {line!r}"
    assert "…" not in text, text


@pytest.fixture(scope="module")
def short_checkpoint(synthetic_data_dir, tmp_path_factory) -> Path:
    """A 2-epoch checkpoint at a short path (printed paths are never broken, so they must fit)."""
    folder = tmp_path_factory.mktemp("out")
    payload = helpers.train_json(synthetic_data_dir, folder, "--epochs", "2", "--val-split", "0.2")
    return Path(shutil.copy(payload["checkpoint"], folder / "ck.pt"))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- stdout and stderr


def test_train_rows_go_to_stdout_one_line_per_epoch(synthetic_data_dir, in_tmp):
    """`softmax train > log.txt` keeps the settings, a header, one line per epoch and the checkpoint;
    the hints are on stderr."""
    result = invoke("train", "--data-dir", synthetic_data_dir, "--device", "cpu", "--epochs", "3", "--val-split", "0.2")
    assert_clean(result)
    assert result.exit_code == 0, result.output
    settings, validation, header, *rows, done = result.stdout.splitlines()
    assert settings.startswith("Training scratch on cpu, preset book: epochs 3, lr 0.1, batch size 256")
    assert validation.startswith("--val-split 0.2: training on 480 images")
    assert done.startswith("Done: test acc ") and done.endswith("/checkpoint.pt")
    assert header.split() == ["epoch", "train", "loss", "train", "acc", "val", "acc", "test", "acc"] + [
        "examples/s",
        "seconds",
    ]
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]
    assert all(len(row.split()) == 7 for row in rows)
    assert "Evaluate it" in result.stderr and "tensorboard --logdir" in result.stderr
    assert "Done" not in result.stderr and "epoch" not in result.stderr.split()


def test_train_json_prints_no_human_result(synthetic_data_dir, in_tmp):
    """With --json the JSON object is the result: no rows, no header, no checkpoint line on either stream."""
    result = invoke("train", "--data-dir", synthetic_data_dir, "--device", "cpu", "--epochs", "2", "--json")
    assert result.exit_code == 0, result.output
    assert only_json(result)["epochs"] == 2
    assert result.stderr == ""


def test_train_header_shows_the_preset_with_all_its_settings_and_the_val_sizes(synthetic_data_dir, in_tmp):
    result = invoke(
        "train", "--data-dir", synthetic_data_dir, "--device", "cpu", "--epochs", "1",
        "--preset", "tuned", "--val-split", "0.25",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = helpers.flat(result.stdout)
    expected = "preset tuned: epochs 1, lr 0.05, batch size 256, momentum 0.9, weight decay 0.0001"
    assert expected + ", schedule cosine, standardize yes; seed 326" in text
    assert "training on 450 images, validating on 150" in text  # 600 synthetic train images


def test_a_failure_in_the_first_epoch_prints_no_empty_table(synthetic_data_dir, in_tmp):
    result = invoke(
        "train", "--data-dir", synthetic_data_dir, "--device", "cpu", "--naive-softmax", "--lr", "1e4",
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stdout.startswith("Training scratch") and "epoch" not in result.stdout.split()
    assert result.stderr.strip().splitlines()[-1].startswith("error: training loss became")


def test_the_resume_hint_repeats_only_the_options_given(synthetic_data_dir, in_tmp, monkeypatch):
    from softmax_cli import training

    real_train_epoch = training.train_epoch
    calls = []

    def interrupted_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", interrupted_in_epoch_two)
    monkeypatch.setenv("SOFTMAX_DATA_DIR", str(synthetic_data_dir))
    result = invoke("train", "--epochs", "3")  # default --runs-dir, --device auto, data dir from the environment
    assert result.exit_code == 130
    text = helpers.flat(result.stderr)
    command = text[text.index("Continue with: ") + len("Continue with: ") :].split()
    assert command[:3] == ["softmax", "train", "--resume"] and command[4:] == ["--epochs", "3"]
    assert result.stdout.splitlines()[2].split()[0] == "1"  # the completed epoch's row stayed


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_eval_and_predict_results_go_to_stdout(command, short_checkpoint, synthetic_data_dir, tmp_path):
    extra = ["--out", tmp_path / "p.png"] if command == "predict" else []
    result = invoke(command, short_checkpoint, "--data-dir", synthetic_data_dir, "--device", "cpu", *extra)
    assert_clean(result)
    assert result.exit_code == 0, result.output
    needle = "Confusion matrix" if command == "eval" else "predicted"
    assert needle in result.stdout and needle not in result.stderr
    as_json = invoke(command, short_checkpoint, "--data-dir", synthetic_data_dir, "--device", "cpu", "--json", *extra)
    assert only_json(as_json) and needle not in as_json.stderr  # the JSON object alone is the result


def test_eval_writes_its_picture_before_printing(short_checkpoint, synthetic_data_dir, tmp_path, monkeypatch):
    """`softmax eval CK --weights-png w.png | head -1`: a reader that stops early must not cost the picture."""
    from softmax_cli.cli import tables

    def reader_gone(*args, **kwargs):
        raise BrokenPipeError

    monkeypatch.setattr(tables, "render_evaluation", reader_gone)
    out = tmp_path / "w.png"
    invoke("eval", short_checkpoint, "--weights-png", out, "--data-dir", synthetic_data_dir, "--device", "cpu")
    with Image.open(out) as image:
        assert image.format == "PNG"


def test_compare_table_goes_to_stdout(synthetic_data_dir, in_tmp):
    result = invoke("compare", "--epochs", "1", "--data-dir", synthetic_data_dir, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "max |ΔW|" in result.stdout and "agree" in result.stdout
    assert "scratch, seed 326" in result.stderr and "max |ΔW|" not in result.stderr


def test_bench_table_goes_to_stdout(synthetic_data_dir):
    result = invoke("bench", "--epochs", "1", "--device", "cpu", "--workers", "0", "--data-dir", synthetic_data_dir)
    assert result.exit_code == 0, result.output
    assert "memory loader, scratch" in result.stdout and "s/epoch" in result.stdout
    assert "torch on 1 thread)" in result.stdout  # as the tests run it (conftest) and the command line does
    assert "load average" in result.stderr and "s/epoch" not in result.stderr
    # A user's words: no internal keys, no project targets in the human output.
    for internal in ("peak_rss_mib", "VmHWM", "book-w0", "memory-scratch", "missed", "target"):
        assert internal not in result.stdout + result.stderr, internal


# --------------------------------------------------------------------------- widths


@pytest.mark.parametrize("width", [80, 60])
def test_every_table_fits_the_console(width, short_checkpoint, synthetic_data_dir, in_tmp):
    data = ["--data-dir", synthetic_data_dir, "--device", "cpu"]
    shutil.copy(short_checkpoint, "ck.pt")
    outputs = {}
    outputs["train"] = invoke_at(width, "train", *data, "--runs-dir", "r", "--epochs", "1", "--val-split", "0.2")
    outputs["eval"] = invoke_at(width, "eval", "ck.pt", *data)
    outputs["predict"] = invoke_at(width, "predict", "ck.pt", *data, "-n", "30")
    outputs["compare"] = invoke_at(width, "compare", *data, "--runs-dir", "r", "--epochs", "1")
    outputs["runs"] = invoke_at(width, "runs", "--runs-dir", "r")
    outputs["bench"] = invoke_at(width, "bench", "--epochs", "1", *data, "--workers", "0")
    for name, result in outputs.items():
        assert result.exit_code == 0, (name, result.output)
        # train's last line names its checkpoint, a path printed whole (below)
        assert_fits(result.stdout.rsplit("Done: ", 1)[0], width)
    # What matters most survives the narrowing.
    assert "test acc" in outputs["train"].stdout and "val acc" in outputs["train"].stdout
    assert "F1" in outputs["eval"].stdout and "recall" in outputs["eval"].stdout
    assert "max |ΔW|" in outputs["compare"].stdout and "speed-up" in outputs["bench"].stdout
    assert "status" in outputs["runs"].stdout
    # Paths are printed whole, never broken or cropped.
    compare_folder = next((Path("r") / "compare").iterdir())
    assert f"\n{compare_folder}\n" in outputs["compare"].stdout
    assert outputs["eval"].stdout.startswith("ck.pt\n")
    for folder in (Path("r") / "scratch").iterdir():
        assert f"\n  {folder}\n" in outputs["runs"].stdout


# --------------------------------------------------------------------------- the live bars


def terminal(width: int = 80):
    """A Rich console that takes itself for a terminal, writing into a string (.file.getvalue())."""
    import io

    from rich.console import Console

    return Console(file=io.StringIO(), force_terminal=True, width=width)


def test_train_and_sweep_share_the_live_bars_which_draw_on_a_terminal_only():
    """TrainingBars under both displays: epochs and batches (and the sweep's configurations) are drawn
    on a terminal, advanced by the callbacks, and left out of a file."""
    from types import SimpleNamespace

    import torch

    from softmax_cli.cli.render import SweepDisplay, TrainingDisplay
    from softmax_cli.config import Hparams
    from softmax_cli.training import EpochMetrics

    console = terminal()
    plan = SimpleNamespace(hparams=Hparams(epochs=2), device=torch.device("cpu"), start_epoch=0, batches_per_epoch=3,
                           train_examples=600, validation_examples=0)  # fmt: skip
    metrics = EpochMetrics(epoch=1, train_loss=0.5, train_acc=0.8, test_acc=0.79, test_loss=0.6, seconds=0.2,
                           examples_per_s=3000.0, lr=0.1)  # fmt: skip
    with TrainingDisplay(console, console) as display:
        display.on_train_start(plan)
        for _ in range(3):
            display.on_batch_end()
        display.on_epoch_end(metrics, model=None)
        bars = display.bars.progress.tasks
        assert [(task.description, task.completed, task.total) for task in bars] == [
            ("epochs", 1, 2),
            ("batches", 0, 3),
        ]
    drawn = console.file.getvalue()
    assert "epochs" in drawn and "batches" in drawn and "0.7900" in drawn

    console = terminal()
    group = SimpleNamespace(index=0, groups=2, epochs=2, batches_per_epoch=3)
    with SweepDisplay(console, planned=4, varying=["lr"]) as display:
        display.on_group_start(group)
        display.on_batch_end()
        display.on_epoch_end(group, 1, model=None)
        display.on_group_start(SimpleNamespace(index=1, groups=2, epochs=2, batches_per_epoch=5))  # replaces the bars
        bars = display.bars.progress.tasks
        assert [(task.description, task.total) for task in bars] == [
            ("configurations", 4),
            ("group 2/2", 2),
            ("batches", 5),
        ]
    assert "configurations" in console.file.getvalue() and "group 2/2" in console.file.getvalue()

    file_like = terminal()
    file_like = type(file_like)(file=file_like.file, force_terminal=False, width=80)
    with TrainingDisplay(file_like, file_like) as display:
        display.on_train_start(plan)
        display.on_batch_end()
    assert "batches" not in file_like.file.getvalue()  # the settings line only: no bar frames in a file


# --------------------------------------------------------------------------- papercuts


def test_version_prints_the_package_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"softmax-cli {softmax_cli.__version__}\n"


def test_an_enum_typo_is_a_plain_usage_error():
    result = invoke("train", "--impl", "scrach")
    assert result.exit_code == 2 and result.stdout == ""
    assert "'scrach' is not one of scratch, concise; did you mean scratch?" in helpers.flat(result.stderr)
    assert "Value error" not in result.output and "Traceback" not in result.output


def test_help_names_the_argument_plainly():
    for command in ("eval", "predict"):
        usage = invoke(command, "--help").stdout.splitlines()[0]
        assert usage.endswith("[OPTIONS] [CHECKPOINT]"), usage


@pytest.mark.parametrize("suffix, format_name", [(".jpg", "JPEG"), (".jpeg", "JPEG"), (".PNG", "PNG")])
def test_pictures_are_written_in_the_format_their_name_says(
    suffix, format_name, short_checkpoint, synthetic_data_dir, tmp_path
):
    grid, weights = tmp_path / f"grid{suffix}", tmp_path / f"weights{suffix}"
    data = ["--data-dir", synthetic_data_dir, "--device", "cpu"]
    assert invoke("predict", short_checkpoint, "-n", "4", "--out", grid, *data).exit_code == 0
    assert invoke("eval", short_checkpoint, "--weights-png", weights, *data).exit_code == 0
    for path in (grid, weights):
        with Image.open(path) as image:
            assert image.format == format_name


@pytest.mark.parametrize("name", ["grid.gif", "grid", "grid.jpg.txt"])
def test_a_picture_name_of_another_format_is_refused(name, short_checkpoint, synthetic_data_dir, tmp_path):
    result = invoke("predict", short_checkpoint, "--out", tmp_path / name, "--data-dir", synthetic_data_dir)
    assert result.exit_code == 2 and "--out" in result.stderr and ".jpg" in result.stderr
    assert not (tmp_path / name).exists()


def test_predict_count_has_a_short_form(short_checkpoint, synthetic_data_dir, tmp_path):
    for flag in ("-n", "--n"):
        result = invoke(
            "predict", short_checkpoint, flag, "5", "--out", tmp_path / "p.png",
            "--data-dir", synthetic_data_dir, "--device", "cpu", "--json",
        )  # fmt: skip
        assert len(only_json(result)["predictions"]) == 5


def test_the_per_class_table_shows_precision_recall_f1_and_support(short_checkpoint, synthetic_data_dir):
    result = invoke("eval", short_checkpoint, "--data-dir", synthetic_data_dir, "--device", "cpu")
    header = next(line for line in result.stdout.splitlines() if line.startswith("class"))
    assert header.split() == ["class", "precision", "recall", "F1", "support"]
    payload = only_json(invoke("eval", short_checkpoint, "--data-dir", synthetic_data_dir, "--device", "cpu", "--json"))
    shirt = next(row for row in payload["per_class"] if row["class"] == "Shirt")
    line = next(line for line in result.stdout.splitlines() if line.startswith("Shirt"))
    assert line.split()[1:] == [f"{shirt[k]:.4f}" for k in ("precision", "recall", "f1")] + [str(shirt["support"])]
    assert json.dumps(payload)


def test_train_says_when_its_checkpoint_replaces_an_existing_file(short_checkpoint, synthetic_data_dir, tmp_path):
    target = Path(shutil.copy(short_checkpoint, tmp_path / "ck.pt"))
    result = helpers.run_train(synthetic_data_dir, tmp_path, "--epochs", "1", "--checkpoint", target)
    assert result.exit_code == 0, result.output
    assert f"{target} exists and will be replaced" in helpers.flat(result.stderr)
