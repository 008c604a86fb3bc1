"""Report 002's Table 4 from finished runs: one row per (run, body part).

Exp, Body Part, Learning rate, Epochs (pre-train + train), Accuracy, Precision, Recall (study
level, MURA's protocol), plus Kappa and AUROC, each with its 95% interval where the run
recorded one (`<metric> low`, `<metric> high`; `evaluators.intervals`). Runs are read through
`mura_tf.runs.record`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mura_tf.data.parts import short_name
from mura_tf.evaluators.intervals import value_with_interval
from mura_tf.runs.kinds import ABNORMALITY_SECTIONS
from mura_tf.runs.record import finished_runs, read_run

COLUMNS = [
    "Exp",
    "Body Part",
    "Learning rate",
    "Epochs",
    "Accuracy",
    "Precision",
    "Recall",
    "Kappa",
    "AUROC",
    "Fraction",
    "Run",
]
# Table column -> the key of `metrics.study_level_metrics`' study document.
METRIC_KEYS = {
    "Accuracy": "accuracy",
    "Precision": "precision",
    "Recall": "recall",
    "Kappa": "kappa",
    "AUROC": "auc",
}
INTERVAL_COLUMNS = [f"{c} {end}" for c in METRIC_KEYS for end in ("low", "high")]


def _pretrain_epochs(settings: dict) -> int | None:
    """The pre-training epochs of the encoder a run started from, if it started from one."""
    weights = settings.get("weights") or ""
    if weights in ("", "none", "imagenet"):
        return None
    folder = Path(weights).parent if weights.endswith(".keras") else Path(weights)
    encoder = read_run(folder)
    return encoder.settings.get("epochs") if encoder and encoder.section == "pretrain" else None


def collect(runs: str | Path) -> pd.DataFrame:
    """Every finished supervised or fine-tuning run, ensemble and cascade under `runs` as
    Table 4 rows."""
    rows = []
    for run in finished_runs(runs):
        if run.section not in ABNORMALITY_SECTIONS or "per_part" not in run.metrics:
            continue  # pre-training and router runs have no table row
        settings = run.settings
        pre = _pretrain_epochs(settings)
        epochs = str(settings.get("epochs", ""))  # an ensemble or cascade has none of its own
        epochs = f"{pre}+{epochs}" if pre else epochs
        for part, doc in run.metrics["per_part"].items():
            study = doc["study"]
            row = {
                "Exp": run.label,
                "Body Part": short_name(part).capitalize(),
                "Learning rate": settings.get("learning_rate"),
                "Epochs": epochs,
                "Fraction": settings.get("label_fraction", 1.0),
                "Run": str(run.run_dir),
            }
            for column, key in METRIC_KEYS.items():
                row[column] = study[key]
                low, high = study.get(f"{key}_ci") or (None, None)
                row[f"{column} low"], row[f"{column} high"] = low, high
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS + INTERVAL_COLUMNS)


def markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of the first nine columns, metrics to 3 decimals with
    their 95% intervals in brackets."""
    shown = table[COLUMNS[:9]].copy()
    for column in METRIC_KEYS:
        shown[column] = [
            value_with_interval(v, (lo, hi))
            for v, lo, hi in zip(
                table[column], table[f"{column} low"], table[f"{column} high"], strict=True
            )
        ]
    shown["Learning rate"] = shown["Learning rate"].map(lambda v: "" if pd.isna(v) else f"{v:g}")
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += [
        "| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"
