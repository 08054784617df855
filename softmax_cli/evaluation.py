"""Evaluating a model: accuracy, mean cross-entropy, the confusion matrix, per-class figures, predictions
on test images and on a user's own pictures.

The same code path serves the per-epoch test evaluation during training, `softmax eval`
and `softmax predict`, so their figures agree. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from softmax_cli.config import Hparams
from softmax_cli.data.batches import NUM_CLASSES, MemoryBatches, read_split
from softmax_cli.models import SoftmaxRegression, model_from_checkpoint


@dataclass
class Evaluation:
    """Mean cross-entropy, accuracy and the confusion matrix (rows true, columns predicted)."""

    loss: float
    accuracy: float
    confusion: torch.Tensor
    n: int


def evaluate(model: SoftmaxRegression, batches: Iterable) -> Evaluation:
    """Evaluate on every batch; sums stay on the device and are read once at the end."""
    loss_sum = confusion = None
    with torch.no_grad():
        for X, y in batches:
            logits = model.logits(X)
            batch_loss = nn.functional.cross_entropy(logits, y, reduction="sum")
            batch_confusion = torch.bincount(y * NUM_CLASSES + logits.argmax(1), minlength=NUM_CLASSES**2)
            loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
            confusion = batch_confusion if confusion is None else confusion + batch_confusion
    confusion = confusion.reshape(NUM_CLASSES, NUM_CLASSES).cpu()
    n = int(confusion.sum())
    return Evaluation(loss=loss_sum.item() / n, accuracy=int(confusion.trace()) / n, confusion=confusion, n=n)


def evaluate_checkpoint(
    checkpoint: dict, data_dir: Path, device: torch.device, batch_size: int | None = None
) -> tuple[Evaluation, SoftmaxRegression]:
    """Evaluate a checkpoint on the 10,000 test images with the same code path training used."""
    model = model_from_checkpoint(checkpoint, device, to_train=False)
    batch_size = batch_size or Hparams.from_checkpoint(checkpoint).batch_size
    test = MemoryBatches(read_split(data_dir, "test"), batch_size, device, shuffle=False)
    return evaluate(model, test), model


@dataclass
class Predictions:
    """Test examples with the model's verdicts: index in the test split, image, label, prediction, confidence."""

    indices: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor
    predicted: torch.Tensor
    confidence: torch.Tensor


def predict_test_examples(
    checkpoint: dict, data_dir: Path, device: torch.device, count: int, only_wrong: bool = False
) -> Predictions:
    """The first `count` test images (or the first `count` misclassified ones) with their predictions."""
    model = model_from_checkpoint(checkpoint, device, to_train=False)
    test = read_split(data_dir, "test")
    batches = MemoryBatches(test, Hparams.from_checkpoint(checkpoint).batch_size, device, shuffle=False)
    with torch.no_grad():
        probabilities = torch.cat([torch.softmax(model.logits(X), dim=1) for X, _ in batches]).cpu()
    confidence, predicted = probabilities.max(dim=1)
    candidates = torch.nonzero(predicted != test.labels).flatten() if only_wrong else torch.arange(len(test))
    chosen = candidates[:count]
    return Predictions(chosen, test.images[chosen], test.labels[chosen], predicted[chosen], confidence[chosen])


def classify_pictures(
    checkpoint: dict, inputs: torch.Tensor, device: torch.device, top: int = 3
) -> list[list[tuple[int, float]]]:
    """The `top` most probable classes of each picture, best first, as (class index, probability).

    inputs: N x 28 x 28 (or N x 1 x 28 x 28) float pixels in [0, 1], as softmax_cli.data.photos.model_input
    makes them; the model standardises them itself, as it did in training.
    """
    model = model_from_checkpoint(checkpoint, device, to_train=False)
    with torch.no_grad():
        probabilities = torch.softmax(model.logits(inputs.to(device).reshape(-1, 1, *inputs.shape[-2:])), dim=1).cpu()
    values, indices = probabilities.topk(min(top, probabilities.shape[1]), dim=1)
    return [
        [(int(k), float(p)) for k, p in zip(row_indices, row_values, strict=True)]
        for row_indices, row_values in zip(indices, values, strict=True)
    ]


def evaluation_payload(path: Path, checkpoint: dict, evaluation: Evaluation) -> dict:
    """A checkpoint's evaluation as `softmax eval --json` prints it and the Python API's Model.evaluate returns it."""
    return {
        "checkpoint": str(path),
        "impl": checkpoint["impl"],
        "epoch": checkpoint["epoch"],
        "test_acc": evaluation.accuracy,
        "test_loss": evaluation.loss,
        "n": evaluation.n,
        "per_class": per_class_metrics(evaluation.confusion, checkpoint["class_names"]),
        "confusion_matrix": evaluation.confusion.tolist(),
    }


def picture_rows(labels: list, ranked: list[list[tuple[int, float]]], class_names: list[str]) -> list[dict]:
    """One row per picture, as `predict --image --json` lists them and the Python API's Model.predict returns
    them: its label (a path as text, or an index), the likeliest class, its probability and the ranked top."""
    return [
        {
            "image": label,
            "predicted": class_names[top[0][0]],
            "confidence": top[0][1],
            "top": [{"class": class_names[k], "probability": p} for k, p in top],
        }
        for label, top in zip(labels, ranked, strict=True)
    ]


def per_class_metrics(confusion, class_names: list[str]) -> list[dict]:
    """For each class: precision TP/predicted, recall TP/support, F1 (their harmonic mean), support,
    and one-vs-rest accuracy (TP+TN)/N, kept for the JSON readers of earlier versions.

    A class never predicted has precision 0 (no correct predictions to speak of); F1 is 0
    where precision and recall both are.
    """
    total = int(confusion.sum())
    rows = []
    for k, name in enumerate(class_names):
        true_positive = int(confusion[k, k])
        support = int(confusion[k, :].sum())
        predicted = int(confusion[:, k].sum())
        true_negative = total - support - predicted + true_positive
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / support if support else 0.0
        rows.append(
            {
                "class": name,
                "accuracy": (true_positive + true_negative) / total if total else 0.0,
                "precision": precision,
                "recall": recall,
                "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
                "support": support,
            }
        )
    return rows
