"""`softmax plot` end to end, the histories it reads, and what TensorBoard's own reader finds in a run."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from softmax_cli.data.batches import class_names
from softmax_cli.errors import SoftmaxError, TrainingDiverged
from softmax_cli.pictures import tensorboard as tboard
from softmax_cli.runs import histories
from softmax_cli.runs.folders import SUMMARY_NAME
from tests import helpers
from tests.helpers import assert_clean, invoke, only_json, train_json

SMALL = ("--batch-size", "64", "--epochs", "2")


@pytest.fixture(scope="module")
def two_runs(synthetic_data_dir, tmp_path_factory) -> list[dict]:
    """Two 2-epoch runs through the CLI that differ only in lr; the first holds out a validation split.
    Only read by the tests that use them."""
    folder = tmp_path_factory.mktemp("plot-runs")
    return [
        train_json(synthetic_data_dir, folder, *SMALL, "--val-split", "0.2"),
        train_json(synthetic_data_dir, folder, *SMALL, "--val-split", "0.2", "--lr", "0.03"),
    ]


def curves_pixels(two_runs: list[dict], count: int) -> tuple[int, int]:
    """The size `softmax plot` saves `count` runs' curves at, from the figure itself (size x dpi)."""
    from softmax_cli.pictures import figures

    runs = [(f"run {k}", two_runs[k]["history"]) for k in range(count)]
    return helpers.figure_pixels(figures.training_curves_figure(runs))


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


# --------------------------------------------------------------------------- histories


def test_a_run_folder_and_its_checkpoint_give_the_same_history(two_runs):
    run = two_runs[0]
    from_folder = histories.read_history(Path(run["log_dir"]))
    from_checkpoint = histories.read_history(Path(run["checkpoint"]))
    assert [entry["epoch"] for entry in from_folder.history] == [1, 2]
    assert from_folder.history == from_checkpoint.history
    assert from_folder.history[-1]["val_acc"] == run["history"][-1]["val_acc"]
    assert from_folder.hparams == from_checkpoint.hparams == run["hparams"]
    assert from_folder.name == from_checkpoint.name == Path(run["log_dir"]).name


def test_a_run_folder_without_a_summary_is_read_from_its_checkpoint(two_runs, tmp_path):
    folder = tmp_path / "old-run"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(Path(two_runs[1]["checkpoint"]).read_bytes())
    run = histories.read_history(folder)
    assert run.hparams["lr"] == 0.03 and len(run.history) == 2


def test_a_summary_with_no_epoch_and_a_folder_with_nothing_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SoftmaxError, match="not a run folder"):
        histories.read_history(empty)
    summary = {
        "format": "softmax-cli/run-summary",
        "version": 1,
        "started": "2025-01-01T00:00:00+00:00",
        "impl": "scratch",
        "status": "interrupted",
        "epochs_done": 0,
        "history": [],
        "hparams": {},
    }
    (empty / SUMMARY_NAME).write_text(json.dumps(summary))
    with pytest.raises(SoftmaxError, match="no completed epoch"):
        histories.read_history(empty)
    # A damaged summary and no checkpoint to read instead: the error says what is damaged.
    (empty / SUMMARY_NAME).write_text(json.dumps({**summary, "history": 3}))
    with pytest.raises(SoftmaxError, match="history is not a list, and the folder has no checkpoint.pt"):
        histories.read_history(empty)


