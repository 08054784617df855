"""`softmax eval` and `softmax train --resume`, end to end through the Typer app.

Synthetic data (conftest's synthetic_data_dir: 600 train / 200 test images) keeps
each run to a fraction of a second; the real-data checks skip where the official files
are absent. Everything runs on the CPU, where resuming is expected to be bit-exact:
2 epochs + resume to 4 must give the very same tensors (torch.equal) as 4 in one go.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from softmax_cli.config import resolve_hparams
from softmax_cli.evaluation import per_class_metrics
from softmax_cli.runs import checkpoint as ckpt
from tests import helpers
from tests.helpers import InterruptAt, assert_clean, invoke, only_json, run_train, same_checkpoint, train_checkpoint

EVAL_KEYS = {"checkpoint", "impl", "epoch", "test_acc", "test_loss", "n", "per_class", "confusion_matrix"}
PER_CLASS_KEYS = {"class", "accuracy", "precision", "recall", "f1", "support"}
TIMING_KEYS = {"seconds", "examples_per_s"}  # the only history fields allowed to differ between runs


# --------------------------------------------------------------------------- helpers


def evaluate(path: Path, data_dir: Path, *options) -> dict:
    result = invoke("eval", path, "--data-dir", data_dir, "--device", "cpu", "--json", *options)
    assert_clean(result)
    assert result.exit_code == 0, result.output
    assert "test accuracy" not in result.stderr  # with --json the JSON object alone is the result
    return only_json(result)


def check_eval_payload(payload: dict, path: Path, impl: str, epoch: int, n: int) -> None:
    """Shape of eval's JSON, and every per-class figure derived from the confusion matrix."""
    assert set(payload) == EVAL_KEYS
    assert payload["checkpoint"] == str(path) and payload["impl"] == impl and payload["epoch"] == epoch
    assert payload["n"] == n
    assert math.isfinite(payload["test_loss"]) and payload["test_loss"] > 0
    matrix = payload["confusion_matrix"]
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)
    assert all(type(v) is int and v >= 0 for row in matrix for v in row)
    assert sum(map(sum, matrix)) == n
    diagonal = [matrix[k][k] for k in range(10)]
    assert payload["test_acc"] == sum(diagonal) / n
    per_class = payload["per_class"]
    assert len(per_class) == 10 and all(set(row) == PER_CLASS_KEYS for row in per_class)
    assert [row["class"] for row in per_class] == ckpt.load_checkpoint(path)["class_names"]
    assert sum(row["support"] for row in per_class) == n
    for k, row in enumerate(per_class):
        support = sum(matrix[k])
        predicted = sum(matrix[i][k] for i in range(10))
        assert row["support"] == support
        assert row["recall"] == pytest.approx(diagonal[k] / support if support else 0.0)
        assert row["precision"] == pytest.approx(diagonal[k] / predicted if predicted else 0.0)
        assert row["accuracy"] == pytest.approx((n - support - predicted + 2 * diagonal[k]) / n)
        assert row["f1"] == pytest.approx(2 * diagonal[k] / (support + predicted) if support + predicted else 0.0)


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k not in TIMING_KEYS} for entry in history]


def assert_same_training(resumed: dict, straight: dict) -> None:
    """A resumed run's checkpoint equals the uninterrupted one, bit for bit."""
    assert resumed["epoch"] == straight["epoch"]
    assert torch.equal(resumed["weight"], straight["weight"])
    assert torch.equal(resumed["bias"], straight["bias"])
    assert same_checkpoint(resumed["optimizer_state"], straight["optimizer_state"])
    assert torch.equal(resumed["rng_state"]["shuffle"], straight["rng_state"]["shuffle"])
    assert same_checkpoint(resumed["input_standardization"], straight["input_standardization"])
    assert resumed["hparams"] == straight["hparams"]
    assert without_timing(resumed["history"]) == without_timing(straight["history"])


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def scratch_2(synthetic_data_dir, tmp_path_factory) -> Path:
    """A book-preset scratch checkpoint after 2 of 2 epochs."""
    path, _ = train_checkpoint(
        synthetic_data_dir, tmp_path_factory.mktemp("scratch-2"), "--impl", "scratch", "--epochs", "2"
    )
    return path


