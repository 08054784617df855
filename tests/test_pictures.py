"""The pictures: matplotlib figures inspected as objects, PNGs decoded, `softmax plot` end to end,
and TensorBoard's events read back with TensorBoard's own reader."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from softmax_cli.data.batches import class_names
from softmax_cli.pictures import figures as viz
from tests import helpers

NAMES = class_names()
SMALL = ("--batch-size", "64", "--epochs", "2")


def history(epochs: int, val: bool = False, test_loss: bool = True) -> list[dict]:
    """A made-up history shaped like the one `softmax train` records."""
    entries = []
    for epoch in range(1, epochs + 1):
        entry = {"epoch": epoch, "train_loss": 1 / epoch, "train_acc": 0.5 + epoch / 100, "test_acc": 0.5 + epoch / 200}
        if test_loss:
            entry["test_loss"] = 1.1 / epoch
        if val:
            entry["val_acc"] = 0.5 + epoch / 150
        entries.append(entry)
    return entries


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()  # decodes every pixel: a truncated file fails here
        assert image.format == "PNG"
        return image.size


def lines_by_label(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


# --------------------------------------------------------------------------- training curves


def test_curves_have_a_loss_and_an_accuracy_axes_with_one_line_per_run_and_metric(tmp_path):
    runs = [("lr 0.1", history(3, val=True)), ("lr 0.03", history(2))]
    figure = viz.training_curves_figure(runs, heading="2 runs, all scratch")
    loss, accuracy = figure.axes
    assert (loss.get_title(), accuracy.get_title()) == ("Loss", "Accuracy")
    assert loss.get_xlabel() == accuracy.get_xlabel() == "epoch"
    assert loss.get_ylabel() == "cross-entropy loss" and accuracy.get_ylabel() == "accuracy"
    metrics = ("train loss", "test loss")
    assert set(lines_by_label(loss)) == {f"{run}: {m}" for run in ("lr 0.1", "lr 0.03") for m in metrics}
    assert set(lines_by_label(accuracy)) == {
        "lr 0.1: train acc", "lr 0.1: test acc", "lr 0.1: val acc", "lr 0.03: train acc", "lr 0.03: test acc"
    }  # fmt: skip
    test_acc = lines_by_label(accuracy)["lr 0.1: test acc"]
    assert list(test_acc.get_xdata()) == [1, 2, 3]
    assert list(test_acc.get_ydata()) == [entry["test_acc"] for entry in runs[0][1]]
    # Colour names the run, line style the split.
    lines = lines_by_label(accuracy)
    assert lines["lr 0.1: train acc"].get_color() == lines["lr 0.1: val acc"].get_color()
    assert lines["lr 0.1: train acc"].get_color() != lines["lr 0.03: train acc"].get_color()
    assert lines["lr 0.1: test acc"].get_linestyle() == lines["lr 0.03: test acc"].get_linestyle() == "--"
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["lr 0.1", "lr 0.03"]
    assert figure.get_suptitle() == "2 runs, all scratch"
    viz.save_png(figure, tmp_path / "curves.png")
    assert png_size(tmp_path / "curves.png") == helpers.figure_pixels(figure)


def test_one_run_gets_a_legend_of_metrics_and_an_old_history_without_test_loss_still_draws():
    figure = viz.training_curves_figure([("run", history(4, test_loss=False))])
    loss, accuracy = figure.axes
    assert set(lines_by_label(loss)) == {"train loss"}
    assert [text.get_text() for text in accuracy.get_legend().get_texts()] == ["train acc", "test acc"]


def test_line_plot_for_a_sweep_labels_its_axes_and_series(tmp_path):
    lrs = [0.01, 0.03, 0.1, 0.3]
    figure = viz.line_plot(
        {"scratch": (lrs, [0.80, 0.83, 0.84, 0.82]), "concise": (lrs, [0.80, 0.83, 0.84, 0.81])},
        xlabel="learning rate", ylabel="validation accuracy", title="val acc vs lr", log_x=True,
    )  # fmt: skip
    (ax,) = figure.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("learning rate", "validation accuracy")
    assert ax.get_title() == "val acc vs lr"
    assert ax.get_xscale() == "log" and set(lines_by_label(ax)) == {"scratch", "concise"}
    assert [label.get_text() for label in ax.get_xticklabels()] == ["0.01", "0.03", "0.1", "0.3"]
    viz.save_png(figure, tmp_path / "sweep.png")
    assert png_size(tmp_path / "sweep.png") == helpers.figure_pixels(figure)


# --------------------------------------------------------------------------- weight templates


def test_templates_are_the_columns_of_w_and_standardized_ones_are_shown_in_pixel_space():
    W = torch.randn(784, 10)
    plain = viz.pixel_space_templates(W)
    assert plain.shape == (10, 28, 28) and (plain[3] == W[:, 3].reshape(28, 28).numpy()).all()
    std = torch.full((784,), 0.3)
    std[:28] = 1 / 255  # the top row: never lit in training
    pixel = viz.pixel_space_templates(W, std)
    assert np.isnan(pixel[:, 0, :]).all()  # rarely lit: drawn grey, not blown up by 255
    np.testing.assert_allclose(pixel[3, 1:], W[28:, 3].reshape(27, 28).numpy() / np.float32(0.3), rtol=1e-6)


@pytest.mark.parametrize("standardized", [False, True])
def test_templates_figure_titles_each_class_and_centres_one_colour_map_at_zero(standardized, tmp_path):
    W = torch.randn(784, 10) * 0.2
    std = torch.rand(784) * 0.4 + 0.1 if standardized else None
    figure = viz.weight_templates_figure(W, NAMES, std, when="epoch 3")
    *tiles, colour_bar = figure.axes
    assert [ax.get_title() for ax in tiles] == NAMES
    images = [ax.get_images()[0] for ax in tiles]
    expected = viz.pixel_space_templates(W, std)
    for image, template in zip(images, expected, strict=True):
        np.testing.assert_allclose(image.get_array().filled(math.nan), template, equal_nan=True)
    low, high = images[0].get_clim()
    assert low == -high > -float(np.nanmax(np.abs(expected))) - 1e-6  # centred at 0, shared
    assert all(image.norm is images[0].norm for image in images) and images[0].get_cmap().name.startswith("RdBu")
    heading = figure.get_suptitle()
    assert "epoch 3" in heading and ("pixel space" in heading) == standardized
    assert colour_bar.get_ylabel() == ("pixel-space weight (W / std)" if standardized else "weight")
    viz.save_png(figure, tmp_path / "weights.png")
    assert png_size(tmp_path / "weights.png") == helpers.figure_pixels(figure)


# --------------------------------------------------------------------------- confusion matrix


def confusion() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 30, (10, 10), generator=generator)
    counts[0, 1] = 0
    return counts + torch.diag(torch.arange(100, 200, 10))


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_figure_names_its_axes_and_classes_and_prints_every_cell(normalize, tmp_path):
    counts = confusion()
    figure = viz.confusion_figure(counts, NAMES, normalize=normalize, when="epoch 2")
    ax, colour_bar = figure.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert [label.get_text() for label in ax.get_xticklabels()] == NAMES  # full names: "Ankle boot", "T-shirt/top"
    assert [label.get_text() for label in ax.get_yticklabels()] == NAMES
    cells = [text.get_text() for text in ax.texts]
    assert len(cells) == 100
    if normalize:
        rates = 100 * counts.double() / counts.sum(1, keepdim=True)
        assert cells[0] == f"{float(rates[0, 0]):.0f}" and cells[1] == "0"
        assert colour_bar.get_ylabel() == "% of the true class" and "recall" in ax.get_title()
    else:
        assert cells == [str(int(count)) for count in counts.flatten()]
        assert colour_bar.get_ylabel() == "test images"
    accuracy = float(counts.trace()) / float(counts.sum())
    assert f"accuracy {accuracy:.4f}" in ax.get_title() and "epoch 2" in ax.get_title()
    viz.save_png(figure, tmp_path / "confusion.png")
    assert png_size(tmp_path / "confusion.png") == helpers.figure_pixels(figure)


# --------------------------------------------------------------------------- predictions


def test_prediction_grid_says_true_and_predicted_once_shows_probabilities_and_marks_mistakes(tmp_path):
    images = torch.randint(0, 256, (8, 28, 28), dtype=torch.uint8)
    true = ["Coat", "Bag", "Shirt", "Dress", "Coat", "Sandal", "Trouser", "Bag"]
    predicted = ["Coat", "Bag", "T-shirt/top", "Dress", "Pullover", "Sandal", "Trouser", "Bag"]
    confidence = [0.9, 0.8, 0.41, 0.7, 0.55, 0.99, 1.0, 0.6]
    figure = viz.prediction_figure(images, true, predicted, confidence)
    heading = figure.get_suptitle()
    assert "true class" in heading and "predicted class" in heading and "probability" in heading
    shown = [ax for ax in figure.axes if ax.get_images()]
    assert len(shown) == 8
    for ax, t, p, c in zip(shown, true, predicted, confidence, strict=True):
        title = ax.get_title()
        assert title.splitlines()[0] == t and title.endswith(f"{p} {c:.2f}")
        assert ("✗" in title) == (t != p)
        assert (ax.title.get_color() == viz.WRONG_COLOUR) == (t != p)
        assert "true" not in title and "predicted" not in title  # said once, above the grid
    viz.save_png(figure, tmp_path / "predictions.png")
    assert png_size(tmp_path / "predictions.png") == helpers.figure_pixels(figure)


def test_save_png_replaces_a_file_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "figure.png"
    target.write_bytes(b"old")
    figure = viz.line_plot({"a": ([1, 2], [3, 4])}, xlabel="x", ylabel="y", title="t")
    viz.save_png(figure, target)
    assert png_size(target) == helpers.figure_pixels(figure) and [path.name for path in tmp_path.iterdir()] == [
        "figure.png"
    ]