def test_labels_name_what_differs_and_the_heading_what_is_shared():
    def run(name, **hparams):
        return histories.RunHistory(Path(name), {"impl": "scratch", "preset": "book", "seed": 326, **hparams}, [])

    labels, heading = histories.label_runs([run("a", lr=0.1), run("b", lr=0.03)])
    assert labels == ["lr 0.1", "lr 0.03"] and heading == "2 runs, all scratch, book preset, seed 326"
    # A preset's own values are implied by the preset's name; what it does not fix still shows.
    tuned = {"preset": "tuned", "lr": 0.05, "momentum": 0.9, "standardize": True}
    book = {"preset": "book", "lr": 0.1, "momentum": 0.0, "standardize": False}
    labels, _ = histories.label_runs([run("a", **tuned, val_split=0.1), run("b", **book, val_split=0.0)])
    assert labels == ["tuned preset, val split 0.1", "book preset, val split 0"]
    # Same settings: the folder names tell the runs apart.
    labels, _ = histories.label_runs([run("x/first", lr=0.1), run("x/second", lr=0.1), run("x/third", lr=0.3)])
    assert labels == ["lr 0.1 (first)", "lr 0.1 (second)", "lr 0.3"]
    assert histories.label_runs([run("x/one", lr=0.1), run("x/two", lr=0.1)])[0] == ["one", "two"]


# --------------------------------------------------------------------------- softmax plot


def test_plot_one_run_writes_the_curves_and_json_names_the_file(two_runs, tmp_path):
    out = tmp_path / "figures" / "curves.png"
    result = invoke("plot", two_runs[0]["log_dir"], "--out", out, "--json")
    assert_clean(result)
    assert result.exit_code == 0, result.output
    payload = only_json(result)
    assert payload["out"] == str(out) and [run["epochs"] for run in payload["runs"]] == [2]
    assert png_size(out) == curves_pixels(two_runs, 1)
    assert f"Wrote {out}" in helpers.flat(result.stderr)


