"""Side by side per body part: study kappa, AUROC and accuracy of finished runs, with the MURA
paper's kappas as a reference row.

Each row is computed from test predictions (`predictions.csv`) with MURA's study rule
(`mura_tf.metrics.study_level_metrics`), so every row is scored the same way:

- a run on several parts, an ensemble (`mura_tf.ensemble`): one row, its label;
- runs on one part each with the same label (per-part models): merged into one row;
- a part-router cascade (`mura_tf.cascade`): its row, and beside it "cascade given the true
  parts": the same experts with every study sent to its true part, i.e. what routing costs.

The paper's figures come from its own 207-study test set with ImageNet weights
(`mura_tf.published`); they are a reference, not a score on the same films.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from mura_tf.errors import ConfigError
from mura_tf.metrics import study_level_metrics
from mura_tf.parts import PARTS, parse_parts, short_name
from mura_tf.published import MURA_PAPER, MURA_PAPER_KAPPA
from mura_tf.runs import ABNORMALITY_SECTIONS, FinishedRun, read_run

METRICS = {"kappa": "Kappa", "auc": "AUROC", "accuracy": "Accuracy"}
PAPER_ROW = "MURA paper (its test set)"
TRUE_PARTS_ROW = "cascade given the true parts"


@dataclass(frozen=True)
class Row:
    """One system: its name, its test predictions and the runs they come from."""

    name: str
    predictions: pd.DataFrame
    runs: tuple[str, ...]


def comparison_rows(run_dirs: Sequence[str | os.PathLike[str]]) -> list[Row]:
    """The rows for `run_dirs` (see the module docstring), in the order given.

    Raises:
        ConfigError: a folder is not a finished abnormality run.
    """
    runs: list[FinishedRun] = []
    for run_dir in run_dirs:
        run = read_run(run_dir)
        if run is None or run.section not in ABNORMALITY_SECTIONS:
            raise ConfigError(
                f"{run_dir} is not a finished abnormality run (a recipe's run, an ensemble or a "
                "cascade, with metrics.json)"
            )
        runs.append(run)
    # Single-part runs of one label become one row, where the first of them stands.
    order: list[FinishedRun | str] = []
    merged: dict[str, list[FinishedRun]] = {}
    for run in runs:
        single = len(parse_parts(run.settings.get("part") or "all")) == 1
        if single and run.section != "cascade":
            if run.label not in merged:
                merged[run.label] = []
                order.append(run.label)
            merged[run.label].append(run)
        else:
            order.append(run)
    rows: list[Row] = []
    for item in order:
        if isinstance(item, str):
            group = merged[item]
            frame = pd.concat([_predictions(run) for run in group], ignore_index=True)
            rows.append(Row(f"{item} (per part)", frame, tuple(str(r.run_dir) for r in group)))
            continue
        frame = _predictions(item)
        rows.append(Row(item.label, frame, (str(item.run_dir),)))
        if item.section == "cascade":
            oracle = frame.assign(probability=frame["probability_true_part"])
            rows.append(Row(TRUE_PARTS_ROW, oracle, (str(item.run_dir),)))
    return rows


def _predictions(run: FinishedRun) -> pd.DataFrame:
    return pd.read_csv(run.run_dir / "predictions.csv")


def compare(rows: Sequence[Row]) -> pd.DataFrame:
    """Long table: `system`, `part` (short name or "all"), `metric`, `value`, `studies`,
    `source`; the MURA paper's kappas last."""
    records = []
    for row in rows:
        metrics = study_level_metrics(row.predictions)
        docs = {"all": metrics, **metrics["per_part"]}
        counts = row.predictions.groupby("part")["study"].nunique().to_dict()
        counts["all"] = row.predictions["study"].nunique()
        for part, doc in docs.items():
            for key in METRICS:
                records.append(
                    {
                        "system": row.name,
                        "part": part if part == "all" else short_name(part),
                        "metric": key,
                        "value": doc["study"][key],
                        "studies": int(counts[part]),
                        "source": " ".join(row.runs),
                    }
                )
    for part, value in MURA_PAPER_KAPPA.items():
        records.append(
            {
                "system": PAPER_ROW,
                "part": part if part == "all" else short_name(part),
                "metric": "kappa",
                "value": value,
                "studies": None,
                "source": MURA_PAPER,
            }
        )
    return pd.DataFrame(records)


def wide(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One metric as systems x parts (PARTS order, then "all"), rows in the order given."""
    shown = table[table["metric"] == metric]
    order = [short_name(p) for p in PARTS] + ["all"]
    out = shown.pivot(index="system", columns="part", values="value")
    out = out.reindex(columns=[c for c in order if c in out.columns])
    return out.reindex(list(dict.fromkeys(shown["system"])))


def markdown(table: pd.DataFrame) -> str:
    """The three metrics as GitHub-flavoured Markdown tables, to 3 decimals."""
    parts = []
    for metric, title in METRICS.items():
        frame = wide(table, metric)
        header = "| " + " | ".join([f"Study {title}", *frame.columns]) + " |"
        lines = [header, "|---" * (len(frame.columns) + 1) + "|"]
        for system, values in frame.iterrows():
            cells = ["" if pd.isna(v) else f"{v:.3f}" for v in values]
            name = f"{system} *" if system == PAPER_ROW else system
            lines.append("| " + " | ".join([name, *cells]) + " |")
        parts.append("\n".join(lines))
    note = (
        f"\n\n\\* {MURA_PAPER}: the paper's model on its own test set (real MURA, ImageNet "
        "weights); a reference, not a score on these films."
    )
    return "\n\n".join(parts) + note + "\n"
