"""Figures of a dataset and of a model's predictions as PNG files (matplotlib, no display
needed), written atomically: counts and samples (`mura-tf explore`), ROC, confusion matrices,
reliability (a run's page, `mura-tf evaluate`)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from mura_tf.data.datasets import dataset_of_parts, short_name  # noqa: E402
from mura_tf.evaluators.thresholds import MURA_THRESHOLD
from mura_tf.files import write_with  # noqa: E402


def _save(fig, path: str | os.PathLike[str]) -> Path:
    try:
        return write_with(
            path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        )
    finally:
        plt.close(fig)


def plot_counts(
    summary: dict[str, dict[str, dict[str, int]]],
    path: str | os.PathLike[str],
    unit: str = "images",
) -> Path:
    """Grouped bars of normal and abnormal counts per part, one panel per split (named as the
    dataset names its labels)."""
    splits = list(summary)
    info = dataset_of_parts({p for counts in summary.values() for p in counts})
    fig, axes = plt.subplots(1, len(splits), figsize=(6 * len(splits), 4), squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        parts = list(summary[split])
        x = np.arange(len(parts))
        normal = [summary[split][p][f"normal_{unit}"] for p in parts]
        abnormal = [summary[split][p][f"abnormal_{unit}"] for p in parts]
        ax.bar(x - 0.2, normal, 0.4, label=info.negative, color="#4c72b0")
        ax.bar(x + 0.2, abnormal, 0.4, label=info.positive, color="#dd8452")
        ax.set_xticks(x, [short_name(p) for p in parts], rotation=30)
        ax.set_title(f"{split}: {unit} per part")
        ax.legend()
    return _save(fig, path)


def preview(path: str, size: int = 128) -> np.ndarray:
    """A grayscale thumbnail for display at the film's own aspect ratio and orientation (a
    JPEG's EXIF orientation applied); 16-bit PNGs are scaled, not clipped as Pillow's
    `convert` would.

    Returns:
        uint8 `[h, w]` with the longer side `size`.
    """
    from mura_tf.data.film_cache import displayed_file  # a DICOM film as displayed

    with Image.open(displayed_file(path)) as im:
        arr = np.asarray(ImageOps.exif_transpose(im))
    if arr.dtype == np.uint16 or arr.dtype == np.int32:
        arr = (arr.astype(np.uint32) >> 8).astype(np.uint8)
    if arr.ndim == 3:
        arr = arr[..., 0]
    height, width = arr.shape
    scale = size / max(height, width)
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(arr.astype(np.uint8)).resize(shape, Image.BILINEAR))


def plot_samples(
    frame: pd.DataFrame, path: str | os.PathLike[str], per_class: int = 4, seed: int = 0
) -> Path:
    """A grid: one row per part, `per_class` normal then `per_class` abnormal images."""
    parts = [p for p in dict.fromkeys(frame["part"])]
    info = dataset_of_parts(parts)
    fig, axes = plt.subplots(
        len(parts), 2 * per_class, figsize=(2 * 2 * per_class, 2.1 * len(parts)), squeeze=False
    )
    for row, part in zip(axes, parts, strict=True):
        for k, label in enumerate((0, 1)):
            pool = frame[(frame["part"] == part) & (frame["label"] == label)]
            picks = pool.sample(min(per_class, len(pool)), random_state=seed)["path"].tolist()
            for j in range(per_class):
                ax = row[k * per_class + j]
                ax.axis("off")
                if j < len(picks):
                    ax.imshow(preview(picks[j]), cmap="gray", vmin=0, vmax=255)
                    ax.set_title(
                        f"{short_name(part)} {info.positive if label else info.negative}",
                        fontsize=8,
                    )
    return _save(fig, path)


def plot_roc(studies: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Study-level ROC curves, all parts and each part, from `metrics.study_predictions` rows."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(5.5, 5))
    groups = [("all", studies)] + [(short_name(p), g) for p, g in studies.groupby("part")]
    for name, g in groups:
        if g["label"].nunique() < 2:
            continue
        fpr, tpr, _ = roc_curve(g["label"], g["probability"])
        auc = roc_auc_score(g["label"], g["probability"])
        ax.plot(fpr, tpr, lw=2.5 if name == "all" else 1, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="Study-level ROC")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_confusion(
    studies: pd.DataFrame, path: str | os.PathLike[str], threshold: float = MURA_THRESHOLD
) -> Path:
    """Study-level confusion matrices (rows: truth, columns: prediction), all and per part."""
    from sklearn.metrics import confusion_matrix

    groups = [("all", studies)] + [(short_name(p), g) for p, g in studies.groupby("part")]
    info = dataset_of_parts(studies["part"].unique())
    names = [info.negative, info.positive]
    fig, axes = plt.subplots(1, len(groups), figsize=(2.6 * len(groups), 2.8), squeeze=False)
    for ax, (name, g) in zip(axes[0], groups, strict=True):
        matrix = confusion_matrix(g["label"], g["probability"] >= threshold, labels=[0, 1])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center")
        ax.set_xticks([0, 1], names, fontsize=7)
        # Truth labels on the first panel only: beside every panel they ran into the next one.
        ax.set_yticks([0, 1], names if ax is axes[0][0] else ["", ""], fontsize=7)
        ax.set_title(name, fontsize=9)
    return _save(fig, path)


def _error_bars(values: np.ndarray, low, high) -> dict:
    """`ax.bar` keywords drawing each bar's 95% interval `low`-`high` (no bar where an end is
    missing)."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    errors = np.nan_to_num(np.stack([values - low, high - values]), nan=0.0)
    return {"yerr": np.clip(errors, 0, None), "capsize": 2, "ecolor": "#333"}


