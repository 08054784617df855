"""A run folder is untrusted input: damaged summaries and hostile folder names never break `softmax runs`.

One table of damages. The module builds every damaged run in one runs folder, then runs
`softmax runs`, `softmax runs --json` and `softmax eval` once each, in subprocesses with a
time limit (a FIFO that is opened blocks forever): each damaged run is listed, marked
damaged with its reason, and nothing hangs. The same table drives unit checks of
folders.load_summary, the one reader and checker of summaries.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from softmax_cli.cli.output import printable
from softmax_cli.runs import folders as runs
from tests import helpers
from tests.test_faults_files import POSIX_ONLY, run_cli

pytestmark = POSIX_ONLY


def good_summary(second: int) -> dict:
    """A summary as `softmax train` writes it, of a run started at 00:00:SS."""
    hparams = {"impl": "scratch", "epochs": 1, "lr": 0.1, "batch_size": 256, "seed": 326, "preset": "book"}
    return {
        "format": runs.SUMMARY_FORMAT,
        "version": runs.SUMMARY_VERSION,
        "started": f"2025-01-01T00:00:{second:02d}+00:00",
        "updated": None,
        "impl": "scratch",
        "device": "cpu",
        "hparams": hparams,
        "epochs_planned": 1,
        "epochs_done": 1,
        "train_examples": 600,
        "status": "finished",
        "checkpoint": None,
        "resumed_from": None,
        "start_epoch": 0,
        "history": [{"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "test_acc": 0.75, "test_loss": 0.6}],
    }


def json_with(**changes):
    """Write a good summary with some fields changed (None: left out)."""

    def write(path: Path, second: int) -> None:
        summary = {**good_summary(second), **changes}
        path.write_text(json.dumps({key: value for key, value in summary.items() if value is not None}))

    return write


def raw_text(text: str):
    def write(path: Path, second: int) -> None:
        path.write_text(text)

    return write


def fifo(path: Path, second: int) -> None:
    os.mkfifo(path)


def dev_zero(path: Path, second: int) -> None:
    path.symlink_to("/dev/zero")


def huge(path: Path, second: int) -> None:
    with open(path, "wb") as handle:
        handle.truncate(2**30)  # 1 GB, sparse: no disk space used


def with_lone_surrogate(path: Path, second: int) -> None:
    text = json.dumps({**good_summary(second), "checkpoint": "SURROGATE.pt"})
    path.write_text(text.replace("SURROGATE", "\\ud800"))  # the JSON escape, which json.loads accepts


DEEP = 200_000

# (id, what the folder name adds, how summary.json is written, a word of the damage reason, or None: not damaged)
DAMAGES = [
    ("fifo", "", fifo, "FIFO"),
    ("dev-zero", "", dev_zero, "character device"),
    ("huge-sparse", "", huge, "bytes"),
    ("not-json", "", raw_text("{not json"), "not JSON"),
    ("empty", "", raw_text(""), "not JSON"),
    ("nesting-200000", "", raw_text('{"history": ' + "[" * DEEP + "]" * DEEP + "}"), "not JSON"),
    ("foreign-json", "", raw_text('{"format": "something-else"}'), "not a softmax-cli run summary"),
    ("missing-status", "", json_with(status=None), "lacks status"),
    ("lr-string", "", json_with(hparams={"lr": "x"}), "lr is not a number"),
    ("seed-float", "", json_with(hparams={"seed": 1.5}), "seed is not an integer"),
    ("hparams-list", "", json_with(hparams=[0.1, 256]), "hparams is not an object"),
    ("hparams-string", "", json_with(hparams="lr=0.1"), "hparams is not an object"),
    ("history-number", "", json_with(history=3), "history is not a list"),
    ("history-entry-string", "", json_with(history=[{"epoch": 1, "test_acc": "high"}]), "history entry 1"),
    ("started-number", "", json_with(started=20250101), "started"),
    ("status-list", "", json_with(status=["finished"]), "status"),
    ("impl-number", "", json_with(impl=7), "impl"),
    ("epochs-negative", "", json_with(epochs_done=-1), "epochs_done"),
    ("newer-version", "", json_with(version=runs.SUMMARY_VERSION + 1), "newer"),
    ("lone-surrogate", "", with_lone_surrogate, "checkpoint is not text"),
    ("escape-in-name", "-\x1b[31mred\x1b]0;title\x07", raw_text("{not json"), "not JSON"),
    ("newline-in-name", "-two\nlines", json_with(), None),
    ("undecodable-name", os.fsdecode(b"-\xff\xfe"), json_with(), None),
]
IDS = [entry[0] for entry in DAMAGES]


def run_name(second: int, suffix: str) -> str:
    return f"20250101-0000{second:02d}-book-lr0.1-bs256-seed326{suffix}"


@pytest.fixture(scope="module")
def damaged_runs(tmp_path_factory, synthetic_data_dir) -> tuple[Path, dict[str, Path], Path]:
    """runs/scratch/<one folder per damage>, each started a second after the one before it; and, newest
    of all, a run whose summary is not JSON beside a real checkpoint.pt. (runs dir, folders by id, that run)"""
    base = tmp_path_factory.mktemp("damaged-runs")
    trained = helpers.train_json(synthetic_data_dir, base / "training", "--epochs", "1")
    runs_dir = base / "runs"
    (runs_dir / "scratch").mkdir(parents=True)
    folders = {}
    for second, (name, suffix, write, _) in enumerate(DAMAGES):
        folder = runs_dir / "scratch" / run_name(second, suffix)
        folder.mkdir()
        write(folder / runs.SUMMARY_NAME, second)
        folders[name] = folder
    with_checkpoint = runs_dir / "scratch" / run_name(len(DAMAGES), "")
    with_checkpoint.mkdir()
    (with_checkpoint / runs.SUMMARY_NAME).write_text("{not json")
    shutil.copy(trained["checkpoint"], with_checkpoint / runs.CHECKPOINT_NAME)
    return runs_dir, folders, with_checkpoint


@pytest.fixture(scope="module")
def listed(damaged_runs) -> tuple[str, dict]:
    """`softmax runs` and `softmax runs --json` over all of them, once each: (the table, the JSON by path)."""
    runs_dir, _, _ = damaged_runs
    table = run_cli("runs", "--runs-dir", runs_dir, timeout=60)
    assert table.returncode == 0 and table.stderr == "", table.stderr
    as_json = run_cli("runs", "--runs-dir", runs_dir, "--json", timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    assert as_json.stdout.count("\n") == 1, as_json.stdout  # one JSON object on one line
    payload = json.loads(as_json.stdout)
    return table.stdout, {record["path"]: record for record in payload["runs"]}


@pytest.mark.parametrize(("name", "suffix", "write", "reason"), DAMAGES, ids=IDS)
def test_runs_lists_a_damaged_run_marked_damaged(name, suffix, write, reason, damaged_runs, listed):
    _, folders, _ = damaged_runs
    table, by_path = listed
    folder = folders[name]
    record = by_path[str(folder)]
    lines = table.splitlines()
    path_line = lines.index("  " + printable(str(folder)))
    row = lines[path_line - 1].split()
    if reason is None:
        assert record["status"] == "finished" and record["damaged"] is None and row[-1] == "finished"
        return
    assert record["status"] == "damaged" and reason in record["damaged"], record["damaged"]
    assert record["damaged"].startswith(runs.SUMMARY_NAME)
    assert record["has_summary"] is False and record["impl"] == "scratch"
    assert record["started"].startswith("2025-01-01T00:00:")  # from the folder's name
    assert row[-1] == "damaged"


def test_names_reach_the_terminal_escaped_one_line_each(damaged_runs, listed):
    _, folders, _ = damaged_runs
    table, by_path = listed
    assert "\x1b" not in table and "\x07" not in table
    lines = table.splitlines()
    assert len(lines) == 1 + 2 * (len(DAMAGES) + 1)  # the header, then a row and a path line per run
    assert "  " + str(folders["escape-in-name"]).replace("\x1b", "\\x1b").replace("\x07", "\\x07") in lines
    assert "  " + str(folders["newline-in-name"]).replace("\n", "\\n") in lines
    assert "  " + str(folders["undecodable-name"]).replace("\udcff", "\\udcff").replace("\udcfe", "\\udcfe") in lines
    # --json keeps every name exactly as the file system has it.
    assert {str(folder) for folder in folders.values()} <= set(by_path)


def test_a_mistyped_checkpoint_gets_one_error_line_at_once(damaged_runs, synthetic_data_dir):
    runs_dir, _, with_checkpoint = damaged_runs
    done = run_cli("eval", "nope.pt", "--runs-dir", runs_dir, "--data-dir", synthetic_data_dir, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: nope.pt: no such file"), done.stderr
    assert str(with_checkpoint / runs.CHECKPOINT_NAME) in lines[0]  # the only run with a checkpoint


def test_eval_with_no_argument_takes_a_damaged_runs_own_checkpoint(damaged_runs, synthetic_data_dir):
    """The newest run's summary is damaged but its checkpoint.pt is there: that file is evaluated (and
    checked as any checkpoint is), and the note says the run is damaged."""
    runs_dir, _, with_checkpoint = damaged_runs
    done = run_cli("eval", "--runs-dir", runs_dir, "--data-dir", synthetic_data_dir, "--device", "cpu", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["checkpoint"] == str(with_checkpoint / runs.CHECKPOINT_NAME)
    note = helpers.flat(done.stderr)
    assert "No CHECKPOINT given" in note and "damaged" in note


@pytest.mark.parametrize(("name", "suffix", "write", "reason"), DAMAGES, ids=IDS)
def test_load_summary_says_what_is_damaged(name, suffix, write, reason, damaged_runs):
    folder = damaged_runs[1][name]
    if reason is None:
        assert runs.load_summary(folder) == runs.check_summary(good_summary(IDS.index(name)))
        return
    with pytest.raises(runs.DamagedSummary) as raised:
        runs.load_summary(folder)
    assert reason in str(raised.value)
    assert runs.read_summary(folder) is None  # the lenient reader: no summary to rely on


def test_a_good_summary_passes_whole_and_unknown_keys_are_left_out():
    summary = {**good_summary(1), "sweep": {"configs": 3}}
    summary["hparams"] = {**summary["hparams"], "from_the_future": [1, 2]}
    checked = runs.check_summary(summary)
    assert "sweep" not in checked and "from_the_future" not in checked["hparams"]
    assert checked["history"] == good_summary(1)["history"] and checked["hparams"]["lr"] == 0.1