# --------------------------------------------------------------------------- 2. softmax eval


EVAL_CONFIGS = {
    "scratch": ["--impl", "scratch"],
    "concise": ["--impl", "concise"],
    "concise-tuned": ["--impl", "concise", "--preset", "tuned"],  # momentum, cosine, standardised pixels
    "scratch-dataloader": ["--impl", "scratch", "--loader", "dataloader", "--workers", "0"],
}


@pytest.mark.parametrize("config", EVAL_CONFIGS, ids=list(EVAL_CONFIGS))
def test_eval_reports_the_accuracy_train_reported(config, synthetic_data_dir, tmp_path):
    path, trained = train_checkpoint(synthetic_data_dir, tmp_path, "--epochs", "2", *EVAL_CONFIGS[config])
    payload = evaluate(path, synthetic_data_dir)
    check_eval_payload(payload, path, trained["impl"], epoch=2, n=200)
    assert payload["test_acc"] == trained["history"][-1]["test_acc"]


def test_eval_results_go_to_stdout(scratch_2, synthetic_data_dir):
    result = invoke("eval", scratch_2, "--data-dir", synthetic_data_dir, "--device", "cpu")
    assert_clean(result)
    assert result.exit_code == 0
    assert "test accuracy" in result.stdout and "Confusion matrix" in result.stdout
    assert "Shirt" in result.stdout and "F1" in result.stdout and "1-vs-rest" not in result.stdout
    assert result.stderr == ""


def test_eval_batch_size_changes_nothing_but_rounding(scratch_2, synthetic_data_dir):
    default = evaluate(scratch_2, synthetic_data_dir)
    small = evaluate(scratch_2, synthetic_data_dir, "--batch-size", "7")
    check_eval_payload(small, scratch_2, "scratch", epoch=2, n=200)
    assert small["confusion_matrix"] == default["confusion_matrix"]
    assert small["test_acc"] == default["test_acc"]
    assert small["test_loss"] == pytest.approx(default["test_loss"], rel=1e-5)


def test_eval_refuses_an_unknown_device(scratch_2, synthetic_data_dir):
    result = invoke("eval", scratch_2, "--data-dir", synthetic_data_dir, "--device", "tpu")
    assert_clean(result)
    assert result.exit_code == 2 and "--device" in result.output and result.stdout == ""


@pytest.mark.realdata
@pytest.mark.parametrize("impl", ["scratch", "concise"])
def test_ten_book_epochs_on_real_data_reach_the_books_accuracy_and_eval_agrees(impl, imported_real_data_dir, tmp_path):
    path, trained = train_checkpoint(imported_real_data_dir, tmp_path, "--impl", impl)
    last = trained["history"][-1]
    assert last["epoch"] == 10
    assert 0.825 <= last["test_acc"] <= 0.845
    # The seed article: train loss 0.4472 after 10 concise epochs.
    assert last["train_loss"] == pytest.approx(0.4472, abs=0.01)
    payload = evaluate(path, imported_real_data_dir)
    check_eval_payload(payload, path, impl, epoch=10, n=10_000)
    assert payload["test_acc"] == last["test_acc"]


# --------------------------------------------------------------------------- per-class metrics


def test_per_class_metrics_from_a_known_matrix():
    confusion = torch.zeros(10, 10, dtype=torch.int64)
    confusion[0, 0], confusion[0, 1] = 8, 2  # class 0: 10 examples, 8 right, 2 called class 1
    confusion[1, 1], confusion[1, 0] = 5, 5  # class 1: 10 examples, 5 right, 5 called class 0
    confusion[2, 1] = 4  # class 2: never predicted, 4 examples all called class 1
    names = [f"c{k}" for k in range(10)]
    rows = per_class_metrics(confusion, names)
    n = 24
    assert [row["class"] for row in rows] == names
    assert rows[0] == {
        "class": "c0",
        "accuracy": (8 + (n - 10 - 13 + 8)) / n,
        "precision": 8 / 13,
        "recall": 8 / 10,
        "f1": pytest.approx(2 * 8 / (10 + 13)),
        "support": 10,
    }
    assert rows[1] == {
        "class": "c1",
        "accuracy": (5 + (n - 10 - 11 + 5)) / n,
        "precision": 5 / 11,
        "recall": 5 / 10,
        "f1": pytest.approx(2 * 5 / (10 + 11)),
        "support": 10,
    }
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert rows[2] == {"class": "c2", "accuracy": (n - 4) / n, **zero, "support": 4}
    assert rows[5] == {"class": "c5", "accuracy": 1.0, **zero, "support": 0}
    assert all(type(row["support"]) is int for row in rows)  # JSON-ready, not tensors
    json.dumps(rows)


