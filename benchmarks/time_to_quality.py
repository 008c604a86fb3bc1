"""Minutes until a dev AUROC is first reached: a recipe against its PyTorch twin.

    python -m benchmarks.time_to_quality --data-dir ../shared/data/fracatlas \\
        [--recipe fracatlas_outlines] [--seed 0] [--thresholds 0.70,0.72,0.75,0.78] \\
        [--out DIR] [--record FILE] [-- RECIPE FLAGS...]

First the recipe runs as a user starts it (`python -m recipes.NAME --data-dir DIR --seed S
--ensemble 1`: one model, as the twin is; a fresh run in a process of its own), then its
PyTorch twin (`benchmarks.torch_reference`: the same network, outline head and loss,
schedule, early stopping, films and augmentations, in a process without TensorFlow) on the
run's own split, one after the other on this CPU. Each side's clock starts when its process is
launched, so imports, reading the films and drawing the masks count, as they do for a user.
Each epoch's dev AUROC and the time it was known come from the run's TensorBoard log
(`logs/validation`, `epoch_auc`: Keras's AUC over 200 thresholds) and from the twin's `curve`
(scikit-learn's exact AUROC).

Prints, per side, the minutes (and epoch) at which each threshold was first reached, or "not
reached"; the best dev AUROC and its epoch; the median minutes per epoch; the whole run's
minutes; and the test AUROC of the epoch handed over. Measure with nothing else running: the
1-minute load average when it starts is printed and recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.records import (
    add_record_flag,
    command_line,
    cpu_model,
    split_at_dashes,
    write_record,
)

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.70, 0.72, 0.75, 0.78)


def keras_curve(run_dir: Path) -> list[dict]:
    """Per epoch of the run: `epoch` (from 1), `dev_auroc`, `time` (wall clock), from its
    TensorBoard validation log (every file of it: a resumed run has several)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util.tensor_util import make_ndarray

    by_epoch: dict[int, dict] = {}
    for events in sorted((run_dir / "logs" / "validation").glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.tag == "epoch_auc":
                    by_epoch[event.step + 1] = {
                        "epoch": event.step + 1,
                        "dev_auroc": float(make_ndarray(value.tensor)),
                        "time": event.wall_time,
                    }
    return [by_epoch[k] for k in sorted(by_epoch)]


def first_reached(curve: list[dict], started: float, threshold: float) -> str:
    """`12.3 (epoch 5)`: minutes from `started` to the first epoch at `threshold` or above."""
    for point in curve:
        if point["dev_auroc"] >= threshold:
            return f"{(point['time'] - started) / 60:.1f} (epoch {point['epoch']})"
    return "not reached"


def side_row(name: str, curve: list[dict], started: float, ended: float, test_auroc: float,
             thresholds: list[float]) -> list[str]:  # fmt: skip
    """One printed row (see `main`'s columns)."""
    best = max(curve, key=lambda p: p["dev_auroc"])
    times = [started] + [p["time"] for p in curve]
    per_epoch = statistics.median(b - a for a, b in zip(times[1:], times[2:], strict=False))
    return [
        name,
        *(first_reached(curve, started, t) for t in thresholds),
        f"{best['dev_auroc']:.3f} (epoch {best['epoch']} of {len(curve)})",
        f"{per_epoch / 60:.2f}",
        f"{(ended - started) / 60:.1f}",
        f"{test_auroc:.3f}",
    ]


def main(argv: list[str] | None = None) -> int:
    argv, recipe_flags = split_at_dashes(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.time_to_quality",
        description="Minutes to a dev AUROC: a recipe, then its PyTorch twin (see the module).",
    )
    parser.add_argument("--data-dir", required=True, help="FracAtlas (or any labelled set)")
    parser.add_argument(
        "--recipe",
        default="fracatlas_outlines",
        help="fracatlas_outlines or resnet18_mlp (they have a twin)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--thresholds",
        default=",".join(f"{t:.2f}" for t in THRESHOLDS),
        help="comma list of dev AUROCs",
    )
    parser.add_argument(
        "--out", type=Path, help="where the Keras run goes (default: a temporary folder)"
    )
    add_record_flag(parser)  # fmt: skip
    args = parser.parse_args(argv)
    if args.recipe not in ("fracatlas_outlines", "resnet18_mlp"):
        parser.error(f"--recipe {args.recipe}: fracatlas_outlines and resnet18_mlp have a twin")
    try:
        thresholds = [float(t) for t in args.thresholds.split(",")]
    except ValueError:
        parser.error(f"--thresholds {args.thresholds!r}: give a comma list of numbers")
    load = os.getloadavg()[0]
    print(f"load average when starting: {load:.2f} (measure with nothing else running)",
          file=sys.stderr)  # fmt: skip

    out = args.out or Path(tempfile.mkdtemp(prefix="time_to_quality-"))
    if any(out.rglob("metrics.json")):
        parser.error(f"--out {out} holds a finished run already: give an empty folder")
    command = [sys.executable, "-m", f"recipes.{args.recipe}", "--data-dir", args.data_dir,
               "--seed", str(args.seed), "--out", str(out), "--ensemble", "1",
               *recipe_flags]  # fmt: skip
    print("$ " + shlex.join(command[1:]), file=sys.stderr, flush=True)
    keras_start = time.time()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    keras_end = time.time()
    (metrics_path,) = out.rglob("metrics.json")
    run_dir = metrics_path.parent
    keras_test = json.loads(metrics_path.read_text())["study"]["auc"]

    command = [sys.executable, "-m", "benchmarks.torch_reference", str(run_dir), str(args.seed)]
    print("$ " + shlex.join(command[1:]), file=sys.stderr, flush=True)
    torch_start = time.time()
    done = subprocess.run(command, check=True, cwd=REPO, capture_output=True, text=True)
    torch_end = time.time()
    twin = json.loads(done.stdout.strip().splitlines()[-1])

    columns = ["side", *(f"min to dev {t:.2f}" for t in thresholds), "best dev AUROC",
               "min/epoch", "minutes", "test AUROC"]  # fmt: skip
    rows = [
        side_row(f"Keras `{args.recipe}`", keras_curve(run_dir), keras_start, keras_end,
                 keras_test, thresholds),
        side_row("PyTorch twin", twin["curve"], torch_start, torch_end, twin["auroc"],
                 thresholds),
    ]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"CPU: {cpu_model()}; load average at the start {load:.2f}; Keras run: {run_dir}")
    if args.record:
        write_record(
            args.record, command_line("benchmarks.time_to_quality", sys.argv[1:]), columns, rows,
            load_average=round(load, 2), keras_curve=keras_curve(run_dir),
            torch_curve=twin["curve"], keras_started=keras_start, torch_started=torch_start,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
