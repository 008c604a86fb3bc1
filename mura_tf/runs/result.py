"""What every run kind hands back, and the tail every run folder ends with.

`write_results` is the last step of every kind: `predictions.csv`, then `report.html`, then
`metrics.json`, which marks the run finished (`mura_tf.runs.config.write_metrics`).
`where_lines` is the end of every kind's closing printout.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mura_tf.files import write_text
from mura_tf.report.run import write_run_report
from mura_tf.runs.config import write_metrics

PREDICTIONS_FILE = "predictions.csv"


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


def where_lines(run_dir: Path, handed_over: tuple[str, Path] | None = None) -> list[str]:
    """The closing printout's places: the run folder, what it hands over (`("SavedModel:",
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
