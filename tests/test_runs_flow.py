"""What `softmax runs` tells of a run's story: compare runs, a resumed run's chain, named runs, and how
TensorBoard shows them. Every test runs the real commands in its own folder (monkeypatch.chdir), so the
default --runs-dir, ./runs, is the test's own.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from softmax_cli import training
from softmax_cli.runs import folders as runs
from tests import helpers
from tests.helpers import assert_clean, invoke, only_json


def train(data_dir: Path, *options):
    """`softmax train` on the CPU with the default --runs-dir (./runs), 1 epoch unless told otherwise."""
    return invoke("train", "--data-dir", data_dir, "--device", "cpu", "--epochs", "1", *options)


def train_json(data_dir: Path, *options) -> dict:
    result = train(data_dir, "--json", *options)
    assert_clean(result)
    assert result.exit_code == 0, result.output
    return only_json(result)


def listed() -> list[dict]:
    return only_json(invoke("runs", "--json"))["runs"]


def table() -> list[str]:
    result = invoke("runs")
    assert_clean(result)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def stop_at_epoch_call(monkeypatch, call: int) -> None:
    """Ctrl-C in the call-th training epoch of this process (counted over every fit it runs)."""
    real, calls = training.train_epoch, []

    def stopping(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", stopping)


def session_start(run_dir: Path):
    from tensorboard.plugins.hparams import metadata

    content = helpers.tensorboard_events(run_dir).PluginTagToContent("hparams")[metadata.SESSION_START_INFO_TAG]
    return metadata.parse_session_start_info_plugin_data(content)


def text_card(run_dir: Path, tag: str) -> str:
    accumulator = helpers.tensorboard_events(run_dir)
    [event] = accumulator.Tensors(f"{tag}/text_summary")
    return event.tensor_proto.string_val[0].decode()


# --------------------------------------------------------------------------- compare


def test_a_finished_compare_is_listed_with_its_status_and_both_sides(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("compare", "--epochs", "2", "--data-dir", synthetic_data_dir, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    compared = only_json(result)
    [record] = listed()
    assert record["impl"] == "compare" and record["status"] == "finished" and record["has_summary"] is True
    assert (record["epochs_done"], record["epochs_planned"]) == (2, 2)
    for side in ("scratch", "concise"):
        assert record["final"][side] == compared["epochs"][-1][side]
    assert record["comparison"] == {"agree": True, "max_abs_diff": compared["max_abs_diff"], "tolerance": 1e-4}
    lines = table()
    row = lines[1].split()
    assert "compare" in row and "2/2" in row and "finished" in row
    assert f"{compared['epochs'][-1]['concise']['test_acc']:.4f}" in row
    assert lines[2].strip() == record["path"]
    assert "scratch 2/2" in lines[3] and "concise 2/2" in lines[3] and "agree" in lines[3]
    assert f"{compared['max_abs_diff']:.2e}" in lines[3]


def test_a_compare_stopped_early_is_listed_as_interrupted_with_what_it_did(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stop_at_epoch_call(monkeypatch, 3)  # scratch trains epochs 1 and 2; concise is stopped in its first
    result = invoke("compare", "--epochs", "2", "--data-dir", synthetic_data_dir, "--device", "cpu")
    assert_clean(result)
    assert result.exit_code == 130
    [record] = listed()
    assert [Path(path).name for path in record["checkpoints"]] == ["scratch.pt"]
    assert record["impl"] == "compare" and record["status"] == "interrupted"
    assert record["epochs_done"] == 0 and record["final"]["concise"] is None
    assert record["final"]["scratch"]["epoch"] == 2 and record["final"]["scratch"]["test_acc"] is not None
    assert record["comparison"]["agree"] is None
    lines = table()
    assert "interrupted" in lines[1] and "0/2" in lines[1]
    assert "scratch 2/2" in lines[3] and "concise 0/2" in lines[3]


def test_a_compare_stopped_before_any_epoch_leaves_no_folder(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stop_at_epoch_call(monkeypatch, 1)
    result = invoke("compare", "--epochs", "1", "--data-dir", synthetic_data_dir, "--device", "cpu")
    assert result.exit_code == 130
    assert listed() == []


def test_plot_of_a_compare_run_names_its_two_checkpoints(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("compare", "--epochs", "1", "--data-dir", synthetic_data_dir, "--device", "cpu").exit_code == 0
    [record] = listed()
    result = invoke("plot", record["path"], "--out", tmp_path / "curves.png")
    assert_clean(result)
    assert result.exit_code == 1 and "compare" in result.stderr
    assert str(Path(record["path"]) / "scratch.pt") in helpers.flat(result.stderr)


# --------------------------------------------------------------------------- the resume chain


@pytest.fixture
def resumed_chain(synthetic_data_dir, tmp_path, monkeypatch) -> tuple[dict, dict]:
    """An interrupted run (1 of 3 epochs) and the run that resumes it to 3; both as `runs --json` lists them."""
    monkeypatch.chdir(tmp_path)
    stop_at_epoch_call(monkeypatch, 2)
    result = train(synthetic_data_dir, "--epochs", "3")
    assert result.exit_code == 130, result.output
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    text = helpers.flat(result.stderr)
    command = shlex.split(text[text.index("Continue with: ") + len("Continue with: ") :])
    assert command[:3] == ["softmax", "train", "--resume"]
    resumed = invoke(*command[1:], "--json")
    assert resumed.exit_code == 0, resumed.output
    newer, older = listed()
    return older, newer


def test_a_resumed_run_and_the_run_it_continues_are_linked_both_ways(resumed_chain):
    older, newer = resumed_chain
    assert older["status"] == "interrupted" and older["epochs_done"] == 1
    assert newer["status"] == "finished" and newer["epochs_done"] == 3 and newer["start_epoch"] == 1
    assert newer["resumed_from"] == older["path"] and older["resumed_by"] == [newer["path"]]
    assert newer["resumed_from_checkpoint"] == str(Path(older["checkpoint"]).absolute())
    assert newer["resumed_by"] == [] and older["resumed_from"] is None
    lines = table()
    assert lines[2].strip() == newer["path"] and lines[3].strip() == f"↳ continues {older['path']}"
    assert "interrupted → resumed" in lines[4] and lines[5].strip() == older["path"]


def test_listing_is_read_only_and_links_a_summary_from_before_runs_named_the_run(resumed_chain):
    """Summaries written before this version named the checkpoint in resumed_from: the chain is found by it."""
    older, newer = resumed_chain
    path = Path(newer["path"]) / runs.SUMMARY_NAME
    summary = json.loads(path.read_text())
    summary["resumed_from"] = summary.pop("resumed_from_checkpoint")
    path.write_text(json.dumps(summary))
    before = helpers.tree_digest(Path("runs"))
    again_newer, again_older = listed()
    assert again_newer["resumed_from"] == older["path"] and again_older["resumed_by"] == [newer["path"]]
    assert helpers.tree_digest(Path("runs")) == before


def test_tensorboard_says_which_run_a_resumed_run_continues(resumed_chain):
    older, newer = resumed_chain
    continued = f"scratch/{Path(older['path']).name}"  # its name under `tensorboard --logdir runs`
    assert session_start(Path(newer["path"])).hparams["continues"].string_value == continued
    assert continued in text_card(Path(newer["path"]), "run") and "epoch 1" in text_card(Path(newer["path"]), "run")


# --------------------------------------------------------------------------- --name


def test_a_named_run_has_its_folder_and_is_shown_by_runs_plot_and_tensorboard(
    synthetic_data_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    payload = train_json(synthetic_data_dir, "--name", "baseline run")
    folder = Path("runs") / "scratch" / "baseline run"
    assert payload["log_dir"] == str(folder) and payload["name"] == "baseline run"
    [record] = listed()
    assert record["name"] == "baseline run" and record["path"] == str(folder) and record["status"] == "finished"
    assert table()[2].strip() == str(folder)
    # `runs` finds it from the impl's folder too, though its name has no timestamp.
    assert only_json(invoke("runs", "--runs-dir", folder.parent, "--json"))["runs"][0]["name"] == "baseline run"
    other = train_json(synthetic_data_dir, "--lr", "0.05")
    plotted = invoke("plot", folder, other["log_dir"], "--out", tmp_path / "curves.png", "--json")
    assert plotted.exit_code == 0, plotted.output
    assert [run["label"] for run in only_json(plotted)["runs"]] == ["baseline run", "lr 0.05"]
    assert session_start(folder).hparams["name"].string_value == "baseline run"
    assert "baseline run" in text_card(folder, "run")


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "tab\there", " padded", "x" * 256])
def test_a_bad_name_is_a_usage_error_and_makes_no_folder(name, synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train(synthetic_data_dir, "--name", name)
    assert_clean(result)
    assert result.exit_code == 2 and "--name" in result.stderr, result.output
    assert not Path("runs").exists()


def test_a_name_already_taken_is_refused_before_training(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train_json(synthetic_data_dir, "--name", "mine")
    before = helpers.tree_digest(Path("runs"))
    result = train(synthetic_data_dir, "--name", "mine")
    assert_clean(result)
    assert result.exit_code == 2 and "already exists" in helpers.flat(result.stderr)
    assert helpers.tree_digest(Path("runs")) == before
    # The same name under another impl is another folder.
    assert train_json(synthetic_data_dir, "--name", "mine", "--impl", "concise")["log_dir"] == str(
        Path("runs") / "concise" / "mine"
    )


def test_a_named_sweep_has_its_folder_and_its_name_in_the_summary(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = ["--lr", "0.1", "--epochs", "1", "--data-dir", synthetic_data_dir, "--device", "cpu"]
    result = invoke("sweep", *options, "--name", "first-grid", "--json")
    assert result.exit_code == 0, result.output
    assert only_json(result)["run_dir"] == str(Path("runs") / "sweep" / "first-grid")
    [record] = listed()
    assert record["name"] == "first-grid" and record["path"] == str(Path("runs") / "sweep" / "first-grid")
    again = invoke("sweep", *options, "--name", "first-grid")
    assert again.exit_code == 2 and "already exists" in helpers.flat(again.stderr)


# --------------------------------------------------------------------------- TensorBoard


def test_the_tensorboard_command_shows_the_run_by_its_name(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train(synthetic_data_dir, "--name", "tb")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stderr.splitlines() if line.startswith("TensorBoard: "))
    command, shown = line.removeprefix("TensorBoard: ").split(" (this run: ")
    words = shlex.split(command)
    assert words[:2] == ["tensorboard", "--logdir"]
    # TensorBoard names a run by its folder's path relative to --logdir.
    assert shown.rstrip(")") == (Path("runs") / "scratch" / "tb").relative_to(words[2]).as_posix() == "scratch/tb"


def test_hparams_integers_are_written_so_they_read_as_integers(synthetic_data_dir, tmp_path, monkeypatch):
    """TensorBoard's HPARAMS table prints every number with 5 significant digits ("3.0000"); text is
    printed as is, so the integer settings are text and the others stay numbers."""
    monkeypatch.chdir(tmp_path)
    payload = train_json(synthetic_data_dir, "--epochs", "3", "--batch-size", "64")
    hparams = session_start(Path(payload["log_dir"])).hparams
    assert {key: hparams[key].string_value for key in ("epochs", "batch_size", "seed")} == {
        "epochs": "3",
        "batch_size": "64",
        "seed": "326",
    }
    assert hparams["lr"].number_value == 0.1 and hparams["standardize"].WhichOneof("kind") == "bool_value"
