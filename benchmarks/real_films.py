"""What the recipes reach on real films: FracAtlas, from random weights, at CPU sizes.

    python -m benchmarks.real_films --data-dir ../shared/data/fracatlas \\
        [--seeds 0,1,2] [--runs resnet18_mlp,torch_resnet18_mlp,baseline_densenet,simclr,...] \\
        [--image-size 128] [--epochs 12] [--out DIR] [--record DIR] [-- RECIPE FLAGS...]

Every row is a run as a user starts it (`python -m recipes.NAME --data-dir DIR --weights none
...`), in a process of its own, timed; its numbers come from its run folder (`metrics.json`).
FracAtlas has one film per study, so image and study AUROC are one number. The runs:

- `resnet18_mlp`: report 000's ResNet18 + MLP, unfrozen, from random weights;
- `torch_resnet18_mlp`: a plain PyTorch ResNet18 (torchvision) + the same head, trained with
  the same schedule (Adam, learning rate, epochs, batch, image size, augmentations, dev metric
  for the epoch handed over) on the same films (the Keras run's `splits.csv`), films read with
  Pillow (EXIF applied) in a `DataLoader`: whether this project trains as a standard
  implementation does on real films (needs `pip install -e .[bench]`);
- `baseline_densenet`: report 002's DenseNet169 baseline, from random weights;
- `simclr`: SimCLR pre-training on FracAtlas's training films (labels unused), then
  fine-tuning at 1%, 10% and 100% of the labels, against the same fine-tuning from random
  weights (report 002's protocol, at CPU size);
- `fracatlas_outlines`: the outline-guided ResNet18 (`--outline-weight`), whose outline head's
  own map is scored beside Grad-CAM ("own pointing", "own mass/share").

Prints one table row per run and seed (the dev AUROC of the epoch handed over, which is what a
default is judged by; test AUROC and kappa with their 95% intervals), then the mean
and standard deviation over seeds: seed variance beside test-set variance. The
documentation's tables on real films are generated from the record (`python -m
benchmarks.tables`).

The whole table takes more CPU hours than a 2-core session has, so every finished run's small
files (metrics, history, predictions, settings: `RECORDED`) are kept in `--record`
(`benchmarks/results/real_films/`, versioned) and read back by later invocations, on this
machine or another: the table grows run by run, each row's CPU, wall time and date in its
`benchmark.json`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.records import copy_files, cpu_model, split_at_dashes
from mura_tf.evaluators.intervals import interval_text
from mura_tf.files import write_json

RUNS = ("resnet18_mlp", "torch_resnet18_mlp", "baseline_densenet", "simclr", "fracatlas_outlines")
FRACTIONS = (0.01, 0.1, 1.0)
EPOCHS = 12  # supervised epochs at most (early stopping with the recipes' patience)
REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "benchmarks" / "results" / "real_films"


# What a finished run leaves in the record (`--record`): enough to print its row and to let the
# PyTorch twin train on its films, not its weights (a few hundred kB a run).
RECORDED = ("config.json", "metrics.json", "history.csv", "predictions.csv", "localisation.csv",
            "localisation_outline_head.csv", "torch_reference.json", "checkpoints/best.json",
            "benchmark.json")  # fmt: skip
TIMING = "benchmark.json"  # the CPU a run was trained on, its wall time and the day it ran


def _recipe(
    name: str, flags: list[str], out: Path, record: Path | None, keep_splits: bool = False
) -> tuple[Path, Path, float]:
    """Run `python -m recipes.NAME FLAGS --out OUT` unless it finished before.

    Returns the run folder under `out` (the path later flags name, e.g. `--encoder`), the
    folder its results are read from (the same, or its copy in `record`), and seconds (NaN for
    a run finished by an earlier invocation: it is read, not trained again)."""

    from mura_tf.runs.record import read_run

    run_dir, kept = _run_paths(name, flags, out, record)
    for found in (run_dir, kept):
        if found is not None and read_run(found) is not None:
            print(f"$ (finished before) {found}", file=sys.stderr, flush=True)
            if found == run_dir and kept is not None and read_run(kept) is None:
                _keep(run_dir, kept, keep_splits)
            return run_dir, found, float("nan")
    command = [sys.executable, "-m", f"recipes.{name}", *flags, "--out", str(out)]
    print("$ " + shlex.join(command[1:]), file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    record = {"cpu": cpu_model(), "seconds": seconds, "date": time.strftime("%Y-%m-%d")}
    write_json(run_dir / TIMING, record)
    if kept is not None:
        _keep(run_dir, kept, keep_splits)
    return run_dir, run_dir, seconds


def _run_paths(
    name: str, flags: list[str], out: Path, record: Path | None
) -> tuple[Path, Path | None]:
    """The run folder `python -m recipes.NAME FLAGS --out OUT` uses, and its copy in `record`
    (None without a record)."""
    from recipes.common import configure  # after main's quiet TensorFlow start

    config = importlib.import_module(f"recipes.{name}").CONFIG
    run_dir = configure(config, [*flags, "--out", str(out)]).run_dir()
    return run_dir, (record / run_dir.relative_to(out) if record else None)


def _keep(run_dir: Path, kept: Path, splits: bool = False) -> None:
    """Copy a finished run's small files (`RECORDED`, and `splits.csv` if asked) to `kept`."""
    names = (*RECORDED, *(("splits.csv",) if splits else ()))
    copy_files(run_dir, kept, [name for name in names if (run_dir / name).is_file()])


