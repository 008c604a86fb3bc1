"""What every run kind hands back, and the tail every run folder ends with.

`write_results` is the last step of every kind: `predictions.csv`, then `report.html`, then
`metrics.json`, which marks the run finished (`mura_tf.runs.record.write_metrics`).
`location_lines` is the end of every kind's summary lines; `test_metric_lines` their start for
the kinds scored on test films (supervised runs, ensembles, cascades).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mura_tf.evaluators.intervals import value_with_interval
from mura_tf.evaluators.metrics import interval_table, metrics_table
from mura_tf.evaluators.thresholds import run_folder_of
from mura_tf.files import write_text
from mura_tf.runs.page import write_run_report
from mura_tf.runs.record import read_run, write_metrics

PREDICTIONS_FILE = "predictions.csv"
# What the reader page (`mura-tf serve`) shows of a run's test metrics.
SHOWN_METRICS = (("auc", "study AUROC"), ("kappa", "Cohen's kappa"), ("accuracy", "accuracy"))


@dataclass
class RunResult:
    """A finished run: its folder, `metrics.json`'s content (empty on a multi-worker run's
    other workers, which write no results), its test predictions (one row per film; None
    where the kind has none), the settings it ran with (a `RunConfig`, or the settings dict
    of an assembled kind) and what else the kind keeps (the SimCLR model, the body-part
    stage's metrics)."""

    run_dir: Path
    metrics: dict
    predictions: pd.DataFrame | None
    config: Any
    extra: dict = field(default_factory=dict)


def write_results(
    run_dir: Path, metrics: dict, predictions: pd.DataFrame | None = None, cams: Any = None
) -> None:
    """The run's tail: `predictions.csv` (when given), `report.html` (drawing Grad-CAMs with
    `cams`, `mura_tf.serving.gradcam.film_cams`, when given), `metrics.json` last."""
    if predictions is not None:
        write_text(run_dir / PREDICTIONS_FILE, predictions.to_csv(index=False, float_format="%.7g"))
    write_run_report(run_dir, metrics, cams)
    write_metrics(run_dir, metrics)


def test_metric_lines(title: str, metrics: dict) -> list[str]:
    """`title`, the test metrics' table and, where `metrics` has them, their 95% intervals'."""
    lines = ["", title, metrics_table(metrics).to_string()]
    intervals = interval_table(metrics)
    if not intervals.empty:
        lines += ["", f"95% intervals ({metrics['intervals']['method']})", intervals.to_string()]
    return lines


def location_lines(run_dir: Path, handed_over: tuple[str, Path] | None = None) -> list[str]:
    """The summary lines' places: the run folder, what it hands over (`("SavedModel:",
    path)`), its report and, where it trained, its TensorBoard command."""
    lines = ["", f"run folder:   {run_dir}"]
    if handed_over is not None:
        lines.append(f"{handed_over[0]:<14}{handed_over[1]}")
    lines.append(f"report:       {run_dir / 'report.html'}")
    if (run_dir / "logs").is_dir():
        lines.append(f"TensorBoard:  tensorboard --logdir {shlex.quote(str(run_dir / 'logs'))}")
    return lines


def describe_selection(selected: dict) -> str:
    """`metrics.json`'s `selected_epoch` as one phrase: which epoch, and why."""
    how = "early stopping" if selected["stopped_early"] else "all epochs run"
    return (
        f"epoch {selected['epoch']} of {selected['epochs_run']} ({how}), the best dev "
        f"{selected['monitor']} = {selected['value']:.4f}"
    )


def run_summary(model: str | os.PathLike[str]) -> dict:
    """What the reader page (`mura_tf.serving.reader`) says about the model: the run's name,
    recipe, parts, dataset, the epoch handed over and its test metrics with their intervals
    (a bare export: its path only)."""
    run = read_run(run_folder_of(model))
    if run is None:
        return {"label": str(model), "metrics": []}
    study = run.metrics.get("study", {})
    shown = [
        [name, value_with_interval(study[key], study.get(f"{key}_ci"))]
        for key, name in SHOWN_METRICS
        if key in study
    ]
    selected = run.metrics.get("selected_epoch")
    synthetic = bool(run.settings.get("synthetic"))
    dataset = run.settings.get("dataset", "mura")
    summary = {
        "label": run.label,
        "recipe": run.settings.get("recipe", run.section),
        "part": run.settings.get("part", ""),
        "dataset": f"the synthetic {dataset.upper()} (generated films)" if synthetic else dataset,
        "epoch": describe_selection(selected) if selected else "",
        "metrics": shown,
    }
    if synthetic:
        summary["warning"] = (
            "This model was trained on the synthetic set: drawn shapes, not radiographs. Its "
            "probabilities on real films mean nothing; train on real films (--data-dir) to use it."
        )
    return summary
