"""Is one system better than another on the same test studies? Paired differences.

For two systems scored on the same studies (two runs, an ensemble and its member, a cascade and
the all-parts model): the difference in study AUROC and kappa with a paired bootstrap interval
(the same resampled studies for both, `intervals.bootstrap_weights`), and for AUROC DeLong's
test (DeLong, DeLong & Clarke-Pearson, Biometrics 1988), in Sun & Xu's formulation (IEEE SPL
2014): the variance of the difference of two correlated AUROCs from their structural
components, and a two-sided p-value from the normal distribution.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata

from mura_tf.evaluators.intervals import (
    LEVEL,
    RESAMPLES,
    bootstrap_weights,
    percentile_interval,
    weighted_metrics,
)

PAIRED_METRICS = ("auc", "kappa")


def _midranks(x: np.ndarray) -> np.ndarray:
    return rankdata(x, method="average")


def delong(labels: np.ndarray, first: np.ndarray, second: np.ndarray) -> dict:
    """DeLong's test of AUROC(first) = AUROC(second) on the same cases.

    Args:
        labels: 0/1 `[N]`; first, second: scores `[N]` of the two systems.
    Returns:
        `auc` (both), `difference` (first - second), `se` (its standard error) and `p` (two-sided;
        1.0 where the difference has no variance, as for identical scores).
    """
    y = np.asarray(labels).astype(bool)
    scores = np.vstack([first, second]).astype(np.float64)
    positive, negative = scores[:, y], scores[:, ~y]
    m, n = positive.shape[1], negative.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong's test needs positive and negative cases")
    tx = np.vstack([_midranks(row) for row in positive])
    ty = np.vstack([_midranks(row) for row in negative])
    tz = np.vstack([_midranks(row) for row in scores])
    tz_pos, tz_neg = tz[:, y], tz[:, ~y]
    aucs = tz_pos.sum(axis=1) / m / n - (m + 1) / (2 * n)
    v01 = (tz_pos - tx) / n  # each positive's share of negatives it beats
    v10 = 1 - (tz_neg - ty) / m  # each negative's share of positives that beat it
    covariance = np.cov(v01) / m + np.cov(v10) / n
    contrast = np.array([1.0, -1.0])
    variance = float(contrast @ covariance @ contrast)
    difference = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(variance, 0.0)))
    p = 1.0 if se == 0 else float(2 * norm.sf(abs(difference) / se))
    return {"auc": [float(aucs[0]), float(aucs[1])], "difference": difference, "se": se, "p": p}


def paired_difference(
    first: pd.DataFrame,
    second: pd.DataFrame,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    threshold: float = 0.5,
) -> dict:
    """`first` minus `second` on the studies both scored (study = mean of its views).

    Args:
        first: one row per image: `study`, `label`, `probability`.
        second: the other system's rows, of the same form.
    Returns:
        `studies` (how many both scored), per metric of `PAIRED_METRICS` the `difference` and
        its paired-bootstrap `interval` (None where undefined), and `delong` (see `delong`;
        None without both labels).
    """
    a, b = (
        f.groupby("study").agg(label=("label", "first"), probability=("probability", "mean"))
        for f in (first, second)
    )
    common = a.index.intersection(b.index)
    if len(common) == 0:
        raise ValueError("the two systems scored no study in common")
    a, b = a.loc[common], b.loc[common]
    labels = a["label"].to_numpy()
    weights = bootstrap_weights(labels, resamples, seed)
    ones = np.ones((1, len(common)))
    out: dict = {"studies": int(len(common))}
    drawn_a = weighted_metrics(weights, labels, a["probability"].to_numpy(), threshold)
    drawn_b = weighted_metrics(weights, labels, b["probability"].to_numpy(), threshold)
    point_a = weighted_metrics(ones, labels, a["probability"].to_numpy(), threshold)
    point_b = weighted_metrics(ones, labels, b["probability"].to_numpy(), threshold)
    for name in PAIRED_METRICS:
        out[name] = {
            "difference": float(point_a[name][0] - point_b[name][0]),
            "interval": percentile_interval(drawn_a[name] - drawn_b[name], level),
        }
    both = 0 < labels.sum() < len(labels)
    out["delong"] = (
        delong(labels, a["probability"].to_numpy(), b["probability"].to_numpy()) if both else None
    )
    return out
