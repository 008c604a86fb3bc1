"""Side by side per body part: study kappa, AUROC and accuracy of finished runs, with the MURA
paper's kappas as a reference row.

Each row is computed from test predictions (`predictions.csv`) with MURA's study rule
(`mura_tf.evaluators.metrics.study_level_metrics`), so every row is scored the same way:

- a run on several parts, an ensemble (`mura_tf.runs.ensemble`): one row, its label; runs
  whose part sets overlap without being single parts are two rows, paired on their common
  studies;
- runs on one part each with the same label (per-part models): merged into one row, as long
  as their parts are disjoint. Two runs on the same part (two seeds, or one setting against
  another) are two rows, told apart by their folders, and get their paired line;
- a part-router cascade (`mura_tf.runs.cascade`): its row, and beside it "cascade given the true
  parts": the same experts with every study sent to its true part, i.e. what routing costs.

The paper's figures come from its own 207-study test set with ImageNet weights
(`mura_tf.evaluators.published`); they are a reference, not a score on the same films.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mura_tf.data.datasets import DATASETS, MURA, dataset_of_parts, short_name
from mura_tf.errors import ConfigError
from mura_tf.evaluators.intervals import metric_intervals, value_with_interval
from mura_tf.evaluators.metrics import study_level_metrics
from mura_tf.evaluators.paired import paired_difference
from mura_tf.evaluators.published import MURA_PAPER, MURA_PAPER_KAPPA, MURA_PAPER_KAPPA_CI
from mura_tf.runs.kinds import ABNORMALITY_SECTIONS
from mura_tf.runs.record import FinishedRun, read_run

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
    rows: list[Row] = []
    for item in _merged_per_part(runs):
        if isinstance(item, list):  # per-part runs on disjoint parts
            frame = pd.concat([_predictions(run) for run in item], ignore_index=True)
            name = f"{item[0].label} (per part)"
            rows.append(Row(name, frame, tuple(str(r.run_dir) for r in item)))
            continue
        frame = _predictions(item)
        rows.append(Row(item.label, frame, (str(item.run_dir),)))
        if item.section == "cascade":
            oracle = frame.assign(probability=frame["probability_true_part"])
            rows.append(Row(TRUE_PARTS_ROW, oracle, (str(item.run_dir),)))
    # Runs of one label (seeds of a recipe) are told apart by their folders.
    names = [row.name for row in rows]
    return [
        Row(f"{row.name} ({Path(row.runs[0]).name})", row.predictions, row.runs)
        if names.count(row.name) > 1
        else row
        for row in rows
    ]


def _single_part(run: FinishedRun) -> str | None:
    """The run's one part, or None for a run on several parts or a cascade."""
    if run.section == "cascade":
        return None
    dataset = DATASETS[run.settings.get("dataset", "mura")]
    parts = dataset.parse_parts(run.settings.get("part") or "all")
    return parts[0] if len(parts) == 1 else None


def _merged_per_part(runs: list[FinishedRun]) -> list[FinishedRun | list[FinishedRun]]:
    """The runs in order, single-part runs of one label gathered into groups of disjoint parts
    (a group standing where its first run stood): a run joins the first group of its label,
    runs of its own seed first, that does not hold its part yet, else starts a group. A group
    of one run is a per-part row too."""
    order: list[FinishedRun | list[FinishedRun]] = []
    groups: dict[str, list[list[FinishedRun]]] = {}
    for run in runs:
        part = _single_part(run)
        if part is None:
            order.append(run)
            continue
        seed = run.settings.get("seed")
        candidates = sorted(
            groups.setdefault(run.label, []), key=lambda g: g[0].settings.get("seed") != seed
        )
        group = next((g for g in candidates if part not in map(_single_part, g)), None)
        if group is None:
            group = []
            groups[run.label].append(group)
            order.append(group)
        group.append(run)
    return order


def _predictions(run: FinishedRun) -> pd.DataFrame:
    return pd.read_csv(run.run_dir / "predictions.csv")


def compare(rows: Sequence[Row]) -> pd.DataFrame:
    """Long table: `system`, `part` (short name or "all"), `metric`, `value`, `low`, `high`
    (its 95% interval, `evaluators.intervals`), `studies`, `source`; the MURA paper's kappas,
    with the paper's intervals, last."""
    records = []
    for row in rows:
        metrics = study_level_metrics(row.predictions)
        intervals = metric_intervals(row.predictions)
        docs = {"all": metrics, **metrics["per_part"]}
        bounds = {"all": intervals, **intervals["per_part"]}
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
                        "low": (bounds[part]["study"][key] or [None, None])[0],
                        "high": (bounds[part]["study"][key] or [None, None])[1],
                        "studies": int(counts[part]),
                        "source": " ".join(row.runs),
                    }
                )
    parts = {p for row in rows for p in row.predictions["part"].unique()}
    for part, value in MURA_PAPER_KAPPA.items() if dataset_of_parts(parts) is MURA else ():
        records.append(
            {
                "system": PAPER_ROW,
                "part": part if part == "all" else short_name(part),
                "metric": "kappa",
                "value": value,
                "low": MURA_PAPER_KAPPA_CI[part][0],
                "high": MURA_PAPER_KAPPA_CI[part][1],
                "studies": None,
                "source": MURA_PAPER,
            }
        )
    return pd.DataFrame(records)


