"""From `softmax train` to `softmax eval` without the manual: finding checkpoints, `softmax runs`, run tags.

Every test works in its own folder (monkeypatch.chdir) so that the default --runs-dir, ./runs,
is the test's own, as it is a user's.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from softmax_cli.config import Hparams
from softmax_cli.runs import folders as runs
from tests import helpers
from tests.helpers import assert_clean, invoke, only_json


def train(data_dir: Path, *options) -> dict:
    """`softmax train` with the default --runs-dir (./runs), 1 epoch unless told otherwise; its JSON."""
    result = invoke("train", "--data-dir", data_dir, "--device", "cpu", "--epochs", "1", "--json", *options)
    assert_clean(result)
    assert result.exit_code == 0, result.output
    return only_json(result)


def one_error_line(result) -> str:
    assert_clean(result)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def trained_two_runs(synthetic_data_dir, tmp_path_factory) -> tuple[Path, dict, dict]:
    """Two trainings in ./runs of a fresh folder, once per module: an older scratch run, then a newer concise one."""
    folder = tmp_path_factory.mktemp("two-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        older = train(synthetic_data_dir, "--impl", "scratch")
        newer = train(synthetic_data_dir, "--impl", "concise", "--val-split", "0.2")
    return folder, older, newer


@pytest.fixture
def two_runs(trained_two_runs, tmp_path, monkeypatch) -> tuple[dict, dict]:
    """This test's own copy of the two runs, in ./runs of a fresh folder (their paths are relative to it)."""
    folder, older, newer = trained_two_runs
    assert not Path(older["checkpoint"]).is_absolute()
    shutil.copytree(folder / "runs", tmp_path / "runs", copy_function=shutil.copy2)
    monkeypatch.chdir(tmp_path)
    return older, newer


def test_eval_with_no_argument_evaluates_the_newest_run_and_says_which(two_runs, synthetic_data_dir):
    older, newer = two_runs
    result = invoke("eval", "--data-dir", synthetic_data_dir, "--device", "cpu", "--json")
    assert_clean(result)
    assert result.exit_code == 0, result.output
    payload = only_json(result)
    assert payload["checkpoint"] == newer["checkpoint"] and payload["impl"] == "concise"
    assert payload["test_acc"] == newer["history"][-1]["test_acc"]
    note = helpers.flat(result.stderr)
    assert "No CHECKPOINT given" in note and newer["checkpoint"] in note


