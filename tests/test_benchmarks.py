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
SMOKE_TESTED = {"busy", "memory", "startup", "sweep"}


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
