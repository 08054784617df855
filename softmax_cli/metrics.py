"""Per-class figures from a confusion matrix (rows true class, columns predicted)."""

from __future__ import annotations


def per_class_metrics(confusion, class_names: list[str]) -> list[dict]:
    """For each class: one-vs-rest accuracy (TP+TN)/N, precision TP/predicted, recall TP/support, support.

    A class never predicted has precision 0 (no correct predictions to speak of).
    """
    total = int(confusion.sum())
    rows = []
    for k, name in enumerate(class_names):
        true_positive = int(confusion[k, k])
        support = int(confusion[k, :].sum())
        predicted = int(confusion[:, k].sum())
        true_negative = total - support - predicted + true_positive
        rows.append({
            "class": name,
            "accuracy": (true_positive + true_negative) / total if total else 0.0,
            "precision": true_positive / predicted if predicted else 0.0,
            "recall": true_positive / support if support else 0.0,
            "support": support,
        })
    return rows
