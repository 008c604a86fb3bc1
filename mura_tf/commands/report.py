"""Collect runs into report 002's Table 4, or write one run's report page.

`mura-tf report --runs saved_models/ --out reports/`; `mura-tf report --run RUN` writes
`RUN/report.html` again (`mura_tf.runs.page`; every run writes it when it finishes);
`mura-tf report --compare RUN... --out reports/` sets runs side by side per body part
(`mura_tf.report.comparison`: comparison.md, comparison.csv, comparison_<metric>.png).

One row per (run, body part): Exp, Body Part, Learning rate, Epochs (pre-train + train),
Accuracy, Precision, Recall (study level, MURA's protocol), plus Kappa and AUROC. Writes
`table.md`, `table.csv`, `fractions_<part>.png` (accuracy / precision / recall over label fractions
against the baseline, report 002's figures 8-10) and `curves/<run>.png` (loss and accuracy per
epoch, report 000's figures 5-9).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mura_tf.cli import command_parser, run
from mura_tf.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser(
        "report",
        "Collect finished runs into report 002's Table 4 and figures; or, with --run, write "
        "one run's report.html again.",
    )
    parser.add_argument("--runs", default="saved_models", help="folder searched for finished runs")
    parser.add_argument("--out", default="reports", help="folder for the table and figures")
    parser.add_argument("--run", help="a finished run folder: (re)write its report.html")
    parser.add_argument(
        "--compare", nargs="+", metavar="RUN",
        help="compare these finished runs side by side per body part (study kappa, AUROC, "
        "accuracy) with the MURA paper's kappas: an all-parts run, per-part runs, a cascade, "
        "an ensemble ...",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.compare:
        return _compare(args.compare, Path(args.out))
    if args.run:
        # After parsing: --help and a wrong flag answer before TensorFlow loads.
        from mura_tf.runs.page import write_run_report
        from mura_tf.runs.record import read_run

        if read_run(args.run) is None:
            raise ConfigError(f"--run {args.run} is not a finished run (no metrics.json)")
        print(f"wrote {write_run_report(args.run)}")
        return 0
    if not Path(args.runs).is_dir():
        raise ConfigError(f"--runs {args.runs} is not a folder")
    # After parsing: --help and a wrong flag answer before TensorFlow loads.
    from mura_tf.report.table import collect, markdown

    table = collect(args.runs)
    if table.empty:
        raise ConfigError(f"no finished runs (metrics.json with config.json) under {args.runs}")
    table = table.sort_values(["Body Part", "Fraction", "Exp"], kind="stable").reset_index(
        drop=True
    )

    # After parsing: --help and a wrong flag answer before TensorFlow loads.
    from mura_tf.evaluators.plots import plot_curves, plot_fractions
    from mura_tf.files import write_text

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


def _compare(run_dirs: list[str], out: Path) -> int:
    # After parsing: --help and a wrong flag answer before TensorFlow loads.
    from mura_tf.evaluators.plots import plot_comparison
    from mura_tf.files import write_text
    from mura_tf.report.comparison import (
        METRICS,
        PAPER_ROW,
        compare,
        comparison_rows,
        markdown,
        paired_markdown,
        paired_table,
        wide,
    )

    rows = comparison_rows(run_dirs)
    table = compare(rows)
    pairs = paired_table(rows)
    text = markdown(table) + paired_markdown(pairs)
    written = [
        write_text(out / "comparison.md", text),
        write_text(out / "comparison.csv", table.to_csv(index=False, float_format="%.6g")),
    ]
    if not pairs.empty:
        written.append(
            write_text(out / "paired.csv", pairs.to_csv(index=False, float_format="%.6g"))
        )
    for metric, title in METRICS.items():
        written.append(
            plot_comparison(
                wide(table, metric),
                out / f"comparison_{metric}.png",
                f"Study {title} per part (95% intervals)",
                reference=PAPER_ROW,
                low=wide(table, metric, "low"),
                high=wide(table, metric, "high"),
            )
        )
    print(text)
    print(f"wrote {len(written)} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