def _row(run: str, seed: int, run_dir: Path, seconds: float) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    timing = json.loads((run_dir / TIMING).read_text()) if (run_dir / TIMING).is_file() else {}
    if math.isnan(seconds):  # finished before: the time it took then, on its CPU
        seconds = timing.get("seconds", seconds)
    where = metrics.get("localisation", {})
    own = metrics.get("localisation_outline_head", {})
    selected = metrics.get("selected_epoch", {})
    return {
        "run": run,
        "seed": seed,
        # What the epoch was chosen by: the dev value of the monitored metric there.
        "dev": selected.get("value") if selected.get("monitor") == "val_auc" else None,
        "auroc": metrics["study"]["auc"],
        "auroc 95%": interval_text(metrics["study"].get("auc_ci")),
        "kappa": metrics["study"]["kappa"],
        "kappa 95%": interval_text(metrics["study"].get("kappa_ci")),
        "accuracy": metrics["study"]["accuracy"],
        "pointing": where.get("pointing_hit_rate"),
        "chance": where.get("pointing_chance"),
        "mass/share": (where["mass_in_outline"] / where["outline_share"] if where else None),
        "own pointing": own.get("pointing_hit_rate"),
        "own mass/share": (own["mass_in_outline"] / own["outline_share"] if own else None),
        "epoch": f"{selected.get('epoch')}/{selected.get('epochs_run')}",
        "minutes": seconds / 60,
        "cpu": timing.get("cpu", ""),
    }


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_at_dashes(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.real_films",
        description="FracAtlas from random weights: every recipe, a PyTorch reference, SimCLR.",
    )
    parser.add_argument(
        "--data-dir", default=os.environ.get("FRACATLAS_DIR"),
        help="a FracAtlas folder (default: $FRACATLAS_DIR)",
    )  # fmt: skip
    parser.add_argument("--seeds", default="0,1,2", help="comma list of seeds")
    parser.add_argument("--runs", default=",".join(RUNS), help="comma list of " + ", ".join(RUNS))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="supervised epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument(
        "--out", help="run folders (default: a temporary folder); the SimCLR fine-tunes' folder "
        "names include their encoder's path, so keep one --out for records to match",
    )  # fmt: skip
    parser.add_argument(
        "--record", default=str(RECORD),
        help="where each finished run's small files are kept and read back (not trained "
        "again) by later invocations, on any machine (default: %(default)s; '' for none)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.data_dir or not Path(args.data_dir).is_dir():
        parser.error("--data-dir (or $FRACATLAS_DIR) must name a FracAtlas folder")
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        parser.error(f"unknown run {unknown[0]!r}: use any of {', '.join(RUNS)}")
    seeds = [int(s) for s in args.seeds.split(",")]

    from mura_tf.cli import start_tensorflow

    start_tensorflow()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        rows = []
        for seed in seeds:
            rows += _seed_rows(args, runs, seed, out, extra)
            _print(rows)
    return 0


def _seed_rows(args, runs: list[str], seed: int, out: Path, extra: list[str]) -> list[dict]:
    record = Path(args.record) if args.record else None
    common = [
        "--data-dir", args.data_dir, "--weights", "none", "--image-size", str(args.image_size),
        "--seed", str(seed), "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    supervised = [*common, "--epochs", str(args.epochs), *extra]
    # Rows of runs with other settings than the table's defaults say which (`-- --keep-aspect`).
    changed = [*extra, *([f"--epochs {args.epochs}"] if args.epochs != EPOCHS else [])]
    variant = (" " + " ".join(changed)) if changed else ""
    rows = []
    if "fracatlas_outlines" in runs:
        # One seed per row (the recipe averages three by default: its seeds are the rows).
        flags = ["--ensemble", "1", *supervised]
        _, run_dir, seconds = _recipe("fracatlas_outlines", flags, out, record)
        rows.append(_row("fracatlas_outlines" + variant, seed, run_dir, seconds))
    if "resnet18_mlp" in runs or "torch_resnet18_mlp" in runs:
        flags = [*supervised, "--no-freeze"]
        _, keras_run, seconds = _recipe("resnet18_mlp", flags, out, record, keep_splits=True)
        if "resnet18_mlp" in runs:
            rows.append(_row("resnet18_mlp" + variant, seed, keras_run, seconds))
        if "torch_resnet18_mlp" in runs:
            _, kept = _run_paths("resnet18_mlp", flags, out, record)
            twin = _torch_twin(keras_run, seed, kept)
            rows.append({"run": "torch_resnet18_mlp" + variant, "seed": seed, **twin})
    if "baseline_densenet" in runs:
        _, run_dir, seconds = _recipe("baseline_densenet", supervised, out, record)
        rows.append(_row("baseline_densenet" + variant, seed, run_dir, seconds))
    if "simclr" in runs:
        pretrain = [
            "--data-dir", args.data_dir, "--part", "all", "--image-size", str(args.image_size),
            "--seed", str(seed), "--epochs", str(args.pretrain_epochs), "--backbone", "resnet18",
        ]  # fmt: skip
        encoder, _, seconds = _recipe("simclr_pretrain", pretrain, out, record)
        rows.append({"run": "simclr_pretrain", "seed": seed, "minutes": seconds / 60})
        for fraction in FRACTIONS:
            tune = [*supervised, "--part", "all", "--backbone", "resnet18",
                    "--fraction", str(fraction)]  # fmt: skip
            for start_from, weights in (("simclr", ["--encoder", str(encoder)]), ("random", [])):
                # The encoder read from the record has no weights there: a fine-tune not
                # recorded yet needs it trained again (the same command, into `out`).
                missing = weights and not (encoder / "encoder.keras").is_file()
                if missing and not _recorded("simclr_finetune", [*tune, *weights], out, record):
                    _recipe("simclr_pretrain", pretrain, out, None)
                _, run_dir, seconds = _recipe("simclr_finetune", [*tune, *weights], out, record)
                name = f"finetune {fraction:.0%} from {start_from}{variant}"
                rows.append(_row(name, seed, run_dir, seconds))
    return rows


def _recorded(name: str, flags: list[str], out: Path, record: Path | None) -> bool:
    from mura_tf.runs.record import read_run

    _, kept = _run_paths(name, flags, out, record)
    return kept is not None and read_run(kept) is not None


def _torch_twin(keras_run: Path, seed: int, kept: Path | None) -> dict:
    """The PyTorch twin of `keras_run` (a run folder or its record: the twin reads only its
    `config.json` and `splits.csv`), trained in a process of its own; its result is kept beside
    the Keras run's files (`torch_reference.json`, and in its record `kept`) and read, not
    trained again, next time."""
    done_before = keras_run / "torch_reference.json"
    if done_before.is_file():
        print(f"$ (finished before) {done_before}", file=sys.stderr, flush=True)
        return json.loads(done_before.read_text())
    start = time.perf_counter()
    command = [sys.executable, "-m", "benchmarks.torch_reference", str(keras_run), str(seed)]
    print("$ " + shlex.join(command[1:]), file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"the PyTorch reference failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["minutes"] = (time.perf_counter() - start) / 60
    result["cpu"] = cpu_model()
    for folder in {keras_run, *((kept,) if kept else ())}:
        write_json(folder / "torch_reference.json", result)
    return result


def _print(rows: list[dict]) -> None:
    import pandas as pd

    columns = ["run", "seed", "dev", "auroc", "auroc 95%", "kappa", "kappa 95%", "accuracy",
               "pointing", "chance", "mass/share", "own pointing", "own mass/share", "epoch",
               "minutes", "cpu"]  # fmt: skip
    table = pd.DataFrame(rows).reindex(columns=columns)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        cpus = sorted(set(table.pop("cpu").dropna()) - {""})
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print("CPU: " + "; ".join(cpus or [cpu_model()]))
        numeric = table.drop(columns=["seed", "epoch", "auroc 95%", "kappa 95%"])
        spread = numeric.groupby("run", sort=False).agg(["mean", "std"])
        if table["seed"].nunique() > 1:
            print("\nmean and standard deviation over seeds")
            print(spread.to_string(float_format=lambda v: f"{v:.3f}"))
    print(flush=True)


if __name__ == "__main__":
    sys.exit(main())
