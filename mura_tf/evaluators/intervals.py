"""95% confidence intervals of the test metrics: a percentile bootstrap over studies.

A test set of a few hundred studies (a MURA part, FracAtlas) moves each metric by several
hundredths from one study; the interval says how far. Resampling follows the protocol's unit:
studies are drawn with replacement, a study's views stay together, and the draw is stratified
by label (each resample keeps the test set's counts of positive and negative studies, as the
MURA paper's test set is fixed in both). Study-level metrics are computed on the drawn studies,
image-level ones on all the views of the drawn studies.

`scipy.stats.bootstrap` resamples the rows of its samples, independently per sample or paired
by row; it has no resampling of groups of rows (a study's views) and no stratification, so the
draw is written out here (`bootstrap_weights`) and every metric is computed for all resamples
at once from how often each study was drawn (a `[R, N]` weight matrix) rather than by a loop
of scikit-learn calls per resample (equal to them: `tests/test_intervals.py`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import sparse

from mura_tf.evaluators.thresholds import MURA_THRESHOLD

LEVEL = 0.95
# Measured on a FracAtlas run (344 test films): with 10,000 resamples the ends of every study
# metric's interval move by less than 0.005 between bootstrap seeds, except precision's and F1's
# (0.008, 0.005: metrics of few positives move in steps; README, "Confidence intervals").
RESAMPLES = 10_000
INTERVAL_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "auc", "kappa")
METHOD = "percentile bootstrap over studies (views kept together), stratified by label"
# Resamples computed at once by `weighted_metrics`: bounds its memory, about 50 bytes per
# resample and item in flight (1.5 GB for 10,000 resamples of 3,197 images at once; see
# `tests/test_intervals.py`), without a measurable cost in time at that size.
CHUNK_ROWS = 1_000


def bootstrap_weights(labels: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """How often each study is drawn in each resample: int `[resamples, S]`, each row keeping
    the counts of label-1 and label-0 studies of `labels` (`[S]`, 0/1)."""
    labels = np.asarray(labels).astype(int)
    rng = np.random.default_rng(seed)
    weights = np.zeros((resamples, len(labels)), np.int64)
    for value in (0, 1):
        members = np.flatnonzero(labels == value)
        if len(members) == 0:
            continue
        drawn = members[rng.integers(0, len(members), (resamples, len(members)))]
        rows = np.repeat(np.arange(resamples), len(members))
        np.add.at(weights, (rows, drawn.ravel()), 1)
    return weights


def weighted_metrics(
    weights: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float = MURA_THRESHOLD,
    columns: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every metric of `INTERVAL_METRICS` for each row of `weights` (`[R, N]`: how often each
    of the `N` items counts), as scikit-learn computes it on the items repeated that often.

    `columns` (int `[M]`) makes the items `weights[:, columns]` (e.g. each image counting as
    often as its study), without that `[R, M]` copy being made whole. The rows are computed
    `CHUNK_ROWS` at a time: the float copies, sparse products and cumulative sums below are
    several times the size of `weights`, which at MURA's valid size (10,000 resamples of
    1,199 studies, 3,197 images) would take gigabytes at once. Every count is an integer, so
    chunks give bit-for-bit the results of one pass.

    Returns:
        `{metric: float [R]}`; NaN where a metric is undefined (AUROC with one class, kappa
        with one label and one decision). Precision, recall and F1 are 0 where their
        denominator is (scikit-learn's `zero_division=0`).
    """

    def rows(start: int) -> np.ndarray:
        block = weights[start : start + CHUNK_ROWS]
        return block if columns is None else block[:, columns]

    starts = range(0, max(len(weights), 1), CHUNK_ROWS)
    chunks = [_weighted_metrics(rows(s), labels, probabilities, threshold) for s in starts]
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


def _weighted_metrics(
    weights: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, threshold: float
) -> dict[str, np.ndarray]:
    w = np.asarray(weights, np.float64)
    y = np.asarray(labels).astype(bool)
    p = np.asarray(probabilities, np.float64)
    decided = p >= threshold
    tp, fp = w @ (y & decided), w @ (~y & decided)
    fn, tn = w @ (y & ~decided), w @ (~y & ~decided)
    total = tp + fp + fn + tn

    def ratio(a: np.ndarray, b: np.ndarray, empty: float = 0.0) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1), empty)

    accuracy = ratio(tp + tn, total, np.nan)
    chance = ratio((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn), total**2, np.nan)
    kappa = np.where(chance < 1, ratio(accuracy - chance, 1 - chance, np.nan), np.nan)
    return {
        "accuracy": accuracy,
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "auc": _weighted_auc(w, y, p),
        "kappa": kappa,
    }


