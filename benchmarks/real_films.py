"""What the recipes reach on real films: FracAtlas, from random weights, at CPU sizes.

    python -m benchmarks.real_films --data-dir ../shared/data/fracatlas \\
        [--seeds 0,1,2] [--runs resnet18_mlp,torch_resnet18_mlp,baseline_densenet,simclr] \\
        [--image-size 128] [--epochs 12] [--out DIR] [-- RECIPE FLAGS...]

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
  weights (report 002's protocol, at CPU size).

Prints one table row per run and seed, then the mean and standard deviation over seeds. The
README's "Real films" table is this command's output (with its command and CPU).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = ("resnet18_mlp", "torch_resnet18_mlp", "baseline_densenet", "simclr")
FRACTIONS = (0.01, 0.1, 1.0)
REPO = Path(__file__).resolve().parents[1]


def _recipe(name: str, flags: list[str], out: Path) -> tuple[Path, float]:
    """Run `python -m recipes.NAME FLAGS --out OUT`; the run folder it printed, and seconds
    (NaN for a run that an earlier invocation finished: it is read, not trained again)."""

    from mura_tf.runs import read_run
    from recipes.common import configure

    config = importlib.import_module(f"recipes.{name}").CONFIG
    run_dir = configure(config, [*flags, "--out", str(out)]).run_dir()
    if read_run(run_dir) is not None:
        print(f"$ (finished before) {run_dir}", file=sys.stderr, flush=True)
        return run_dir, float("nan")
    command = [sys.executable, "-m", f"recipes.{name}", *flags, "--out", str(out)]
    print("$ " + shlex.join(command[1:]), file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    for line in done.stdout.splitlines():
        if line.startswith("run folder:"):
            return Path(line.split(":", 1)[1].strip()), seconds
    raise SystemExit(f"{name} printed no run folder:\n{done.stdout[-2000:]}")


def _row(run: str, seed: int, run_dir: Path, seconds: float) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    where = metrics.get("localisation", {})
    selected = metrics.get("selected_epoch", {})
    return {
        "run": run,
        "seed": seed,
        "auroc": metrics["study"]["auc"],
        "kappa": metrics["study"]["kappa"],
        "accuracy": metrics["study"]["accuracy"],
        "pointing": where.get("pointing_hit_rate"),
        "chance": where.get("pointing_chance"),
        "mass/share": (where["mass_in_outline"] / where["outline_share"] if where else None),
        "epoch": f"{selected.get('epoch')}/{selected.get('epochs_run')}",
        "minutes": seconds / 60,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
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
    parser.add_argument("--epochs", type=int, default=12, help="supervised epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--out", help="run folders (default: a temporary folder)")
    args = parser.parse_args(argv)
    if not args.data_dir or not Path(args.data_dir).is_dir():
        parser.error("--data-dir (or $FRACATLAS_DIR) must name a FracAtlas folder")
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        parser.error(f"unknown run {unknown[0]!r}: use any of {', '.join(RUNS)}")
    seeds = [int(s) for s in args.seeds.split(",")]

    from mura_tf.cli import quiet_tensorflow

    quiet_tensorflow()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        rows = []
        for seed in seeds:
            rows += _seed_rows(args, runs, seed, out, extra)
            _print(rows)
    return 0


def _seed_rows(args, runs: list[str], seed: int, out: Path, extra: list[str]) -> list[dict]:
    common = [
        "--data-dir", args.data_dir, "--weights", "none", "--image-size", str(args.image_size),
        "--seed", str(seed), "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    supervised = [*common, "--epochs", str(args.epochs), *extra]
    rows = []
    keras_run = None
    if "resnet18_mlp" in runs or "torch_resnet18_mlp" in runs:
        keras_run, seconds = _recipe("resnet18_mlp", [*supervised, "--no-freeze"], out)
        if "resnet18_mlp" in runs:
            rows.append(_row("resnet18_mlp", seed, keras_run, seconds))
    if "torch_resnet18_mlp" in runs:
        start = time.perf_counter()
        command = [sys.executable, "-m", "benchmarks.torch_reference", str(keras_run), str(seed)]
        print("$ " + shlex.join(command[1:]), file=sys.stderr, flush=True)
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            raise SystemExit(f"the PyTorch reference failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(
            {"run": "torch_resnet18_mlp", "seed": seed, **result,
             "minutes": (time.perf_counter() - start) / 60}
        )  # fmt: skip
    if "baseline_densenet" in runs:
        run_dir, seconds = _recipe("baseline_densenet", supervised, out)
        rows.append(_row("baseline_densenet", seed, run_dir, seconds))
    if "simclr" in runs:
        pretrain = [
            "--data-dir", args.data_dir, "--part", "all", "--image-size", str(args.image_size),
            "--seed", str(seed), "--epochs", str(args.pretrain_epochs), "--backbone", "resnet18",
        ]  # fmt: skip
        encoder, seconds = _recipe("simclr_pretrain", pretrain, out)
        rows.append({"run": "simclr_pretrain", "seed": seed, "minutes": seconds / 60})
        for fraction in FRACTIONS:
            tune = [*supervised, "--part", "all", "--backbone", "resnet18",
                    "--fraction", str(fraction)]  # fmt: skip
            for start_from, weights in (("simclr", ["--encoder", str(encoder)]), ("random", [])):
                run_dir, seconds = _recipe("simclr_finetune", [*tune, *weights], out)
                name = f"finetune {fraction:.0%} from {start_from}"
                rows.append(_row(name, seed, run_dir, seconds))
    return rows


def _print(rows: list[dict]) -> None:
    import pandas as pd

    columns = ["run", "seed", "auroc", "kappa", "accuracy", "pointing", "chance", "mass/share",
               "epoch", "minutes"]  # fmt: skip
    table = pd.DataFrame(rows).reindex(columns=columns)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        numeric = table.drop(columns=["seed", "epoch"], errors="ignore")
        spread = numeric.groupby("run", sort=False).agg(["mean", "std"])
        if table["seed"].nunique() > 1:
            print("\nmean and standard deviation over seeds")
            print(spread.to_string(float_format=lambda v: f"{v:.3f}"))
    print(flush=True)


if __name__ == "__main__":
    sys.exit(main())
