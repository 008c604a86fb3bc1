"""Where a recipe run's wall time goes, phase by phase, without a profiler.

    python -m benchmarks.main_job_phases [--recipe baseline_densenet] [-- RECIPE FLAGS...]

Runs the recipe in this process (default: the README's main job, `--part elbow --synthetic`,
into a temporary `--out`) with wall-clock timers around its phases: start-up, each epoch and
its first batch (tracing and graph optimisation), the per-epoch writes, the test predictions,
the export and the report. cProfile inflates Python-heavy work such as the checkpoint writes
several times over, so these timers are what `benchmarks/README.md` ("Time to first result")
quotes.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import tempfile
import time
from collections import defaultdict

from benchmarks.records import add_record_flag, command_line, write_record

MAIN_JOB = ["--part", "elbow", "--synthetic"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.main_job_phases",
        description="Wall time of a recipe run by phase (the README's main job by default).",
    )
    p.add_argument("--recipe", default="baseline_densenet", help="recipe module under recipes/")
    p.add_argument(
        "recipe_flags", nargs="*", help="after --: the recipe's flags (default: the main job's)"
    )
    add_record_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    start = time.perf_counter()
    seconds: dict[str, float] = defaultdict(float)

    def timed(module, name: str, label: str | None = None) -> None:
        fn = getattr(module, name)

        @functools.wraps(fn)
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                seconds[label or name] += time.perf_counter() - t

        setattr(module, name, wrapper)

    import keras

    import mura_tf.runs.evaluators.export as export
    import mura_tf.runs.prepared as prepared
    import mura_tf.runs.result as result
    import mura_tf.runs.supervised as experiment
    import mura_tf.training.callbacks as callbacks
    import mura_tf.training.resume as resume

    seconds["start-up (imports)"] = time.perf_counter() - start
    for name in ("build_backbone", "fit_data", "train"):
        timed(experiment, name)
    timed(prepared, "load_catalogue")
    timed(export, "export_savedmodel")
    timed(result, "write_run_report", "report")
    timed(resume, "save_variables", "resume points")
    timed(callbacks, "save_variables", "best epoch (.npz)")
    timed(callbacks, "save_keras", "best.keras")
    epochs: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if not epochs and batch == 0:
                seconds["first batch (trace, graph optimisation)"] = (
                    time.perf_counter() - self.began
                )

        def on_epoch_end(self, epoch, logs=None):
            epochs.append(time.perf_counter() - self.began)

    fit, predict = keras.Model.fit, keras.Model.predict

    def clocked_fit(self, *a, callbacks=None, **k):
        return fit(self, *a, callbacks=[Clock(), *(callbacks or [])], **k)

    def clocked_predict(self, *a, **k):
        t = time.perf_counter()
        try:
            return predict(self, *a, **k)
        finally:
            seconds["predictions"] += time.perf_counter() - t

    keras.Model.fit, keras.Model.predict = clocked_fit, clocked_predict
    recipe = importlib.import_module(f"recipes.{args.recipe}")
    from recipes.common import run

    with tempfile.TemporaryDirectory(prefix="main-job-phases-") as out:
        flags = args.recipe_flags or MAIN_JOB
        code = run(recipe.CONFIG, argv=[*flags, "--out", out])
    total = time.perf_counter() - start
    print("\nWall time by phase (the run folder above was temporary and is deleted)")
    print(f"{'phase':44s} {'s':>7s}")
    for name, value in seconds.items():
        print(f"{name:44s} {value:7.1f}")
    print(f"{'epochs (each)':44s} " + " ".join(f"{t:.1f}" for t in epochs))
    print(f"{'total in this process':44s} {total:7.1f}")
    if args.record:
        rows = [[name, f"{value:.1f}"] for name, value in seconds.items()]
        rows += [["epochs (each)", " ".join(f"{t:.1f}" for t in epochs)],
                 ["total in this process", f"{total:.1f}"]]  # fmt: skip
        argv = list(argv if argv is not None else sys.argv[1:])
        write_record(args.record, command_line("benchmarks.main_job_phases", argv),
                     ["phase", "s"], rows)  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())
