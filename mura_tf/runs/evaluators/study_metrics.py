"""The MURA paper's protocol on the test films: image-, study- and per-part metrics (a
study's probability is the mean of its views'), each with its 95% interval."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mura_tf.evaluators.intervals import metric_intervals, with_intervals
from mura_tf.evaluators.metrics import study_level_metrics
from mura_tf.runs.evaluators.trained import TrainedRun


def metrics_with_intervals(predictions: pd.DataFrame, seed: int) -> dict:
    """`evaluators.metrics.study_level_metrics` of `predictions` (one row per image) with
    their 95% intervals (`evaluators.intervals`' bootstrap, drawn with `seed`): what every run
    scored on test films writes (supervised runs, ensembles, cascades)."""
    metrics = study_level_metrics(predictions)
    return with_intervals(metrics, metric_intervals(predictions, seed=seed))


@dataclass(frozen=True)
class StudyMetrics:
    """A supervised run's `metrics_with_intervals`, its bootstrap drawn with its seed."""

    def __call__(self, run: TrainedRun) -> dict:
        return metrics_with_intervals(run.predictions, run.exp.seed)
