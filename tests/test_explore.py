"""Beyond the book: predictions, weight images, scratch-vs-concise comparison, the tuned recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from softmax_cli import evaluation, models
from softmax_cli.config import PRESETS, ConflictingOption, resolve_hparams
from softmax_cli.data import batches as data
from softmax_cli.pictures import figures
from softmax_cli.runs import checkpoint as ckpt
from tests.helpers import figure_pixels, invoke, train_json

SMALL_BATCHES = ("--batch-size", "64")


@pytest.fixture(scope="module")
def trained(synthetic_data_dir, tmp_path_factory) -> Path:
    """A one-epoch scratch checkpoint, only read by the tests that use it."""
    payload = train_json(synthetic_data_dir, tmp_path_factory.mktemp("explore"), *SMALL_BATCHES, "--epochs", "1")
    return Path(payload["checkpoint"])


def test_predict_writes_a_titled_grid_and_a_table(trained, synthetic_data_dir, tmp_path):
    out = tmp_path / "pred.png"
    result = invoke(
        "predict", trained, "--n", "8", "--out", out, "--data-dir", synthetic_data_dir, "--json", "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["predictions"]
    assert [row["index"] for row in rows] == list(range(8))
    with Image.open(out) as image:
        image.load()
        assert image.format == "PNG"
        # the figure predict draws for 8 images under a heading (which checkpoint), at its size x dpi
        names, images = ["T-shirt/top"] * 8, torch.zeros(8, 28, 28, dtype=torch.uint8)
        expected = figures.prediction_figure(images, names, names, [1.0] * 8, heading="x")
        assert image.size == figure_pixels(expected)
    assert "predicted" not in result.stderr  # with --json, no human table


def test_predict_only_wrong_shows_only_mistakes(synthetic_data_dir, tmp_path):
    # One epoch at a tiny learning rate leaves plenty of mistakes to show.
    weak = Path(train_json(synthetic_data_dir, tmp_path, *SMALL_BATCHES, "--epochs", "1", "--lr", "1e-4")["checkpoint"])
    result = invoke(
        "predict",
        weak,
        "--n",
        "5",
        "--only-wrong",
        "--out",
        tmp_path / "wrong.png",
        "--data-dir",
        synthetic_data_dir,
        "--json",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["predictions"]
    assert rows and all(not row["correct"] and row["true"] != row["predicted"] for row in rows)


def test_eval_exports_the_weight_templates(trained, synthetic_data_dir, tmp_path):
    out = tmp_path / "weights.png"
    result = invoke("eval", trained, "--weights-png", out, "--data-dir", synthetic_data_dir, "--device", "cpu")
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        image.load()
        # one templates figure (2 rows of 5 titled templates and a colour bar), at its size x dpi
        expected = figures.weight_templates_figure(torch.zeros(784, 10), data.class_names())
        assert image.format == "PNG" and image.size == figure_pixels(expected)


def test_compare_agrees_on_the_same_seed(synthetic_data_dir, tmp_path):
    result = invoke(
        "compare",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--data-dir",
        synthetic_data_dir,
        "--runs-dir",
        tmp_path / "runs",
        "--device",
        "cpu",
        "--json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["agree"] and payload["max_abs_diff"] <= payload["tolerance"]
    assert [epoch["epoch"] for epoch in payload["epochs"]] == [1, 2]
    assert "agree" not in result.stderr  # with --json, no human table


def test_compare_fails_when_the_scratch_update_is_wrong(synthetic_data_dir, tmp_path, monkeypatch):
    correct_sgd = models.sgd

    def sgd_forgetting_the_batch_mean(params, lr, batch_size, *args):
        correct_sgd(params, lr, 1, *args)  # the classic bug: the summed loss not divided by batch_size

    monkeypatch.setattr(models, "sgd", sgd_forgetting_the_batch_mean)
    result = invoke(
        "compare",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--lr",
        "0.001",
        "--data-dir",
        synthetic_data_dir,
        "--runs-dir",
        tmp_path / "runs",
        "--device",
        "cpu",
        "--json",
    )
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["agree"] is False
    assert "DIFFER" not in result.stderr  # with --json, no human table


def test_standardization_round_trips_through_the_checkpoint(synthetic_data_dir, tmp_path):
    payload = train_json(
        synthetic_data_dir, tmp_path, *SMALL_BATCHES, "--epochs", "2", "--standardize", "--impl", "concise"
    )
    loaded = ckpt.load_checkpoint(Path(payload["checkpoint"]))
    stats = loaded["input_standardization"]
    assert stats is not None and stats["mean"].shape == (784,) and bool((stats["std"] > 0).all())
    pixels = data.read_split(synthetic_data_dir, "train").images.reshape(-1, 784).double() / 255
    torch.testing.assert_close(stats["mean"], pixels.mean(0).float())
    result = invoke("eval", payload["checkpoint"], "--data-dir", synthetic_data_dir, "--json", "--device", "cpu")
    evaluated = json.loads(result.stdout)
    assert evaluated["test_acc"] == payload["history"][-1]["test_acc"]
    # The synthetic split is easy enough that accuracy alone would not notice missing standardisation.
    assert evaluated["test_loss"] == pytest.approx(payload["history"][-1]["test_loss"], rel=1e-6)
    unstandardized = {**loaded, "input_standardization": None}
    plain_evaluation, _ = evaluation.evaluate_checkpoint(unstandardized, synthetic_data_dir, torch.device("cpu"))
    assert plain_evaluation.loss != pytest.approx(evaluated["test_loss"], rel=1e-3)


def test_validation_split_reports_validation_accuracy(synthetic_data_dir, tmp_path):
    payload = train_json(synthetic_data_dir, tmp_path, *SMALL_BATCHES, "--epochs", "2", "--val-split", "0.2")
    assert all(0.0 <= entry["val_acc"] <= 1.0 for entry in payload["history"])
    assert payload["hparams"]["val_split"] == 0.2


def test_presets_and_explicit_overrides():
    tuned = resolve_hparams({}, "tuned")
    assert (tuned.lr, tuned.momentum, tuned.weight_decay, tuned.schedule, tuned.standardize) == (
        0.05,
        0.9,
        1e-4,
        "cosine",
        True,
    )
    assert resolve_hparams({"lr": 0.02, "momentum": None}, "tuned").lr == 0.02
    assert resolve_hparams({}, None) == resolve_hparams({}, "book")
    assert resolve_hparams({}, None).lr == PRESETS["book"]["lr"] == 0.1


def test_cosine_schedule_anneals_to_zero():
    # Resuming refuses to stretch it: test_eval_resume checks that through `train --resume`.
    hparams = resolve_hparams({}, "tuned")
    assert hparams.lr_at(0.0) == 0.05 and hparams.lr_at(1.0) == pytest.approx(0.0, abs=1e-12)
    assert hparams.lr_at(0.5) == pytest.approx(0.025)


@pytest.mark.realdata
def test_tuned_preset_beats_the_book_on_real_data(imported_real_data_dir, tmp_path):
    payload = train_json(imported_real_data_dir, tmp_path, "--preset", "tuned", "--impl", "concise", "--epochs", "10")
    assert payload["history"][-1]["test_acc"] >= 0.845


def test_a_finished_cosine_run_says_it_cannot_be_extended():
    hparams = resolve_hparams({}, "tuned")
    finished = {"hparams": hparams.as_dict(), "impl": hparams.impl, "seed": hparams.seed, "epoch": hparams.epochs}
    for given in ({}, {"epochs": hparams.epochs}, {"epochs": hparams.epochs + 5}):
        with pytest.raises(ConflictingOption, match="complete .* cannot be extended"):
            resolve_hparams(given, None, finished)
