"""`softmax bench`: it runs, its JSON has the documented shape, bad options are usage errors.

No timing assertions: the figures depend on the machine and whatever else runs on it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import pytest

from softmax_cli.bench import measure as bench
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
    "rss_after_imports_mib",
    "workers_peak_rss_mib",
    "process_maxrss_mib",
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
    "imports",
    "help",
    "startup",
    "targets",
}


def invoke(*args: str):
    return helpers.invoke("bench", *args)


def rss_slack_mib() -> float:
    """How far two readings of one process's RSS high-water mark may disagree, in MiB.

    The peak itself never falls, but its readings are approximate. Linux (6.2 on) keeps a
    process's RSS in per-CPU counters (file, anon and shmem pages) and sums them only now and
    then; a read that does not sum them, such as the high-water mark recorded when memory is
    unmapped (part of VmHWM) or the one taken at exit (ru_maxrss), can be off by up to
    batch - 1 pages per CPU per counter, batch = max(32, 2 x online CPUs). Two readings can
    therefore disagree by twice that: with 4 KiB pages 1.5 MiB on 2 CPUs, 12 MiB on 16,
    190 MiB on 64. It counts the host's online CPUs, which a container limited to two of them
    does not reduce (os.cpu_count() reports them, the affinity mask would not). The gaps
    compared below are ~15 MiB (a row's data and training after its imports) and ~125 MiB
    (interpreter teardown after `import torch`), so on small hosts the checks stay tight.
    """
    cpus = os.cpu_count() or 1
    pages_per_read = 3 * cpus * (max(32, 2 * cpus) - 1)
    return 2 * pages_per_read * resource.getpagesize() / (1024 * 1024)


def assert_not_below(later: float, earlier: float, what: str) -> None:
    """later >= earlier, two high-water readings, up to rss_slack_mib()."""
    slack = rss_slack_mib()
    assert later >= earlier - slack, f"{what}: {later:.1f} MiB < {earlier:.1f} MiB - {slack:.1f} MiB slack"


def test_quick_json_has_the_documented_fields(synthetic_data_dir):
    result = invoke("--quick", "--json", "--device", "cpu", "--workers", "1", "--data-dir", str(synthetic_data_dir))
    assert result.exit_code == 0, result.stderr + repr(result.exception)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, "stdout must carry exactly one JSON object"
    payload = json.loads(lines[0])

    assert set(payload) == TOP_FIELDS
    assert payload["timing_statistic"] == "median"
    assert payload["memory_mode"] == "in-process"  # --quick runs the rows in this process
    settings = payload["settings"]
    assert settings["threads"] is None
    assert settings["quick"] is True and settings["epochs"] == 1 and settings["workers"] == 1
    assert settings["batch_size"] == 256 and settings["device"] == "cpu" and settings["lr"] == 0.1
    assert settings["max_batches"] == bench.QUICK_MAX_BATCHES and settings["train_examples"] == 600

    keys = [row["key"] for row in payload["rows"]]
    assert keys == ["book-w0", "book-w1", "article-w1", "memory-data", "memory-concise", "memory-scratch"]
    for row in payload["rows"]:
        assert set(row) == ROW_FIELDS, row["key"]
        assert row["examples_per_epoch"] == 600 and row["batches_per_epoch"] == 3  # 600 images, batch 256
        assert len(row["epoch_seconds"]) == 1
        assert row["seconds_per_epoch"] > 0 and row["examples_per_s"] > 0 and row["speedup"] > 0
        assert row["peak_rss_mib"] > 0 and row["torch_threads"] >= 1
        # In-process figures are process-wide, so no per-row ones are claimed.
        assert row["rss_after_imports_mib"] is None and row["workers_peak_rss_mib"] is None
        assert row["process_maxrss_mib"] is None
        if row["impl"] is None:
            assert row["final_train_loss"] is None
        else:
            assert row["final_train_loss"] > 0
    by_key = {row["key"]: row for row in payload["rows"]}
    assert by_key["article-w1"]["per_batch_sync"] is True
    assert payload["baseline"] in ("book-w0", "book-w1", "article-w1")
    assert [row["is_baseline"] for row in payload["rows"]].count(True) == 1
    assert by_key[payload["baseline"]]["speedup"] == pytest.approx(1.0)

    # A smoke run skips the seconds-long probes and judges no target, and says so with null / empty.
    assert payload["imports"] is None and payload["help"] == [] and payload["targets"] == []
    assert payload["startup"] is None

    # With --json the JSON object alone is the result: no human table on stderr.
    assert "memory loader, scratch" not in result.stderr and "s/epoch" not in result.stderr


def test_workers_zero_collapses_the_book_rows():
    assert [row.key for row in bench.plan_rows(0)] == [
        "book-w0",
        "article-w0",
        "memory-data",
        "memory-concise",
        "memory-scratch",
    ]
    assert [row.workers for row in bench.plan_rows(4)][:3] == [0, 4, 4]


@pytest.mark.parametrize(
    "args",
    [
        ["--epochs", "0"],
        ["--batch-size", "0"],
        ["--workers", "-1"],
        ["--threads", "0"],
        ["--device", "tpu"],
        ["--device", "cuda:99"],  # no such GPU, with or without CUDA
        ["--startup-only"],  # with --quick, which skips the start-up probes
        ["--no-such-option"],
    ],
)
def test_bad_options_are_usage_errors(args, synthetic_data_dir):
    result = invoke("--quick", "--json", "--data-dir", str(synthetic_data_dir), *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""


def test_an_isolated_row_reports_its_own_process(synthetic_data_dir):
    spec = next(row for row in bench.plan_rows(0) if row.key == "memory-concise")
    settings = bench.BenchSettings(
        data_dir=synthetic_data_dir, device="cpu", epochs=1, workers=0, max_batches=2, threads=1
    )
    row = bench.measure_row_isolated(spec, settings)
    assert row["key"] == "memory-concise" and row["examples_per_epoch"] == 512 and row["batches_per_epoch"] == 2
    assert row["torch_threads"] == 1
    assert row["rss_after_imports_mib"] > 0
    assert_not_below(row["peak_rss_mib"], row["rss_after_imports_mib"], "peak vs after imports (VmHWM, VmHWM)")
    assert_not_below(row["process_maxrss_mib"], row["peak_rss_mib"], "whole process vs in-process (ru_maxrss, VmHWM)")


def test_a_failing_subprocess_is_a_bench_error():
    # The row worker refuses a malformed command line before importing torch: cheap to provoke.
    with pytest.raises(bench.BenchError, match="row 'x' failed \\(exit 2\\): usage"):
        bench._run_json_subprocess([sys.executable, "-m", "softmax_cli.bench.measure", "not-a-row"], "row 'x'")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_children_peak_rss_sees_a_live_child():
    assert bench.peak_rss_mib() > 0
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while bench.children_peak_rss_mib() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bench.children_peak_rss_mib() > 0
    finally:
        child.kill()
        child.wait()


def test_import_and_help_probes():
    imports = bench.measure_imports()
    assert imports["total_s"] > 0 and imports["peak_rss_mib"] > 0
    assert_not_below(imports["process_maxrss_mib"], imports["peak_rss_mib"], "whole probe vs in-probe")
    assert imports["total_s"] == pytest.approx(imports["torch_s"] + imports["torchvision_s"] + imports["tensorboard_s"])
    (root, sub) = bench.measure_help([[], ["bench"]], repeats=1)
    assert root["command"] == "softmax --help" and sub["command"] == "softmax bench --help"
    assert root["median_s"] > 0 and len(sub["runs"]) == 1


def test_targets_are_computed_from_the_rows():
    def row(key, loader, seconds, rss=700.0):
        return {"key": key, "loader": loader, "seconds_per_epoch": seconds, "peak_rss_mib": rss}

    rows = [
        row("book-w0", "dataloader", 3.0),
        row("book-w4", "dataloader", 2.0),
        row("memory-concise", "memory", 0.05),
        row("memory-scratch", "memory", 0.08, rss=900.0),
    ]
    for r in rows:
        r["process_maxrss_mib"] = r["peak_rss_mib"] + 100
    imports = {"peak_rss_mib": 700.0, "process_maxrss_mib": 800.0}
    helps = [{"command": "softmax --help", "median_s": 0.2}, {"command": "softmax train --help", "median_s": 0.4}]
    targets = {t["target"]: t for t in bench.evaluate_targets(rows, imports, helps, isolate=True)}
    assert all(set(t) == {"target", "value", "limit", "met"} for t in targets.values())
    speed = next(t for name, t in targets.items() if name.startswith("memory loader"))
    assert speed["value"] == pytest.approx(25.0) and speed["met"]  # fastest book 2.0 / slower memory 0.08
    assert targets["scratch within 1.3x of concise per epoch"]["met"] is False  # 1.6x
    rss = {name: t for name, t in targets.items() if "RSS" in name}
    assert len(rss) == 4
    assert [t["met"] for name, t in rss.items() if name.startswith("memory-concise")] == [True, True]
    assert [t["met"] for name, t in rss.items() if name.startswith("memory-scratch")] == [False, False]
    help_target = next(t for name, t in targets.items() if name.startswith("every --help"))
    assert "train" in help_target["target"] and help_target["met"] is False
    # In-process figures are not per row, so no memory target is claimed from them.
    assert not any("RSS" in name for name in (t["target"] for t in bench.evaluate_targets(rows, imports, helps, False)))


def test_startup_probes_time_whole_processes_against_import_torch(tmp_path):
    from softmax_cli.bench import startup as bench_startup
    from softmax_cli.data.fashion_mnist import RAW_MD5
    from softmax_cli.data.verified import VerifiedStamp, record_written

    # Synthetic files recorded as the official ones, so that `download` finds nothing to do (no network).
    folder = helpers.write_synthetic_dataset(tmp_path / "data", n_train=300, n_test=100)
    stamp = VerifiedStamp(folder)
    for name, md5 in RAW_MD5.items():
        record_written(stamp, folder / name, md5, None)

    startup = bench_startup.measure_startup(tmp_path / "data", "cpu", has_runs=False, rounds=1)

    keys = [command["key"] for command in startup["commands"]]
    assert keys == ["import-torch", "download-noop", "eval", "train-1", "train-10"]
    assert startup["rounds"] == 1 and startup["baseline"] == "import-torch"
    for command in startup["commands"]:
        assert len(command["runs"]) == 1 and command["median_s"] == command["runs"][0] > 0
        assert command["ratio_to_import_torch"] == pytest.approx(
            command["median_s"] / startup["commands"][0]["median_s"]
        )
    targets = {t["target"].split(" <=")[0]: t for t in bench_startup.startup_targets(startup)}
    assert set(targets) == {"softmax download (no-op)", "softmax eval CHECKPOINT", "softmax train --epochs 10"}
    assert targets["softmax eval CHECKPOINT"]["limit"] == 1.5 and startup["device"] == "cpu"


def test_a_failing_startup_probe_is_one_error(tmp_path):
    from softmax_cli.bench import startup as bench_startup
    from softmax_cli.data.verified import STAMP_NAME

    # Files that are not the official ones and not recorded as verified: train refuses them (no network needed).
    (helpers.write_synthetic_dataset(tmp_path / "data", n_train=20, n_test=10) / STAMP_NAME).unlink()
    with pytest.raises(bench_startup.StartupError, match="cannot train the checkpoint .*not the official"):
        bench_startup.measure_startup(tmp_path / "data", "cpu", has_runs=False, rounds=1)