def test_predict_with_no_argument_uses_the_newest_run_too(two_runs, synthetic_data_dir):
    _, newer = two_runs
    result = invoke("predict", "-n", "3", "--data-dir", synthetic_data_dir, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    payload = only_json(result)
    assert payload["checkpoint"] == newer["checkpoint"] and len(payload["predictions"]) == 3


def test_a_run_folder_stands_for_its_checkpoint(two_runs, synthetic_data_dir):
    older, _ = two_runs
    folder = Path(older["log_dir"])
    result = invoke("eval", folder, "--data-dir", synthetic_data_dir, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert only_json(result)["checkpoint"] == str(folder / "checkpoint.pt") == older["checkpoint"]


def test_a_folder_of_runs_stands_for_its_newest_run(two_runs, synthetic_data_dir):
    older, _ = two_runs
    scratch_runs = Path(older["log_dir"]).parent  # runs/scratch holds only the older run
    result = invoke("eval", scratch_runs, "--data-dir", synthetic_data_dir, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert only_json(result)["checkpoint"] == older["checkpoint"]
    assert "holds runs" in helpers.flat(result.stderr)


def test_a_missing_checkpoint_names_the_newest_and_the_command_that_works(two_runs, synthetic_data_dir):
    older, newer = two_runs
    error = one_error_line(invoke("eval", "checkpoint.pt", "--data-dir", synthetic_data_dir, "--device", "cpu"))
    assert "checkpoint.pt: no such file" in error
    assert newer["checkpoint"] in error and older["checkpoint"] in error
    assert error.index(newer["checkpoint"]) < error.index(older["checkpoint"])  # newest first
    command = re.search(r"`(softmax eval [^`]+)`", error).group(1)
    again = invoke(*shlex.split(command)[1:], "--data-dir", synthetic_data_dir, "--device", "cpu", "--json")
    assert again.exit_code == 0, again.output
    assert only_json(again)["checkpoint"] == newer["checkpoint"]


def test_with_no_runs_at_all_the_error_says_to_train_one(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["eval"], ["eval", "checkpoint.pt"], ["predict"]):
        error = one_error_line(invoke(*args, "--data-dir", synthetic_data_dir, "--device", "cpu"))
        assert "softmax train" in error and "runs" in error


def test_a_compare_folder_asks_which_of_its_two_checkpoints(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path("runs") / "compare" / f"20250101-120000-{Hparams().run_tag}"
    folder.mkdir(parents=True)
    for name in ("scratch.pt", "concise.pt"):
        (folder / name).write_bytes(b"")
    error = one_error_line(invoke("eval", folder, "--data-dir", synthetic_data_dir))
    assert "holds 2 checkpoints" in error
    assert f"softmax eval {folder / 'scratch.pt'}" in error and f"softmax eval {folder / 'concise.pt'}" in error


def test_runs_lists_every_run_newest_first_with_its_figures_and_path(two_runs, synthetic_data_dir):
    older, newer = two_runs
    result = invoke("runs")
    assert_clean(result)
    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["started", "impl"] and "test acc" in lines[0] and "status" in lines[0]
    assert [line.strip() for line in lines[2::2]] == [newer["log_dir"], older["log_dir"]]
    newest = lines[1].split()
    assert "concise" in newest and "1/1" in newest and "finished" in newest
    assert f"{newer['history'][-1]['test_acc']:.4f}" in newest
    assert f"{newer['history'][-1]['val_acc']:.4f}" in newest  # the val acc column, for a run that has one


def test_runs_json_is_one_object_with_what_each_summary_says(two_runs):
    older, newer = two_runs
    payload = only_json(invoke("runs", "--json"))
    assert payload["runs_dir"] == "runs"
    listed = payload["runs"]
    assert [run["path"] for run in listed] == [newer["log_dir"], older["log_dir"]]
    first = listed[0]
    assert first["impl"] == "concise" and first["status"] == "finished" and first["has_summary"] is True
    assert first["hparams"] == newer["hparams"]
    assert (first["epochs_done"], first["epochs_planned"]) == (1, 1)
    assert first["final"]["test_acc"] == newer["history"][-1]["test_acc"]
    assert first["checkpoint"] == newer["checkpoint"]
    assert json.loads(json.dumps(first)) == first


def test_a_run_without_a_summary_is_listed_from_its_folder_name(two_runs, synthetic_data_dir):
    """An older softmax-cli wrote no summary.json: the folder's name still tells when and which recipe."""
    older, _ = two_runs
    (Path(older["log_dir"]) / runs.SUMMARY_NAME).unlink()
    payload = only_json(invoke("runs", "--json"))
    record = next(run for run in payload["runs"] if run["path"] == older["log_dir"])
    assert record["has_summary"] is False and record["status"] == "unknown" and record["impl"] == "scratch"
    assert record["hparams"]["lr"] == 0.1 and record["hparams"]["seed"] == 326 and record["hparams"]["preset"] == "book"
    assert record["checkpoint"] == older["checkpoint"] and record["started"]
    human = invoke("runs")
    assert human.exit_code == 0 and older["log_dir"] in human.stdout and "unknown" in human.stdout
    # Still a run folder eval can take.
    evaluated = invoke("eval", older["log_dir"], "--data-dir", synthetic_data_dir, "--device", "cpu", "--json")
    assert only_json(evaluated)["checkpoint"] == older["checkpoint"]


def test_runs_lists_compare_folders_and_honours_limit(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    compared = invoke("compare", "--epochs", "1", "--data-dir", synthetic_data_dir, "--device", "cpu", "--json")
    assert compared.exit_code == 0, compared.output
    trained = train(synthetic_data_dir)
    payload = only_json(invoke("runs", "--json"))
    assert [run["impl"] for run in payload["runs"]] == ["scratch", "compare"]
    compare = payload["runs"][1]
    assert sorted(Path(path).name for path in compare["checkpoints"]) == ["concise.pt", "scratch.pt"]
    assert compare["checkpoint"] is None and compare["hparams"]["seed"] == 326
    limited = only_json(invoke("runs", "--json", "-n", "1"))
    assert [run["path"] for run in limited["runs"]] == [trained["log_dir"]]


def test_runs_of_an_empty_folder_says_so_and_prints_no_table(tmp_path):
    result = invoke("runs", "--runs-dir", tmp_path / "nothing-here")
    assert result.exit_code == 0 and result.stdout == ""
    assert "No runs" in result.stderr and "softmax train" in result.stderr
    assert only_json(invoke("runs", "--runs-dir", tmp_path, "--json"))["runs"] == []


def test_train_ends_with_the_eval_command_for_its_run(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "--data-dir", synthetic_data_dir, "--epochs", "1")
    assert result.exit_code == 0, result.output
    text = helpers.flat(result.stderr)
    command = text[text.index("Evaluate it: ") + len("Evaluate it: ") :].split(" TensorBoard:")[0]
    assert shlex.split(command)[:2] == ["softmax", "eval"] and "--device" not in command
    evaluated = invoke(*shlex.split(command)[1:], "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert Path(only_json(evaluated)["checkpoint"]).parent.parent == Path("runs") / "scratch"


# --------------------------------------------------------------------------- run tags


def test_run_tags_tell_val_split_loader_and_resume_apart():
    plain = Hparams()
    tags = {
        plain.run_tag,
        Hparams(val_split=0.1).run_tag,
        Hparams(loader="dataloader").run_tag,
        Hparams(naive_softmax=True).run_tag,
        plain.resumed_run_tag(2),
    }
    assert len(tags) == 5
    assert plain.run_tag == "book-lr0.1-bs256-seed326"  # the common case keeps its short name
    assert Hparams(val_split=0.1, loader="dataloader").resumed_run_tag(3).endswith("-val0.1-dataloader-resumed-from-3")


@pytest.mark.parametrize(
    "hparams",
    [Hparams(), Hparams(lr=1e-5, batch_size=64, seed=1, naive_softmax=True, val_split=0.25, loader="dataloader")],
)
def test_a_run_folder_name_reads_back_its_recipe(hparams):
    for tag, start in ((hparams.run_tag, 0), (hparams.resumed_run_tag(4), 4)):
        for suffix in ("", "-2"):  # make_run_dir's suffix for two runs in one second
            parsed = runs.parse_run_name(f"20260102-030405-{tag}{suffix}")
            assert parsed["start_epoch"] == start and parsed["started"].startswith("2026-01-02T03:04:05")
            for name, value in parsed["hparams"].items():
                assert getattr(hparams, name) == value, name


def test_resumed_runs_get_a_folder_that_says_so(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = train(synthetic_data_dir, "--val-split", "0.1")
    resumed = train(synthetic_data_dir, "--resume", first["checkpoint"], "--epochs", "2")
    assert Path(first["log_dir"]).name.endswith("-val0.1")
    assert Path(resumed["log_dir"]).name.endswith("-val0.1-resumed-from-1")
    record = only_json(invoke("runs", "--json"))["runs"][0]
    assert record["resumed_from"] == first["log_dir"]  # the run it continues, as listed
    assert record["resumed_from_checkpoint"] == str(Path(first["checkpoint"]).absolute())
    assert record["start_epoch"] == 1 and record["epochs_done"] == 2


def test_runs_never_imports_torch(two_runs):
    """`softmax runs` reads summaries and folder names only: instant, torch never imported.
    In a fresh interpreter, which gets the app through helpers.cli_app's own source."""
    code = textwrap.dedent(inspect.getsource(helpers.cli_app)) + textwrap.dedent("""
        import json, sys
        from typer.testing import CliRunner

        result = CliRunner().invoke(cli_app(), ["runs", "--json"])
        assert result.exit_code == 0, result.output
        assert len(json.loads(result.stdout)["runs"]) == 2
        assert "torch" not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
