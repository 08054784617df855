"""The project's own probes in benchmarks/: each script runs, with its smallest settings, on synthetic data.

Smoke tests: a script exits 0 and says what it measured; no timing is asserted (the figures
depend on the machine and whatever else runs on it).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import helpers

BENCHMARKS = helpers.PROJECT_ROOT / "benchmarks"
# faults.py is smoke-tested beside the faults it checks, in tests/test_faults_killed.py.
SMOKE_TESTED = {"busy", "faults", "memory", "startup", "sweep"}


def run_script(name: str, *args) -> subprocess.CompletedProcess:
    """`python benchmarks/NAME.py ARGS` from the project root; it must exit 0."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=helpers.PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    return done


def test_every_script_has_a_smoke_test():
    assert {path.stem for path in BENCHMARKS.glob("*.py")} == SMOKE_TESTED


@pytest.mark.parametrize("name", sorted(SMOKE_TESTED))
def test_every_script_says_what_it_measures(name):
    assert run_script(name, "--help").stdout.startswith("usage: ")


@pytest.mark.benchmarks
def test_sweep_times_both_sides_and_checks_they_agree(synthetic_data_dir):
    """A small grid as one sweep process and as train processes, and stacked epochs against one run's;
    both sides end with the same metrics."""
    done = run_script("sweep", "--quick", "--json", "--data-dir", synthetic_data_dir, "--device", "cpu")
    payload = json.loads(done.stdout)
    processes, epochs = payload["processes"], payload["epochs"]
    assert processes["configs"] == 2 and len(processes["train_seconds"]) == 2 and len(processes["sweep_seconds"]) == 1
    assert processes["agreeing_within_1e-4"] == 2 and processes["differing"] == []
    assert [row["k"] for row in epochs["stacked"]] == [1, 4]
    assert all(row["seconds_per_epoch"] > 0 for row in epochs["stacked"])
    assert payload["targets"] == []  # a smoke run judges nothing
    assert payload["settings"]["commands"][0].startswith("softmax sweep --data-dir")


@pytest.mark.benchmarks
def test_memory_runs_each_row_in_a_process_of_its_own(synthetic_data_dir):
    done = run_script(
        "memory", "--json", "--epochs", "1", "--workers", "1", "--threads", "1", "--data-dir", synthetic_data_dir
    )
    result = json.loads(done.stdout)
    keys = [row["key"] for row in result["rows"]]
    assert keys == ["book-w0", "book-w1", "article-w1", "memory-data", "memory-concise", "memory-scratch"]
    for row in result["rows"]:
        assert row["torch_threads"] == 1 and row["examples_per_epoch"] == 600
        assert row["rss_after_imports_mib"] > 0 and row["peak_rss_mib"] > 0 and row["process_maxrss_mib"] > 0
    if sys.platform.startswith("linux"):  # the workers' peaks are read from /proc
        assert result["rows"][1]["workers_peak_rss_mib"] > 0
    assert result["imports"]["peak_rss_mib"] > 0 and result["imports"]["process_maxrss_mib"] > 0
    assert len(result["targets"]) == 6 and all(set(t) == {"target", "value", "limit", "met"} for t in result["targets"])


@pytest.mark.benchmarks
def test_startup_times_whole_processes_against_import_torch(tmp_path):
    # Synthetic files recorded as verified (against their own md5s): `download` finds nothing to do (no network).
    helpers.write_synthetic_dataset(tmp_path / "data", n_train=300, n_test=100)

    done = run_script("startup", "--json", "--rounds", "1", "--help-repeats", "1", "--data-dir", tmp_path / "data")
    result = json.loads(done.stdout)
    keys = [command["key"] for command in result["startup"]["commands"]]
    assert keys == [
        "import-torch",
        "concise-floor",
        "download-noop",
        "eval",
        "runs",
        "train-1",
        "train-10",
        "train-10-concise",
    ]
    assert all(len(command["runs"]) == 1 for command in result["startup"]["commands"])
    assert result["imports"]["total_s"] > 0
    helps = [entry["command"] for entry in result["help"]]
    assert helps[0] == "softmax --help" and "softmax bench --help" in helps and "softmax train --help" in helps
    assert len(result["targets"]) == 6  # five start-up targets and the --help one


@pytest.mark.benchmarks
def test_busy_times_training_quiet_and_beside_a_busy_process(synthetic_data_dir):
    options = ("--epochs", "1", "--rounds", "1", "--settings", "default")
    done = run_script("busy", *options, "--data-dir", synthetic_data_dir)
    lines = done.stdout.splitlines()
    expected = ["train, default", "compare, default", "sweep, default"]
    assert [line.split(":")[0] for line in lines] == expected