def _weighted_auc(w: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """AUROC of each weighting: the weighted share of (positive, negative) pairs the positive
    wins, ties counting a half (the Mann-Whitney form of scikit-learn's `roc_auc_score`)."""
    values, group = np.unique(p, return_inverse=True)
    onehot = sparse.csr_matrix(
        (np.ones(len(p)), (np.arange(len(p)), group)), shape=(len(p), len(values))
    )
    positive = (sparse.csr_matrix(w * y) @ onehot).toarray()  # [R, G]
    negative = (sparse.csr_matrix(w * ~y) @ onehot).toarray()
    below = np.cumsum(negative, axis=1) - negative  # negatives scored lower than each group
    wins = (positive * (below + 0.5 * negative)).sum(axis=1)
    pairs = positive.sum(axis=1) * negative.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1), np.nan)


def interval_text(bounds) -> str:
    """An interval as the tables print it, `0.750-0.964`; empty where there is none (None, or
    a missing end as pandas holds it)."""
    if bounds is None or any(pd.isna(end) for end in bounds):
        return ""
    return f"{bounds[0]:.3f}-{bounds[1]:.3f}"


def value_with_interval(value, bounds) -> str:
    """A value and its interval as the tables print them, `0.857 (0.750-0.964)`; the value
    alone without an interval, empty without a value."""
    if value is None or pd.isna(value):
        return ""
    text = interval_text(bounds)
    return f"{value:.3f}" + (f" ({text})" if text else "")


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The central `level` percentile interval of a metric's resampled `values` `[R]`; None
    where the metric is undefined (NaN) in most resamples."""
    finite = values[np.isfinite(values)]
    if len(finite) < 0.5 * len(values):  # undefined in most resamples: no interval
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


def _level_intervals(
    predictions: pd.DataFrame, resamples: int, seed: int, level: float, threshold: float
) -> dict[str, dict[str, list[float] | None]]:
    studies = predictions.groupby("study", sort=True).agg(
        label=("label", "first"), probability=("probability", "mean")
    )
    weights = bootstrap_weights(studies["label"].to_numpy(), resamples, seed)
    at_studies = weighted_metrics(
        weights, studies["label"].to_numpy(), studies["probability"].to_numpy(), threshold
    )
    of_image = studies.index.get_indexer(predictions["study"])
    at_images = weighted_metrics(
        weights, predictions["label"].to_numpy(), predictions["probability"].to_numpy(),
        threshold, columns=of_image,
    )  # fmt: skip
    return {
        "study": {k: percentile_interval(v, level) for k, v in at_studies.items()},
        "image": {k: percentile_interval(v, level) for k, v in at_images.items()},
    }


def _seed_of(seed: int, part: str) -> int:
    """A seed of its own for each part, the same in every run (a stable hash, not Python's)."""
    return seed * 1_000_003 + zlib.crc32(part.encode())


def metric_intervals(
    predictions: pd.DataFrame,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    threshold: float = MURA_THRESHOLD,
) -> dict:
    """The intervals of `metrics.study_level_metrics`' numbers, from the same predictions.

    Args:
        predictions: one row per image: `study`, `part`, `label`, `probability`.
    Returns:
        `{"method", "level", "resamples", "seed", "study": {metric: [low, high] | None},
        "image": {...}, "per_part": {part: {"study": {...}, "image": {...}}}}`; None where a
        metric is undefined in most resamples.
    """
    out = {"method": METHOD, "level": level, "resamples": resamples, "seed": seed}
    out.update(_level_intervals(predictions, resamples, seed, level, threshold))
    out["per_part"] = {
        part: _level_intervals(rows, resamples, _seed_of(seed, part), level, threshold)
        for part, rows in sorted(predictions.groupby("part"), key=lambda kv: kv[0])
    }
    return out


def with_intervals(metrics: Mapping, intervals: Mapping) -> dict:
    """`metrics` (`study_level_metrics`' document) with each interval beside its value
    (`"auc_ci": [low, high]`) and `intervals`' method, level, resamples and seed under
    `"intervals"`."""
    out = dict(metrics)

    def beside(doc: Mapping, found: Mapping) -> dict:
        merged = dict(doc)
        for name, bounds in found.items():
            if name in merged:
                merged[f"{name}_ci"] = bounds
        return merged

    for level in ("image", "study"):
        out[level] = beside(metrics[level], intervals[level])
    out["per_part"] = {
        part: {
            level: beside(doc[level], intervals["per_part"][part][level])
            for level in ("image", "study")
        }
        for part, doc in metrics["per_part"].items()
    }
    out["intervals"] = {k: intervals[k] for k in ("method", "level", "resamples", "seed")}
    return out
