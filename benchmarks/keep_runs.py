"""Keep finished runs' small files in `benchmarks/results/`, so that a table grows across days
from runs trained in the background (`saved_models/` is not committed).

    python -m benchmarks.keep_runs --to benchmarks/results/outline_choices/ema-0.99 RUN RUN RUN

Each RUN (a finished run folder) is copied to `TO/<its folder name>/`: `config.json`,
`metrics.json`, `history.csv`, and a `benchmark.json` with the CPU, the day and
`"seconds": null` (runs trained beside other work: their wall time says nothing of speed;
`benchmarks.real_films` and `benchmarks.time_to_quality` time runs on a quiet machine).
A run already kept is not copied again unless `--overwrite`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.real_films import TIMING
from benchmarks.records import copy_files, cpu_model
from mura_tf.files import write_json

KEPT = ("config.json", "metrics.json", "history.csv")
NOTE = "run at nice 10 beside other work: the wall time says nothing of speed"


def keep_run(run_dir: Path, to: Path, note: str = NOTE, overwrite: bool = False) -> Path:
    """Copy the finished run `run_dir`'s small files to `to/<run_dir.name>/`; returns that
    folder.

    Raises:
        SystemExit: `run_dir` is not a finished run, or it is kept already and not `overwrite`.
    """
    missing = [name for name in KEPT if not (run_dir / name).is_file()]
    if missing:
        raise SystemExit(f"{run_dir}: not a finished run (no {', '.join(missing)})")
    kept = to / run_dir.name
    if (kept / TIMING).is_file() and not overwrite:
        raise SystemExit(f"{kept}: kept already; --overwrite replaces it")
    copy_files(run_dir, kept, KEPT)  # benchmark.json last: a folder with it is whole
    timing = {"cpu": cpu_model(), "seconds": None, "date": time.strftime("%Y-%m-%d"), "note": note}
    write_json(kept / TIMING, timing)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.keep_runs",
        description="Copy finished runs' config, metrics and history to benchmarks/results/.",
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="finished run folders")
    parser.add_argument("--to", type=Path, required=True, help="the folder to keep them in")
    parser.add_argument("--note", default=NOTE, help="why the wall time is or is not a speed")
    parser.add_argument("--overwrite", action="store_true", help="replace runs kept already")
    args = parser.parse_args(argv)
    for run_dir in args.runs:
        print(f"kept {keep_run(run_dir, args.to, args.note, args.overwrite)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