def test_plot_overlays_runs_from_a_folder_and_a_checkpoint_labelled_by_lr(two_runs, tmp_path):
    out = tmp_path / "both.png"
    result = invoke("plot", two_runs[0]["log_dir"], two_runs[1]["checkpoint"], "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert [run["label"] for run in only_json(result)["runs"]] == ["lr 0.1", "lr 0.03"]
    assert png_size(out) == curves_pixels(two_runs, 2)
    assert "lr 0.03:" not in result.stderr  # --json prints no human result
    # Without --json, a sentence per run on stdout; the picture, ours, is replaced.
    result = invoke("plot", two_runs[0]["log_dir"], two_runs[1]["checkpoint"], "--out", out)
    assert result.exit_code == 0, result.output
    assert "lr 0.03: 2 epochs plotted, final test accuracy " in result.stdout
    assert f"Replaced {out}" in helpers.flat(result.stderr)


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_plot_a_path_with_no_history_is_one_error_line(kind, tmp_path):
    target = tmp_path / "nothing"
    if kind == "folder":
        target.mkdir()
    else:
        target.write_text("not a checkpoint")
    result = invoke("plot", target, "--out", tmp_path / "curves.png", "--json")
    assert_clean(result)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.count("error:") == 1 and str(target) in helpers.flat(result.stderr)
    assert not (tmp_path / "curves.png").exists()


def test_plot_a_missing_path_is_a_usage_error(tmp_path):
    result = invoke("plot", tmp_path / "missing")
    assert result.exit_code == 2 and "does not exist" in result.output


# --------------------------------------------------------------------------- TensorBoard


def session_start(accumulator):
    from tensorboard.plugins.hparams import metadata

    content = accumulator.PluginTagToContent("hparams")[metadata.SESSION_START_INFO_TAG]
    return metadata.parse_session_start_info_plugin_data(content)


def test_tensorboard_holds_test_loss_labelled_images_typed_hparams_and_the_book_layout(two_runs):
    run = two_runs[0]
    accumulator = helpers.tensorboard_events(Path(run["log_dir"]))
    tags = accumulator.Tags()
    test_loss = accumulator.Scalars("loss/test")
    assert [event.step for event in test_loss] == [1, 2]
    assert [event.value for event in test_loss] == pytest.approx([entry["test_loss"] for entry in run["history"]])
    assert {"loss/train", "accuracy/train", "accuracy/test", "accuracy/val", "lr"} <= set(tags["scalars"])
    # One card per class, labelled by its tag, every epoch; the confusion table at the end.
    assert {tag: [event.step for event in accumulator.Images(tag)] for tag in tags["images"]} == {
        f"weights/{name}": [1, 2] for name in class_names()
    }
    assert [event.step for event in accumulator.Tensors("confusion_matrix/text_summary")] == [2]
    hparams = session_start(accumulator).hparams
    assert hparams["standardize"].WhichOneof("kind") == "bool_value" and hparams["standardize"].bool_value is False
    assert hparams["batch_size"].string_value == "64" and hparams["epochs"].string_value == "2"  # integers as text
    assert hparams["lr"].WhichOneof("kind") == "number_value"
    assert hparams["preset"].string_value == "book" and hparams["seed"].string_value == "326"
    assert helpers.session_status(accumulator) == "STATUS_SUCCESS"
    assert "custom_scalars__config__" in tags["tensors"]


def test_tensorboard_status_says_how_a_run_ended(synthetic_data_dir, tmp_path):
    interrupted = tmp_path / "interrupted"
    helpers.fit(synthetic_data_dir, interrupted, tboard_with(interrupted, helpers.InterruptAt(1)), epochs=3)
    stopped = helpers.tensorboard_events(interrupted)
    assert helpers.session_status(stopped) == "STATUS_UNKNOWN"
    # The stop came after epoch 1 was saved: its pictures are there, and nothing later.
    assert {event.step for tag in stopped.Tags()["images"] for event in stopped.Images(tag)} == {1}
    assert [event.step for event in stopped.Tensors("confusion_matrix/text_summary")] == [1]
    diverged = tmp_path / "diverged"
    with pytest.raises(TrainingDiverged):
        helpers.fit(
            synthetic_data_dir, diverged, tboard_with(diverged, BlowUpAfter(1)), impl="scratch", naive_softmax=True
        )
    assert helpers.session_status(helpers.tensorboard_events(diverged)) == "STATUS_FAILURE"
    # A run that diverges before finishing any epoch leaves no event file at all.
    never = tmp_path / "never"
    with pytest.raises(TrainingDiverged):
        helpers.fit(synthetic_data_dir, never, tboard_with(never), impl="scratch", naive_softmax=True, lr=1e4, epochs=1)
    assert not list(never.glob("events.out.tfevents.*"))
    from tensorboard.plugins.hparams import api_pb2

    assert tboard.session_end_status() == api_pb2.STATUS_SUCCESS


class BlowUpAfter(helpers.training.TrainingCallbacks):
    """Scales the weights up a millionfold after the given epoch, so the book's naive softmax overflows in the next."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, metrics, model):
        if metrics.epoch == self.epoch:
            with torch.no_grad():
                for parameter in model.weight_bias():
                    parameter.mul_(1e6)


def tboard_with(log_dir: Path, *others):
    from softmax_cli.training import CallbackList

    return CallbackList([tboard.TensorBoardLogger(log_dir), *others])


def test_hparams_for_tensorboard_keep_numbers_and_booleans_and_make_integers_text():
    shown = tboard.hparams_for_tensorboard({"seed": 2**63 - 1, "lr": 0.1, "batch_size": 256, "standardize": True})
    assert shown == {"seed": "9223372036854775807", "lr": 0.1, "batch_size": "256", "standardize": True}


def test_plot_of_run_folders_never_imports_torch(two_runs, tmp_path):
    """A run folder's summary is plain JSON: plotting it needs matplotlib, not torch. In a fresh
    interpreter, which gets the app through helpers.cli_app's own source (helpers imports torch)."""
    out = tmp_path / "curves.png"
    code = textwrap.dedent(inspect.getsource(helpers.cli_app)) + textwrap.dedent(f"""
        import sys
        from typer.testing import CliRunner

        result = CliRunner().invoke(cli_app(), ["plot", {two_runs[0]["log_dir"]!r}, "--out", {str(out)!r}])
        assert result.exit_code == 0, result.output
        print("torch" in sys.modules, "matplotlib" in sys.modules)
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=helpers.PROJECT_ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"] and png_size(out) == curves_pixels(two_runs, 1)
