"""The MURA paper's protocol on the test films: image-, study- and per-part metrics (a
study's probability is the mean of its views'), each with its 95% interval."""

from __future__ import annotations

from dataclasses import dataclass

from mura_tf.evaluators.intervals import metric_intervals, with_intervals
from mura_tf.evaluators.metrics import study_level_metrics
from mura_tf.runs.evaluators.trained import TrainedRun


@dataclass(frozen=True)
class StudyMetrics:
    """`evaluators.metrics.study_level_metrics` with `evaluators.intervals`' bootstrap."""

    def __call__(self, run: TrainedRun) -> dict:
        metrics = study_level_metrics(run.predictions)
        return with_intervals(metrics, metric_intervals(run.predictions, seed=run.exp.seed))
