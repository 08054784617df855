"""`softmax bench`: it runs, its JSON has the documented shape, bad options are usage errors.

No timing assertions: the figures depend on the machine and whatever else runs on it.
"""

from __future__ import annotations

import sys

import pytest

from softmax_cli.bench import pipelines
from tests import helpers

ROW_FIELDS = {
    "key",
    "label",
    "loader",
    "impl",
    "workers",
    "per_batch_sync",
    "device",
    "examples_per_epoch",
    "batches_per_epoch",
    "setup_seconds",
    "warmup_seconds",
    "epoch_seconds",
    "seconds_per_epoch",
    "seconds_mean",
    "seconds_min",
    "examples_per_s",
    "final_train_loss",
    "peak_rss_mib",
    "torch_threads",
    "speedup",
    "is_baseline",
}
TOP_FIELDS = {
    "settings",
    "timing_statistic",
    "timed",
    "memory_mode",
    "memory_note",
    "environment",
    "baseline",
    "rows",
}


def invoke(*args: str):
    return helpers.invoke("bench", *args)


def test_json_has_the_documented_fields(synthetic_data_dir):
    result = invoke("--epochs", "1", "--json", "--device", "cpu", "--workers", "1", "--data-dir", synthetic_data_dir)
    assert result.exit_code == 0, result.stderr + repr(result.exception)
    payload = helpers.only_json(result)

    assert set(payload) == TOP_FIELDS
    assert payload["timing_statistic"] == "median"
    assert payload["memory_mode"] == ("row" if sys.platform.startswith("linux") else "so-far")
    settings = payload["settings"]
    assert settings["epochs"] == 1 and settings["workers"] == 1 and settings["warmup_epochs"] == 1
    assert settings["batch_size"] == 256 and settings["device"] == "cpu" and settings["lr"] == 0.1
    assert settings["train_examples"] == 600

    keys = [row["key"] for row in payload["rows"]]
    assert keys == ["book-w0", "book-w1", "article-w1", "memory-data", "memory-concise", "memory-scratch"]
    for row in payload["rows"]:
        assert set(row) == ROW_FIELDS, row["key"]
        assert row["examples_per_epoch"] == 600 and row["batches_per_epoch"] == 3  # 600 images, batch 256
        assert len(row["epoch_seconds"]) == 1
        assert row["seconds_per_epoch"] > 0 and row["examples_per_s"] > 0 and row["speedup"] > 0
        assert row["peak_rss_mib"] > 0 and row["torch_threads"] >= 1
        if row["impl"] is None:
            assert row["final_train_loss"] is None
        else:
            assert row["final_train_loss"] > 0
    by_key = {row["key"]: row for row in payload["rows"]}
    assert by_key["article-w1"]["per_batch_sync"] is True
    assert payload["baseline"] in ("book-w0", "book-w1", "article-w1")
    assert [row["is_baseline"] for row in payload["rows"]].count(True) == 1
    assert by_key[payload["baseline"]]["speedup"] == pytest.approx(1.0)
    if payload["memory_mode"] == "row":
        # Each row's peak is its own: the memory loader's rows import no torchvision, so they
        # never reach the book's, which ran after them.
        assert by_key["memory-scratch"]["peak_rss_mib"] < by_key["book-w0"]["peak_rss_mib"]

    # With --json the JSON object alone is the result: no human table on stderr.
    assert "memory loader, scratch" not in result.stderr and "s/epoch" not in result.stderr


def test_workers_zero_collapses_the_book_rows():
    assert [row.key for row in pipelines.plan_rows(0)] == [
        "book-w0",
        "article-w0",
        "memory-data",
        "memory-concise",
        "memory-scratch",
    ]
    assert [row.workers for row in pipelines.plan_rows(4)][:3] == [0, 4, 4]


def test_rows_run_lightest_first():
    order = [row.key for row in pipelines.lightest_first(pipelines.plan_rows(2))]
    assert order == ["memory-data", "memory-scratch", "memory-concise", "book-w0", "book-w2", "article-w2"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_peak_rss_comes_down_when_reset():
    ballast = bytearray(256 * 1024 * 1024)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # touch every page
    high = pipelines.peak_rss_mib()
    del ballast
    assert pipelines.reset_peak_rss()
    assert pipelines.peak_rss_mib() < high - 200


def test_help_shows_only_the_learners_options():
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    for kept in ("--epochs", "--batch-size", "--workers", "--device", "--data-dir", "--json"):
        assert kept in result.stdout, kept
    for gone in ("--startup-only", "--sweep", "--quick", "--threads", "--isolate"):
        assert gone not in result.stdout, gone


@pytest.mark.parametrize(
    "args",
    [
        ["--epochs", "0"],
        ["--batch-size", "0"],
        ["--workers", "-1"],
        ["--workers", "65"],
        ["--device", "tpu"],
        ["--device", "cuda:99"],  # no such GPU, with or without CUDA
        ["--startup-only"],  # moved to benchmarks/startup.py
        ["--sweep"],  # moved to benchmarks/sweep.py
        ["--no-such-option"],
    ],
)
def test_bad_options_are_usage_errors(args, synthetic_data_dir):
    result = invoke("--epochs", "1", "--json", "--data-dir", synthetic_data_dir, *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
