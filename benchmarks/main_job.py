"""The README's main job and `resnet18_mlp` on the synthetic set, once per seed: a seed table.

    python -m benchmarks.main_job --seeds 0,1,2
    python -m benchmarks.main_job --seeds 0,1,2 --recipes baseline_densenet --jobs 2

Each run is the command a user types (`python -m recipes.<recipe> --part elbow --synthetic
--seed S`) in its own process, in a fresh folder under `--out` (a temporary one by default),
so nothing is resumed. The table shows, per run, the epoch handed over and the study- and
image-level test metrics from its `metrics.json` with their 95% intervals (the bootstrap over
test studies every run records), then per recipe the mean and standard deviation over seeds
beside the mean interval width: seed variance and test-set variance side by side. It measures
what a run learns, not speed: the wall times are those of runs sharing the machine with
`--jobs - 1` others.

`--record DIR` (the documentation's: `benchmarks/results/main_job/`) keeps each run's
settings, history and metrics with its CPU, wall time and date (`benchmark.json`), from which
`python -m benchmarks.tables` generates the seed table of the documentation.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.records import copy_files, cpu_model
from mura_tf.evaluators.intervals import value_with_interval
from mura_tf.files import write_json

RECIPES = ("baseline_densenet", "resnet18_mlp")
RECORDED = ("config.json", "metrics.json", "history.csv")


def run_once(recipe: str, seed: int, out: Path, extra: list[str]) -> dict:
    """One recipe run in a child process; its metrics and wall time."""
    command = [sys.executable, "-m", f"recipes.{recipe}", "--part", "elbow", "--synthetic"]
    command += ["--seed", str(seed), "--out", str(out), *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    (metrics_file,) = out.rglob("metrics.json")
    metrics = json.loads(metrics_file.read_text())
    return {
        "recipe": recipe, "seed": seed, "seconds": seconds, "metrics": metrics,
        "run_dir": metrics_file.parent, "extra": extra,
    }  # fmt: skip


def record(row: dict, root: Path) -> Path:
    """Keep a finished run's small files under `root/<recipe>/<run>/`, with `benchmark.json`
    (the command's extra flags, the CPU, the wall time, the date)."""
    run_dir = row["run_dir"]
    kept = root / row["recipe"] / run_dir.name
    copy_files(run_dir, kept, RECORDED)
    flags = ["--", *row["extra"]] if row["extra"] else []
    timing = {
        "cpu": cpu_model(), "seconds": row["seconds"], "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python -m benchmarks.main_job", *flags]),
    }  # fmt: skip
    write_json(kept / "benchmark.json", timing)
    return kept


def table(rows: list[dict]) -> str:
    """The seed table: one Markdown row per run, each metric with its 95% interval."""

    def _shown(doc: dict, key: str) -> str:
        return value_with_interval(doc[key], doc.get(f"{key}_ci"))

    lines = [
        "| recipe | seed | epoch kept | study AUROC | study kappa | study accuracy "
        "| image AUROC | wall time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m, kept = r["metrics"], r["metrics"]["selected_epoch"]
        lines.append(
            f"| `{r['recipe']}` | {r['seed']} | {kept['epoch']} of {kept['epochs_run']} "
            f"| {_shown(m['study'], 'auc')} | {_shown(m['study'], 'kappa')} "
            f"| {_shown(m['study'], 'accuracy')} | {_shown(m['image'], 'auc')} "
            f"| {r['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def spread(rows: list[dict], recipe: str) -> str:
    """One line per recipe: mean ± standard deviation over seeds of study AUROC, kappa and
    accuracy, beside the mean width of one run's 95% interval."""
    parts = []
    for key, name in (("auc", "AUROC"), ("kappa", "kappa"), ("accuracy", "accuracy")):
        docs = [r["metrics"]["study"] for r in rows if r["recipe"] == recipe]
        values = np.array([d[key] for d in docs], float)
        widths = [d[f"{key}_ci"][1] - d[f"{key}_ci"][0] for d in docs if d.get(f"{key}_ci")]
        sd = values.std(ddof=1) if len(values) > 1 else float("nan")
        width = f", one run's interval {np.mean(widths):.3f} wide" if widths else ""
        parts.append(f"study {name} {values.mean():.3f} ± {sd:.3f} over seeds{width}")
    return f"{recipe} ({len(values)} seeds): " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.main_job",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma list of seeds (default: 0,1,2)")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma list of recipes")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default: 1)")
    parser.add_argument("--out", help="folder for the runs (default: a temporary one)")
    parser.add_argument(
        "--record", type=Path,
        help="keep each run's settings, history and metrics here (benchmarks/results/main_job)",
    )  # fmt: skip
    parser.add_argument("extra", nargs="*", help="more recipe flags, after --")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    recipes = args.recipes.split(",")
    root = Path(args.out or tempfile.mkdtemp(prefix="main_job-"))
    jobs = [(recipe, seed) for recipe in recipes for seed in seeds]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(
            pool.map(lambda j: run_once(j[0], j[1], root / f"{j[0]}-seed{j[1]}", args.extra), jobs)
        )
    if args.record:
        for row in rows:
            record(row, args.record)
    print(f"CPU: {cpu_model()}; runs in {root}\n")
    print(table(rows))
    print()
    for recipe in recipes:
        print(spread(rows, recipe))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
