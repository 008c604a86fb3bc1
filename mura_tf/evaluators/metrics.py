"""Evaluation metrics at image and study level (MURA's protocol), overall and per part.

MURA labels studies, not images: the official protocol averages the abnormality probabilities
of a study's views and thresholds the mean at 0.5. Both levels are reported.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from mura_tf.evaluators.intervals import interval_text
from mura_tf.evaluators.thresholds import MURA_THRESHOLD

METRICS = ("accuracy", "precision", "recall", "f1", "auc", "kappa")


def binary_metrics(
    labels, probabilities, threshold: float = MURA_THRESHOLD
) -> dict[str, float | None]:
    """accuracy, precision, recall, f1, auc (ROC) and Cohen's kappa of thresholded predictions.

    Args:
        labels: `[N]` 0/1.
        probabilities: `[N]` predicted probability of the positive (abnormal) class.
    Returns:
        Floats; `auc` and `kappa` are None where undefined (a single class present).
    """
    y = np.asarray(labels).astype(int).ravel()
    p = np.asarray(probabilities, dtype=float).ravel()
    predicted = (p >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    kappa = cohen_kappa_score(y, predicted) if len(np.unique(np.r_[y, predicted])) > 1 else None
    out = {
        "accuracy": accuracy_score(y, predicted),
        "precision": precision_score(y, predicted, zero_division=0),
        "recall": recall_score(y, predicted, zero_division=0),
        "f1": f1_score(y, predicted, zero_division=0),
        "auc": roc_auc_score(y, p) if both else None,
        "kappa": kappa,
    }
    return {k: (None if v is None or math.isnan(v) else float(v)) for k, v in out.items()}


def study_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per study: `study`, `part`, `label`, `probability` (mean over its views).

    Args:
        predictions: one row per image with `study`, `part`, `label`, `probability`.
    """
    return (
        predictions.groupby("study", sort=True)
        .agg(part=("part", "first"), label=("label", "first"), probability=("probability", "mean"))
        .reset_index()
    )


def study_level_metrics(predictions: pd.DataFrame, threshold: float = MURA_THRESHOLD) -> dict:
    """The `metrics.json` document for per-image predictions.

    Returns:
        `{"image": {...}, "study": {...}, "per_part": {part: {"image": {...}, "study": {...}}},
        "n_images": N, "n_studies": N}` with the keys of `METRICS` in each inner dict.
    """
    studies = study_predictions(predictions)
    per_part = {}
    for part in sorted(predictions["part"].unique()):
        images = predictions[predictions["part"] == part]
        part_studies = studies[studies["part"] == part]
        per_part[part] = {
            "image": binary_metrics(images["label"], images["probability"], threshold),
            "study": binary_metrics(part_studies["label"], part_studies["probability"], threshold),
        }
    return {
        "image": binary_metrics(predictions["label"], predictions["probability"], threshold),
        "study": binary_metrics(studies["label"], studies["probability"], threshold),
        "per_part": per_part,
        "n_images": int(len(predictions)),
        "n_studies": int(len(studies)),
    }


def interval_table(
    metrics: dict, names: tuple[str, ...] = ("accuracy", "auc", "kappa")
) -> pd.DataFrame:
    """The 95% intervals beside `metrics_table`'s study metrics (`evaluators.intervals`), as
    text `low-high`, rows `all` and each part; empty without intervals."""
    rows = {"all": metrics, **metrics["per_part"]}
    table = pd.DataFrame(
        {
            name: {f"study_{k}_95ci": interval_text(doc["study"].get(f"{k}_ci")) for k in names}
            for name, doc in rows.items()
        }
    ).T
    return table if "intervals" in metrics else table.iloc[0:0]


def macro_f1(labels, predicted) -> float:
    """Macro-averaged F1 of a multi-class task (report 000's body-part metric)."""
    return float(f1_score(np.asarray(labels), np.asarray(predicted), average="macro"))


def metrics_table(metrics: dict) -> pd.DataFrame:
    """Rows `all` and each part, columns `study_<metric>` then `image_accuracy`, `image_auc`."""
    rows = {"all": metrics}
    rows.update(metrics["per_part"])
    table = pd.DataFrame(
        {
            name: {
                **{f"study_{k}": doc["study"][k] for k in METRICS},
                "image_accuracy": doc["image"]["accuracy"],
                "image_auc": doc["image"]["auc"],
            }
            for name, doc in rows.items()
        }
    ).T
    return table.astype(float).round(3)
