"""The threshold that turns a study's probability into a decision, and where it came from.

MURA's protocol decides at 0.5 (`PROTOCOL`), and stays the default everywhere. A run also
records, in its `metrics.json`, thresholds chosen on its own dev split
(`evaluators.calibration.operating_points`): the Youden point and the points reaching 90% and
95% specificity. `predict` and `evaluate` take either a number or one of those by name, and
every decision they write says which threshold made it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from mura_tf.errors import ConfigError

MURA_THRESHOLD = 0.5

# The names `--threshold` accepts for a run's dev-chosen points, and the operating point each
# reads in metrics.json.
DEV_CHOICES = {
    "dev": "youden",
    "dev-youden": "youden",
    "dev-spec90": "specificity_90",
    "dev-spec95": "specificity_95",
}


@dataclass(frozen=True)
class Threshold:
    """A decision threshold: a study is called positive at `probability >= value`; `rule`
    says in words where the value came from (written beside every decision)."""

    value: float
    rule: str


PROTOCOL = Threshold(MURA_THRESHOLD, "0.5, MURA's protocol")


def parse_threshold(text: str) -> float | str:
    """A `--threshold` value: a probability in [0, 1], or one of `DEV_CHOICES`.

    Raises:
        ValueError: neither (worded for argparse, which names the flag).
    """
    if text in DEV_CHOICES:
        return text
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"expected a probability between 0 and 1 or one of {', '.join(DEV_CHOICES)}, "
            f"got {text!r}"
        ) from None
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ValueError(f"expected a probability between 0 and 1, got {text!r}")
    return value


def run_folder_of(model: str | Path) -> Path:
    """The run folder of `--model`: the folder itself, or the parent of its `export/`."""
    path = Path(model)
    return path.parent if path.name == "export" else path


def resolve_threshold(choice: float | str | None, model: str | Path) -> Threshold:
    """The `Threshold` for a parsed `--threshold` (None: the protocol's 0.5) of `model`.

    Raises:
        ConfigError: a dev point was asked of a model whose run recorded none (an ensemble,
            a cascade, a bare SavedModel, a run finished before operating points existed, or
            a dev split with one label only).
    """
    if choice is None:
        return PROTOCOL
    if isinstance(choice, float):
        return Threshold(choice, f"{choice:g}, given with --threshold")
    run_dir = run_folder_of(model)
    point = DEV_CHOICES[choice]
    metrics_path = run_dir / "metrics.json"
    recorded = {}
    if metrics_path.is_file():
        recorded = json.loads(metrics_path.read_text()).get("operating_points", {})
    if point not in recorded:
        raise ConfigError(
            f"--threshold {choice}: {metrics_path} records no dev-chosen {point} threshold "
            "(only single runs trained since operating points were added do): pass a number"
        )
    value = float(recorded[point]["threshold"])
    return Threshold(value, f"{value:.4g}, the {point} point of {run_dir.name}'s dev split")
