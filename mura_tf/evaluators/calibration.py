"""Calibration and operating points of a run's study probabilities.

- Calibration (test studies): the Brier score, the expected calibration error over `BINS`
  equal-width bins of the probability (each bin's |observed rate - mean probability|, weighted
  by its share of studies), and the bins themselves for a reliability diagram.
- Operating points: sensitivity and specificity on the test studies at 0.5 (MURA's protocol,
  which stays the default), at the dev split's Youden point (largest sensitivity +
  specificity - 1), and at the dev thresholds that reach 90% and 95% specificity. Every
  threshold is chosen on dev, never on test; each test figure has a 95% bootstrap interval
  (`intervals`: studies resampled, stratified by label).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mura_tf.evaluators.intervals import (
    LEVEL,
    RESAMPLES,
    bootstrap_weights,
    percentile_interval,
    weighted_metrics,
)
from mura_tf.evaluators.thresholds import MURA_THRESHOLD

BINS = 10
SPECIFICITIES = (0.90, 0.95)


def calibration(labels: np.ndarray, probabilities: np.ndarray, bins: int = BINS) -> dict:
    """Brier score, ECE and the reliability diagram's bins of study probabilities.

    Returns:
        `brier`, `ece`, `binning` (how), and `bins`: one `{low, high, studies,
        mean_probability, observed}` per non-empty bin.
    """
    y = np.asarray(labels, np.float64)
    p = np.asarray(probabilities, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        inside = index == b
        if not inside.any():
            continue
        mean_p, observed = float(p[inside].mean()), float(y[inside].mean())
        ece += inside.mean() * abs(observed - mean_p)
        rows.append(
            {"low": float(edges[b]), "high": float(edges[b + 1]), "studies": int(inside.sum()),
             "mean_probability": mean_p, "observed": observed}
        )  # fmt: skip
    return {
        "brier": float(np.mean((p - y) ** 2)),
        "ece": float(ece),
        "binning": f"{bins} equal-width bins of the probability, weighted by their studies",
        "bins": rows,
    }


def dev_thresholds(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Thresholds chosen on the dev studies: `youden` (the largest sensitivity + specificity
    - 1; the higher threshold on a tie) and `specificity_90` / `specificity_95` (the lowest
    threshold whose dev specificity reaches it). A study is called positive at p >= t. Empty
    when the dev studies hold one label only."""
    y = np.asarray(labels).astype(bool)
    p = np.asarray(probabilities, np.float64)
    if y.all() or not y.any():  # one label only: nothing to trade
        return {}
    candidates = np.unique(np.r_[p, np.inf])
    sensitivity = np.array([(p[y] >= t).mean() if y.any() else np.nan for t in candidates])
    specificity = np.array([(p[~y] < t).mean() if (~y).any() else np.nan for t in candidates])
    youden = sensitivity + specificity - 1
    out = {"youden": float(candidates[len(youden) - 1 - np.nanargmax(youden[::-1])])}
    for level in SPECIFICITIES:
        reach = np.flatnonzero(specificity >= level)
        out[f"specificity_{round(level * 100)}"] = float(candidates[reach[0]])
    return out


def operating_points(
    dev: pd.DataFrame,
    test: pd.DataFrame,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict:
    """Sensitivity and specificity of the test studies at 0.5 and at the dev-chosen thresholds.

    Args:
        dev: one row per dev study: `label`, `probability` (`metrics.study_predictions`).
        test: the test studies, of the same form.
    Returns:
        `{name: {"threshold", "sensitivity", "specificity", "sensitivity_ci",
        "specificity_ci"}}` for `protocol` (0.5) and each of `dev_thresholds`, and `method`.
    """
    chosen = {"protocol": MURA_THRESHOLD, **dev_thresholds(dev["label"], dev["probability"])}
    labels, probabilities = test["label"].to_numpy(), test["probability"].to_numpy()
    weights = bootstrap_weights(labels, resamples, seed)
    ones = np.ones((1, len(labels)))
    out: dict = {}
    for name, threshold in chosen.items():
        point = weighted_metrics(ones, labels, probabilities, threshold)
        drawn = weighted_metrics(weights, labels, probabilities, threshold)
        doc = {"threshold": threshold}
        for key, metric in (("sensitivity", "recall"), ("specificity", "specificity")):
            doc[key] = float(point[metric][0])
            doc[f"{key}_ci"] = percentile_interval(drawn[metric], level)
        out[name] = doc
    out["method"] = (
        "thresholds chosen on the dev studies (protocol: 0.5); sensitivity and specificity of "
        "the test studies with 95% bootstrap intervals over studies, stratified by label"
    )
    return out
