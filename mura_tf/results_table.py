"""Report 002's Table 4 from finished runs: one row per (run, body part).

Exp, Body Part, Learning rate, Epochs (pre-train + train), Accuracy, Precision, Recall (study
level, MURA's protocol), plus Kappa and AUROC. Runs are read through `mura_tf.runs`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mura_tf.parts import short_name
from mura_tf.runs import ABNORMALITY_SECTIONS, finished_runs, read_run

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
            rows.append(
                {
                    "Exp": run.label,
                    "Body Part": short_name(part).capitalize(),
                    "Learning rate": settings.get("learning_rate"),
                    "Epochs": epochs,
                    "Accuracy": study["accuracy"],
                    "Precision": study["precision"],
                    "Recall": study["recall"],
                    "Kappa": study["kappa"],
                    "AUROC": study["auc"],
                    "Fraction": settings.get("label_fraction", 1.0),
                    "Run": str(run.run_dir),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of the first nine columns, metrics to 3 decimals."""
    shown = table[COLUMNS[:9]].copy()
    for column in ["Accuracy", "Precision", "Recall", "Kappa", "AUROC"]:
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    shown["Learning rate"] = shown["Learning rate"].map(lambda v: "" if pd.isna(v) else f"{v:g}")
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += [
        "| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"
