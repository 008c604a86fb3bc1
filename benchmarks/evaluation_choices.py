"""Choices made after training, measured on dev: test-time flips and an ensemble of seeds.

    python -m benchmarks.evaluation_choices RUN RUN RUN [--record FILE]

RUN are finished supervised runs of one recipe that differ only in `--seed`. Each run's
handed-over model (`model.keras`) scores its own dev films and the (shared) test films four
ways: as trained; as the mean of the film's and its horizontal mirror's probabilities
(test-time flips); and the mean over the runs (an ensemble of the seeds, `mura-tf ensemble`'s
rule), with and without flips. A choice is judged by dev AUROC (per seed and its mean and
standard deviation over seeds; an ensemble is one model, scored on each distinct dev split
that none of its members trained on). Test AUROC is printed beside it, never
used to choose. FracAtlas and own films have one film per study, so image and study AUROC are
one number; MURA's runs are scored per study, as the paper does.

The "as trained" test AUROC must reproduce each run's `metrics.json`; the benchmark stops if
it does not (it would not be scoring what the run scored).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.records import add_record_flag, command_line, write_record
from benchmarks.torch_reference import run_films

WAYS = ("as trained", "with test-time flips")


def _study_auroc(frame: pd.DataFrame, probability: np.ndarray) -> float:
    """AUROC of the study probability (mean of its views'), the MURA paper's unit."""
    from sklearn.metrics import roc_auc_score

    studies = frame.assign(probability=probability).groupby("study", sort=False)
    return float(roc_auc_score(studies["label"].first(), studies["probability"].mean()))


def score_run(run_dir: Path) -> dict[str, dict[str, pd.DataFrame]]:
    """`{split: {way: frame}}` for dev and test: the run's films with `probability`."""
    import tensorflow as tf

    from mura_tf.data.augment import AugmentConfig
    from mura_tf.data.pipeline import PipelineConfig, make_dataset
    from mura_tf.files import load_for_inference

    config = json.loads((run_dir / "config.json").read_text())
    settings = config["experiment"]
    model = load_for_inference(run_dir / "model.keras")
    pipeline = PipelineConfig(
        image_size=settings["image_size"], keep_aspect=bool(settings.get("keep_aspect")),
        normalization=config["normalization"], augment=AugmentConfig(ops=()),
    )  # fmt: skip
    films = run_films(run_dir)
    scored: dict[str, dict[str, pd.DataFrame]] = {}
    for split in ("dev", "test"):
        frame = films[films["split"] == split].reset_index(drop=True)
        batches = make_dataset(frame, pipeline, batch_size=64).map(lambda x, y: x)
        plain = model.predict(batches, verbose=0)[:, 0]
        mirrored = model.predict(batches.map(lambda x: tf.reverse(x, [2])), verbose=0)[:, 0]
        scored[split] = {
            WAYS[0]: frame.assign(probability=plain),
            WAYS[1]: frame.assign(probability=(plain + mirrored) / 2),
        }
    return scored


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def choice_table(runs: list[Path], scored: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The printed table: one row per way, single runs then their ensemble."""
    columns = ["model", "way", "dev AUROC per seed", "dev AUROC", "test AUROC"]
    rows = []
    for way in WAYS:
        dev = [_study_auroc(s["dev"][way], s["dev"][way]["probability"]) for s in scored]
        test = [_study_auroc(s["test"][way], s["test"][way]["probability"]) for s in scored]
        rows.append(["one seed", way, ", ".join(f"{v:.3f}" for v in dev), _mean_sd(dev),
                     _mean_sd(test)])  # fmt: skip
    # The ensemble is scored on each distinct dev split that every member held out (FracAtlas's
    # is fixed, so one; MURA's is drawn by seed, and a member may have trained on another
    # seed's dev films, which would flatter the ensemble).
    dev_splits = {frozenset(s["dev"][WAYS[0]]["path"]): s for s in scored}
    held_out = [s for paths, s in dev_splits.items()
                if all(paths <= set(o["dev"][WAYS[0]]["path"]) for o in scored)]  # fmt: skip
    for way in WAYS:
        dev = [_ensemble_auroc(scored, "dev", way, s["dev"][way]) for s in held_out]
        test = _ensemble_auroc(scored, "test", way, scored[0]["test"][way])
        rows.append([f"ensemble of {len(runs)} seeds", way,
                     ", ".join(f"{v:.3f}" for v in dev) or "(no dev split held out by all)",
                     f"{dev[0]:.3f}" if len(dev) == 1 else _mean_sd(dev) if dev else "-",
                     f"{test:.3f}"])  # fmt: skip
    return columns, rows


def _ensemble_auroc(scored: list[dict], split: str, way: str, frame: pd.DataFrame) -> float:
    probabilities = []
    for s in scored:
        by_path = s[split][way].set_index("path")["probability"]
        probabilities.append(frame["path"].map(by_path).to_numpy())
    return _study_auroc(frame, np.mean(probabilities, axis=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.evaluation_choices",
        description="Test-time flips and a seed ensemble, judged on dev (see the module).",
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                        help="finished runs of one recipe, one per seed")  # fmt: skip
    add_record_flag(parser)
    args = parser.parse_args(argv)
    for run in args.runs:
        if not (run / "metrics.json").is_file() or not (run / "model.keras").is_file():
            parser.error(f"{run} is not a finished run with its model.keras")
    scored = []
    for run in args.runs:
        print(f"scoring {run} ...", file=sys.stderr)
        s = score_run(run)
        recorded = json.loads((run / "metrics.json").read_text())["study"]["auc"]
        mine = _study_auroc(s["test"][WAYS[0]], s["test"][WAYS[0]]["probability"])
        if abs(mine - recorded) > 2e-3:
            print(f"{run}: test AUROC {mine:.4f} here, {recorded:.4f} in its metrics.json: "
                  "model.keras is not the model that was scored", file=sys.stderr)  # fmt: skip
            return 1
        scored.append(s)
    columns, rows = choice_table(args.runs, scored)
    print("\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
                     *("| " + " | ".join(row) + " |" for row in rows)]))  # fmt: skip
    if args.record:
        write_record(
            args.record, command_line("benchmarks.evaluation_choices", sys.argv[1:]),
            columns, rows,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