def test_per_class_metrics_of_an_empty_matrix_are_zero():
    rows = per_class_metrics(torch.zeros(10, 10, dtype=torch.int64), [str(k) for k in range(10)])
    assert all(row["accuracy"] == row["precision"] == row["recall"] == row["f1"] == 0.0 for row in rows)
    assert all(row["support"] == 0 for row in rows)


# --------------------------------------------------------------------------- 3. train --resume


RESUME_CONFIGS = {
    "scratch": ["--impl", "scratch"],
    "concise": ["--impl", "concise"],
    "scratch-momentum": ["--impl", "scratch", "--momentum", "0.9"],
    "concise-momentum": ["--impl", "concise", "--momentum", "0.9"],
    "concise-momentum-dataloader": [
        "--impl",
        "concise",
        "--momentum",
        "0.9",
        "--loader",
        "dataloader",
        "--workers",
        "0",
    ],
}


@pytest.mark.parametrize("config", RESUME_CONFIGS, ids=list(RESUME_CONFIGS))
def test_resume_equals_training_in_one_go(config, synthetic_data_dir, tmp_path):
    options = RESUME_CONFIGS[config]
    straight, _ = train_checkpoint(synthetic_data_dir, tmp_path / "straight", "--epochs", "4", *options)
    first, _ = train_checkpoint(synthetic_data_dir, tmp_path / "first", "--epochs", "2", *options)
    # Only --workers is repeated: it is not a setting of the run, and the rest comes from the checkpoint.
    workers = ["--workers", "0"] if "--workers" in options else []
    resumed, payload = train_checkpoint(
        synthetic_data_dir, tmp_path / "resumed", "--resume", first, "--epochs", "4", *workers
    )

    assert payload["epochs"] == 4 and [entry["epoch"] for entry in payload["history"]] == [1, 2, 3, 4]
    a, b = ckpt.load_checkpoint(resumed), ckpt.load_checkpoint(straight)
    assert_same_training(a, b)
    if "--momentum" in options:  # the optimizer state mattered and was carried over
        assert a["optimizer_state"] is not None
    assert ckpt.load_checkpoint(first)["epoch"] == 2  # the resumed file is only read


def test_ctrl_c_then_resume_equals_training_in_one_go(synthetic_data_dir, tmp_path):
    """The tuned preset (momentum, weight decay, cosine schedule, standardised pixels) interrupted
    after epoch 2 of 4 by a simulated Ctrl-C, then `train --resume` with no options at all."""
    straight, _ = train_checkpoint(
        synthetic_data_dir, tmp_path / "straight", "--impl", "concise", "--preset", "tuned", "--epochs", "4"
    )
    hparams = resolve_hparams({"impl": "concise", "epochs": 4}, "tuned")
    cut = helpers.fit(synthetic_data_dir, tmp_path / "cut", InterruptAt(epoch=2), **hparams.as_dict())
    assert cut.interrupted and ckpt.load_checkpoint(cut.checkpoint)["epoch"] == 2

    resumed, payload = train_checkpoint(synthetic_data_dir, tmp_path / "resumed", "--resume", cut.checkpoint)
    assert payload["epochs"] == 4 and payload["hparams"] == hparams.as_dict()
    assert_same_training(ckpt.load_checkpoint(resumed), ckpt.load_checkpoint(straight))


