"""Collect runs into report 002's Table 4.

`python -m mura_tf.report --runs saved_models/ --out reports/`

One row per (run, body part): Exp, Body Part, Learning rate, Epochs (pre-train + train),
Accuracy, Precision, Recall (study level, MURA's protocol), plus Kappa and AUROC. Writes
`table.md`, `table.csv`, `fractions_<part>.png` (accuracy / precision / recall over label fractions
against the baseline, report 002's figures 8-10) and `curves/<run>.png` (loss and accuracy per
epoch, report 000's figures 5-9).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mura_tf.cli import ArgumentParser, run
from mura_tf.errors import ConfigError
from mura_tf.parts import short_name

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


def _experiment_name(settings: dict) -> str:
    recipe = settings.get("recipe", "?")
    fraction = settings.get("label_fraction", 1.0)
    if recipe == "simclr_finetune":
        mode = "Linear" if settings.get("freeze_backbone") else "Finetune"
        return f"{mode} {fraction * 100:g}pct"
    if recipe == "baseline_densenet":
        return "Baseline" if fraction == 1.0 else f"Baseline {fraction * 100:g}pct"
    return recipe if fraction == 1.0 else f"{recipe} {fraction * 100:g}pct"


def _pretrain_epochs(settings: dict) -> int | None:
    weights = settings.get("weights") or ""
    folder = Path(weights).parent if weights.endswith(".keras") else Path(weights)
    config = folder / "config.json"
    if weights in ("", "none", "imagenet") or not config.is_file():
        return None
    return json.loads(config.read_text()).get("pretrain", {}).get("epochs")


def collect(runs: str | Path) -> pd.DataFrame:
    """Every finished supervised or fine-tuning run under `runs` as Table 4 rows."""
    rows = []
    for metrics_path in sorted(Path(runs).rglob("metrics.json")):
        config_path = metrics_path.with_name("config.json")
        if not config_path.is_file():
            continue
        config = json.loads(config_path.read_text())
        settings = config.get("experiment")
        metrics = json.loads(metrics_path.read_text())
        if settings is None or "per_part" not in metrics:
            continue  # pre-training runs and evaluations have no table row
        pre = _pretrain_epochs(settings)
        epochs = f"{pre}+{settings['epochs']}" if pre else str(settings["epochs"])
        for part, doc in metrics["per_part"].items():
            study = doc["study"]
            rows.append(
                {
                    "Exp": _experiment_name(settings),
                    "Body Part": short_name(part).capitalize(),
                    "Learning rate": settings["learning_rate"],
                    "Epochs": epochs,
                    "Accuracy": study["accuracy"],
                    "Precision": study["precision"],
                    "Recall": study["recall"],
                    "Kappa": study["kappa"],
                    "AUROC": study["auc"],
                    "Fraction": settings.get("label_fraction", 1.0),
                    "Run": str(metrics_path.parent),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of the first nine columns, metrics to 3 decimals."""
    shown = table[COLUMNS[:9]].copy()
    for column in ["Accuracy", "Precision", "Recall", "Kappa", "AUROC"]:
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    shown["Learning rate"] = shown["Learning rate"].map(lambda v: f"{v:g}")
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += [
        "| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m mura_tf.report",
        description="Collect finished runs into report 002's Table 4 and figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--runs", default="saved_models", help="folder searched for finished runs")
    parser.add_argument("--out", default="reports", help="folder for the table and figures")
    args = parser.parse_args(argv)
    if not Path(args.runs).is_dir():
        raise ConfigError(f"--runs {args.runs} is not a folder")
    table = collect(args.runs)
    if table.empty:
        raise ConfigError(f"no finished runs (metrics.json with config.json) under {args.runs}")
    table = table.sort_values(["Body Part", "Fraction", "Exp"], kind="stable").reset_index(
        drop=True
    )

    from mura_tf.io import write_text
    from mura_tf.plots import plot_curves, plot_fractions

    out = Path(args.out)
    text = markdown(table)
    written = [
        write_text(out / "table.md", text),
        write_text(out / "table.csv", table.to_csv(index=False)),
    ]
    for part, rows in table.groupby("Body Part"):
        written.append(plot_fractions(rows, out / f"fractions_{part.lower()}.png", title=part))
    for run_dir in table["Run"].unique():
        history = Path(run_dir) / "history.csv"
        if history.is_file():
            name = "_".join(Path(run_dir).parts[-3:])
            written.append(
                plot_curves(pd.read_csv(history), out / "curves" / f"{name}.png", title=name)
            )
    print(text)
    print(f"wrote {len(written)} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