def plot_fractions(rows: pd.DataFrame, path: str | os.PathLike[str], title: str = "") -> Path:
    """Grouped bars of study accuracy, precision and recall per experiment (report 002 fig. 8-10),
    with their 95% intervals as error bars where the runs recorded them.

    Args:
        rows: `mura_tf.report.table.collect` rows of one body part.
    """
    metrics = ["Accuracy", "Precision", "Recall"]
    names = rows["Exp"].tolist()
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(names)), 3.8))
    for k, metric in enumerate(metrics):
        value = rows[metric].astype(float).fillna(0).to_numpy()
        style = {}
        if f"{metric} low" in rows:
            style = _error_bars(value, rows[f"{metric} low"], rows[f"{metric} high"])
        ax.bar(x + (k - 1) * 0.27, value, 0.27, label=metric, **style)
    ax.set_xticks(x, names, rotation=20, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(f"{title}: study-level metrics by label fraction")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_comparison(
    frame: pd.DataFrame,
    path: str | os.PathLike[str],
    title: str,
    reference: str = "",
    low: pd.DataFrame | None = None,
    high: pd.DataFrame | None = None,
) -> Path:
    """Grouped bars: one group per body part (columns of `frame`), one bar per system (rows),
    the row named `reference` hatched (a published figure, not a run), with error bars from
    `low` to `high` (frames like `frame`: 95% intervals) where given. Missing values (a system
    without that part) leave a gap."""
    systems, parts = list(frame.index), list(frame.columns)
    width = 0.8 / max(len(systems), 1)
    x = np.arange(len(parts))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(parts) + 2) + 2.5, 4))
    for k, system in enumerate(systems):
        values = frame.loc[system].astype(float).to_numpy()
        style = {"hatch": "//", "alpha": 0.6} if system == reference else {}
        if low is not None and high is not None:
            style.update(_error_bars(values, low.loc[system], high.loc[system]))
        ax.bar(x + (k - (len(systems) - 1) / 2) * width, values, width, label=system, **style)
    ax.set_xticks(x, parts, fontsize=9)
    ax.axhline(0, color="#999", linewidth=0.6)
    ax.set_ylim(min(0.0, float(np.nanmin(frame.to_numpy(dtype=float), initial=0))), 1)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


CURVE_TITLES = {"auc": "AUROC", "knn_auc": "kNN probe AUROC"}


def plot_curves(
    history: pd.DataFrame,
    path: str | os.PathLike[str],
    title: str = "",
    selected: int | None = None,
    metrics: tuple[str, ...] | None = None,
) -> Path:
    """`metrics` per epoch, training and dev, one panel each; `selected` (the 1-based epoch
    handed over) is marked. By default: loss and accuracy (report 000's figures), the AUROC
    where the dev split was scored by it (the recipes hand over by dev AUROC), and SimCLR's
    kNN probe of the dev films."""
    if metrics is None:
        known = ("loss", "accuracy", "auc", "knn_auc")
        metrics = tuple(m for m in known if m in history or f"val_{m}" in history)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for prefix, label in (("", "train"), ("val_", "dev")):
            column = prefix + metric
            if column in history:
                ax.plot(history["epoch"] + 1, history[column], marker="o", label=label)
        if selected is not None:
            ax.axvline(selected, color="grey", ls="--", lw=1, label=f"handed over ({selected})")
        ax.set(xlabel="epoch", title=CURVE_TITLES.get(metric, metric))
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_reliability(calibration: dict, path: str | os.PathLike[str]) -> Path:
    """The reliability diagram of `evaluators.calibration.calibration`'s bins: observed rate of
    positive studies against mean probability per bin (marker area: studies), the diagonal
    for perfect calibration; Brier score and ECE in the title."""
    bins = calibration["bins"]
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfectly calibrated")
    if bins:
        x = [b["mean_probability"] for b in bins]
        y = [b["observed"] for b in bins]
        sizes = [20 + 200 * b["studies"] / max(c["studies"] for c in bins) for b in bins]
        ax.plot(x, y, color="#4c72b0", lw=1)
        ax.scatter(x, y, s=sizes, color="#4c72b0", zorder=3, label="test studies per bin")
    ax.set(
        xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability", ylabel="observed rate",
        title=f"Brier {calibration['brier']:.3f}, ECE {calibration['ece']:.3f}",
    )  # fmt: skip
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)
