"""`softmax plot` found like `eval`, runs labelled by what they have, pictures that never replace a file
softmax-cli did not write, the pictures' titles, and the ready-to-paste offline hint."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from softmax_cli.pictures import figures
from tests import helpers
from tests.helpers import assert_clean, invoke, only_json, run_train, train_json

SMALL = ("--batch-size", "64")


@pytest.fixture(scope="module")
def runs(synthetic_data_dir, tmp_path_factory) -> dict:
    """Under one runs folder: scratch, concise (same seed, so the same curves) and scratch at another lr,
    in that order, each 2 epochs. Only read by the tests that use them."""
    folder = tmp_path_factory.mktemp("flow")
    made = {
        "scratch": train_json(synthetic_data_dir, folder, *SMALL, "--epochs", "2", "--impl", "scratch"),
        "concise": train_json(synthetic_data_dir, folder, *SMALL, "--epochs", "2", "--impl", "concise"),
        "other": train_json(synthetic_data_dir, folder, *SMALL, "--epochs", "2", "--impl", "scratch", "--lr", "0.03"),
    }
    return {"runs_dir": folder / "runs", **made}


def stderr_of(result) -> str:
    return helpers.flat(result.stderr)


def foreign_file(path: Path) -> bytes:
    """A file softmax-cli did not write, at path: its bytes."""
    content = b"someone else's picture"
    path.write_bytes(content)
    return content


# --------------------------------------------------------------------------- plot finds the newest run


def test_plot_with_no_run_plots_the_newest_into_its_folder_and_says_which(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the current folder
    newest = Path(runs["other"]["log_dir"])
    result = invoke("plot", "--runs-dir", runs["runs_dir"])
    assert_clean(result)
    assert result.exit_code == 0, result.output
    assert f"No RUN given: plotting the newest run, {newest}" in stderr_of(result)
    assert f"Wrote {newest / 'curves.png'}" in stderr_of(result)
    assert figures.is_our_picture(newest / "curves.png") and list(tmp_path.iterdir()) == []
    # The result, one sentence per run, is on stdout, with the epoch count said right.
    assert (
        result.stdout
        == f"{newest.name}: 2 epochs plotted, final test accuracy {runs['other']['history'][-1]['test_acc']:.4f}.\n"
    )


def test_plot_with_no_run_and_none_under_runs_dir_is_one_error_line(tmp_path):
    result = invoke("plot", "--runs-dir", tmp_path / "nothing")
    assert_clean(result)
    assert result.exit_code == 1 and result.stdout == ""
    assert stderr_of(result).startswith("error: no RUN given, and no run under")
    assert "`softmax plot PATH`" in stderr_of(result)


def test_several_runs_go_into_the_first_runs_folder(runs):
    first = Path(runs["concise"]["log_dir"])
    result = invoke("plot", first, runs["other"]["checkpoint"], "--json")
    assert result.exit_code == 0, result.output
    assert only_json(result)["out"] == str(first / "curves.png")
    assert figures.is_our_picture(first / "curves.png")


# --------------------------------------------------------------------------- what a run is labelled by


def test_a_run_stopped_early_is_labelled_by_the_epochs_it_has(synthetic_data_dir, tmp_path, monkeypatch):
    from softmax_cli import training

    real_train_epoch = training.train_epoch
    calls = []

    def interrupted_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", interrupted_in_epoch_two)
    stopped = run_train(synthetic_data_dir, tmp_path, *SMALL, "--epochs", "50")
    monkeypatch.setattr(training, "train_epoch", real_train_epoch)
    assert stopped.exit_code == 130, stopped.output
    done = train_json(synthetic_data_dir, tmp_path, *SMALL, "--epochs", "1")
    done_dir = Path(done["log_dir"])
    stopped_dir = next(path for path in done_dir.parent.iterdir() if path != done_dir)

    result = invoke("plot", stopped_dir, done["log_dir"], "--out", tmp_path / "both.png", "--json")
    assert result.exit_code == 0, result.output
    payload = only_json(result)
    assert [run["label"] for run in payload["runs"]] == ["1 of 50 epochs, interrupted", "1 epoch"]
    assert [run["status"] for run in payload["runs"]] == ["interrupted", "finished"]
    # Alone, the title says it.
    alone = only_json(invoke("plot", stopped_dir, "--out", tmp_path / "one.png", "--json"))
    assert alone["title"].endswith("1 of 50 epochs, interrupted") and ", 50 epochs" not in alone["title"]
    lines = invoke("plot", stopped_dir, "--out", tmp_path / "one.png").stdout
    assert ": 1 epoch plotted, final test accuracy" in lines and "1 epochs" not in lines


def test_runs_with_identical_curves_are_said_to_be_so(runs, tmp_path):
    scratch, concise, other = (runs[name] for name in ("scratch", "concise", "other"))
    result = invoke("plot", scratch["log_dir"], concise["log_dir"], other["log_dir"], "--out", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert "scratch, lr 0.1 and concise, lr 0.1 have identical curves: one line is drawn for them" in stderr_of(result)
    payload = only_json(
        invoke("plot", scratch["log_dir"], concise["log_dir"], other["log_dir"], "--out", tmp_path / "c.png", "--json")
    )
    assert [run["identical_curves"] for run in payload["runs"]] == [[concise["log_dir"]], [scratch["log_dir"]], []]
    # Different curves are never merged.
    apart = invoke("plot", scratch["log_dir"], other["log_dir"], "--out", tmp_path / "d.png")
    assert apart.exit_code == 0 and "have identical curves" not in apart.stderr


# --------------------------------------------------------------------------- never replace a stranger's file


def test_predict_writes_into_the_run_folder_and_refuses_a_foreign_out_before_any_work(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint = Path(runs["scratch"]["checkpoint"])
    no_data = tmp_path / "no-data"  # any work would first look for (and try to download) the data here
    target = tmp_path / "mine.png"
    content = foreign_file(target)
    refused = invoke("predict", checkpoint, "--out", target, "--data-dir", no_data, "--device", "cpu")
    assert_clean(refused)
    assert refused.exit_code == 2 and target.read_bytes() == content and not no_data.exists()
    said = helpers.flat(refused.output)
    assert f"{target} exists and was not written by softmax-cli; pass --overwrite" in said and "--out" in said


def test_predict_default_and_overwrite(runs, synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint = Path(runs["scratch"]["checkpoint"])
    common = ("-n", "4", "--data-dir", synthetic_data_dir, "--device", "cpu")
    result = invoke("predict", checkpoint, *common, "--json")
    assert result.exit_code == 0, result.output
    beside = checkpoint.parent / "predictions.png"
    assert only_json(result)["out"] == str(beside) and figures.is_our_picture(beside)
    assert list(tmp_path.iterdir()) == []
    again = invoke("predict", checkpoint, *common)  # its own picture: replaced, and said so
    assert again.exit_code == 0 and f"Replaced {beside}" in stderr_of(again)
    target = tmp_path / "mine.png"
    foreign_file(target)
    forced = invoke("predict", checkpoint, *common, "--out", target, "--overwrite")
    assert forced.exit_code == 0, forced.output
    assert figures.is_our_picture(target)


@pytest.mark.parametrize("option", ["--weights-png", "--confusion-png"])
def test_eval_pictures_follow_the_same_rule(runs, synthetic_data_dir, tmp_path, option):
    checkpoint = runs["concise"]["checkpoint"]
    target = tmp_path / "picture.jpg"
    content = foreign_file(target)
    common = (checkpoint, "--data-dir", synthetic_data_dir, "--device", "cpu", "--json")
    refused = invoke("eval", *common, option, target)
    assert refused.exit_code == 2 and target.read_bytes() == content
    assert "pass --overwrite" in helpers.flat(refused.output) and option in refused.output
    assert invoke("eval", *common, option, target, "--overwrite").exit_code == 0
    assert figures.is_our_picture(target)  # a JPEG, signed in its comment
    assert invoke("eval", *common, option, target).exit_code == 0  # ours now: replaced without --overwrite


def test_plot_refuses_a_foreign_file_and_a_folder(runs, tmp_path):
    run = runs["scratch"]["log_dir"]
    target = tmp_path / "curves.png"
    content = foreign_file(target)
    refused = invoke("plot", run, "--out", target)
    assert refused.exit_code == 2 and target.read_bytes() == content and "--overwrite" in refused.output
    folder = tmp_path / "folder.png"
    folder.mkdir()
    assert invoke("plot", run, "--out", folder, "--overwrite").exit_code == 2


def test_only_our_signature_counts(tmp_path):
    """A PNG from elsewhere, even one matplotlib wrote, is not ours; a file that merely mentions us is not either."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1, 1))
    FigureCanvasAgg(figure)
    figure.savefig(tmp_path / "theirs.png")
    (tmp_path / "text.png").write_bytes(b"Software\x00softmax-cli")
    figures.save_png(figure, tmp_path / "ours.png")
    assert not figures.is_our_picture(tmp_path / "theirs.png")
    assert not figures.is_our_picture(tmp_path / "text.png")
    assert figures.is_our_picture(tmp_path / "ours.png")


# --------------------------------------------------------------------------- titles and hints


def test_the_predictions_grid_names_its_checkpoint_and_how_many_it_got_right():
    import torch

    images = torch.zeros((3, 28, 28), dtype=torch.uint8)
    grid = figures.prediction_figure(
        images, ["Bag", "Coat", "Bag"], ["Bag", "Shirt", "Bag"], [0.9, 0.5, 0.8], heading="run/checkpoint.pt: epoch 2"
    )
    title = grid.get_suptitle()
    assert title.startswith("run/checkpoint.pt: epoch 2\n2 of 3 shown right (67%)")


def test_an_offline_first_train_prints_a_ready_download_command(tmp_path, monkeypatch):
    from softmax_cli.data import download as dl

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(dl, "RETRY_BACKOFF_S", 0.0)
    monkeypatch.setattr(dl.TransferWatch, "opener", lambda self: type("O", (), {"open": offline})())
    data_dir = tmp_path / "my data"
    result = run_train(data_dir, tmp_path, "--epochs", "1")
    assert_clean(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.stderr
    assert f"`softmax download --from DIR --data-dir {shlex.quote(str(data_dir))}`" in errors[0]