def test_resume_in_place_and_repeat_the_checkpoints_settings(scratch_2, synthetic_data_dir, tmp_path):
    """Options equal to the checkpoint's are fine; --checkpoint may be the file being resumed."""
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(scratch_2.read_bytes())
    result = run_train(
        synthetic_data_dir,
        tmp_path,
        "--resume",
        path,
        "--epochs",
        "3",
        "--checkpoint",
        path,
        "--impl",
        "scratch",
        "--lr",
        "0.1",
        "--batch-size",
        "256",
        "--preset",
        "book",
        "--json",
    )
    assert_clean(result)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # with --json, no human header or rows
    payload = only_json(result)
    assert [entry["epoch"] for entry in payload["history"]] == [1, 2, 3]
    assert ckpt.load_checkpoint(path)["epoch"] == 3


CONFLICTS = {
    "lr": (["--lr", "0.5", "--epochs", "4"], "--lr"),
    "impl": (["--impl", "concise", "--epochs", "4"], "--impl"),
    "batch-size": (["--batch-size", "128", "--epochs", "4"], "--batch-size"),
    "momentum": (["--momentum", "0.9", "--epochs", "4"], "--momentum"),
    "seed": (["--seed", "1", "--epochs", "4"], "--seed"),
    "loader": (["--loader", "dataloader", "--epochs", "4"], "--loader"),
    "naive-softmax": (["--naive-softmax", "--epochs", "4"], "--naive-softmax"),
    "standardize": (["--standardize", "--epochs", "4"], "--standardize"),
    "preset": (["--preset", "tuned", "--epochs", "4"], "--preset"),
    "epochs-equal": (["--epochs", "2"], "--epochs"),
    "epochs-smaller": (["--epochs", "1"], "--epochs"),
    "epochs-missing": ([], "--epochs"),  # the checkpoint already did the 2 it planned
}


@pytest.mark.parametrize("conflict", CONFLICTS, ids=list(CONFLICTS))
def test_resume_refuses_contradicting_options(conflict, scratch_2, synthetic_data_dir, tmp_path):
    options, flag = CONFLICTS[conflict]
    before = scratch_2.read_bytes()
    target = tmp_path / "out.pt"
    result = run_train(synthetic_data_dir, tmp_path, "--resume", scratch_2, *options, "--checkpoint", target, "--json")
    assert_clean(result)
    assert result.exit_code == 2, result.output
    assert flag in result.stderr and result.stdout == ""
    assert not target.exists() and not (tmp_path / "runs").exists()  # nothing started
    assert scratch_2.read_bytes() == before


def test_resume_refuses_impl_switch_on_a_concise_checkpoint(synthetic_data_dir, tmp_path):
    path, _ = train_checkpoint(synthetic_data_dir, tmp_path, "--impl", "concise", "--epochs", "1")
    result = run_train(synthetic_data_dir, tmp_path / "resumed", "--resume", path, "--impl", "scratch", "--epochs", "2")
    assert_clean(result)
    assert result.exit_code == 2 and "--impl" in result.stderr


def test_resume_refuses_to_stretch_a_cosine_schedule(synthetic_data_dir, tmp_path):
    path, _ = train_checkpoint(synthetic_data_dir, tmp_path, "--impl", "scratch", "--preset", "tuned", "--epochs", "2")
    result = run_train(synthetic_data_dir, tmp_path / "resumed", "--resume", path, "--epochs", "4")
    assert_clean(result)
    assert result.exit_code == 2 and "--epochs" in result.stderr and "cosine" in result.stderr


def test_resume_with_a_gpu_generator_state_on_cpu_is_a_clear_error(synthetic_data_dir, tmp_path):
    """A checkpoint trained on a GPU carries a Philox state that a CPU generator cannot take."""
    path, _ = train_checkpoint(synthetic_data_dir, tmp_path / "gpu-like", "--epochs", "1")
    loaded = ckpt.load_checkpoint(path)
    loaded["rng_state"]["shuffle"] = torch.zeros(16, dtype=torch.uint8)  # the size of a CUDA generator state
    ckpt.save_checkpoint(loaded, path)
    result = run_train(synthetic_data_dir, tmp_path, "--resume", path, "--epochs", "2")
    assert result.exit_code == 1
    text = helpers.flat(result.stderr)
    assert "a GPU" in text and "--device" in text and "Traceback" not in result.output