def wide(table: pd.DataFrame, metric: str, values: str = "value") -> pd.DataFrame:
    """One metric (its `values` column) as systems x parts (each dataset's order, then "all"),
    rows in the order given."""
    shown = table[table["metric"] == metric]
    names = [short_name(p) for d in DATASETS.values() for p in d.parts]
    order = [*dict.fromkeys(names), "all"]
    out = shown.pivot(index="system", columns="part", values=values)
    out = out.reindex(columns=[c for c in order if c in out.columns])
    return out.reindex(list(dict.fromkeys(shown["system"])))


def markdown(table: pd.DataFrame) -> str:
    """The three metrics as GitHub-flavoured Markdown tables, each value to 3 decimals with
    its 95% interval, then the paired differences (`paired`) when given."""
    parts = []
    for metric, title in METRICS.items():
        frame = wide(table, metric)
        low, high = wide(table, metric, "low"), wide(table, metric, "high")
        header = "| " + " | ".join([f"Study {title} (95% interval)", *frame.columns]) + " |"
        lines = [header, "|---" * (len(frame.columns) + 1) + "|"]
        for system, values in frame.iterrows():
            cells = [
                value_with_interval(v, (lo, hi))
                for v, lo, hi in zip(values, low.loc[system], high.loc[system], strict=True)
            ]
            name = f"{system} *" if system == PAPER_ROW else system
            lines.append("| " + " | ".join([name, *cells]) + " |")
        parts.append("\n".join(lines))
    note = (
        f"\n\n\\* {MURA_PAPER}: the paper's model on its own test set (real MURA, ImageNet "
        "weights); a reference, not a score on these films. Its intervals are as published: "
        "the competition's script used the kappa's variance where its standard error belongs, "
        "which makes them too narrow; this project's are a bootstrap over studies."
    )
    if PAPER_ROW not in set(table["system"]):  # another dataset: no published row
        note = ""
    return "\n\n".join(parts) + note + "\n"


def paired_table(rows: Sequence[Row]) -> pd.DataFrame:
    """Every pair of rows scored on studies in common: the first minus the second in study
    AUROC (paired bootstrap interval, DeLong's p) and kappa (paired bootstrap interval), all
    parts together (`evaluators.paired`). A difference that is undefined is NaN, and `note`
    says why: the common studies hold one label only (neither), or kappa is undefined in most
    resamples (AUROC still shown)."""
    records = []
    for i, first in enumerate(rows):
        for second in rows[i + 1 :]:
            common = set(first.predictions["study"]) & set(second.predictions["study"])
            if not common:
                continue
            found = paired_difference(first.predictions, second.predictions)
            record = {"first": first.name, "second": second.name, "studies": found["studies"]}
            auc, kappa, test = found["auc"], found["kappa"], found["delong"]
            notes = []
            if test is None or auc["interval"] is None:
                notes.append("the common studies hold one label only: no AUROC or kappa")
                auc = kappa = {"difference": math.nan, "interval": None}
                test = {"p": math.nan}
            elif kappa["interval"] is None:
                notes.append("kappa undefined in most resamples")
            for name, found_metric in (("auc", auc), ("kappa", kappa)):
                low, high = found_metric["interval"] or (math.nan, math.nan)
                defined = found_metric["interval"] is not None
                record[f"{name}_difference"] = found_metric["difference"] if defined else math.nan
                record[f"{name}_low"], record[f"{name}_high"] = low, high
            record["delong_p"] = test["p"]
            record["note"] = "; ".join(notes)
            records.append(record)
    return pd.DataFrame(records)


def _difference(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "undefined"
    return f"{value:+.3f} ({low:+.3f} to {high:+.3f})"


def paired_markdown(pairs: pd.DataFrame) -> str:
    """`paired_table` as a Markdown table: differences with their 95% paired intervals."""
    if pairs.empty:
        return ""
    lines = [
        "| first - second | studies | AUROC difference (95% interval) | DeLong p | "
        "kappa difference (95% interval) | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in pairs.itertuples():
        p = "undefined" if math.isnan(r.delong_p) else f"{r.delong_p:.3g}"
        lines.append(
            f"| {r.first} - {r.second} | {r.studies} "
            f"| {_difference(r.auc_difference, r.auc_low, r.auc_high)} | {p} "
            f"| {_difference(r.kappa_difference, r.kappa_low, r.kappa_high)} | {r.note} |"
        )
    return (
        "\n\nPaired differences on the studies both systems scored (all parts; bootstrap over "
        "those studies, the same draws for both; DeLong's test for AUROC):\n\n"
        + "\n".join(lines)
        + "\n"
    )
