"""Side-by-side runs of two frameworks: one long-lived worker process each, timed alternately,
at steady state.

Each framework lives in its own process so that neither one's thread pools spin while the other
is measured, and so that each process's peak RSS is its own. Steady state, in two steps:

1. Warm-up, in each worker by itself: repetitions run untimed until the last `WINDOW` rates
   lie within `TOLERANCE` of their median (or `MAX_WARMUP_SECONDS` pass: then the worker says
   it did not settle). PyTorch's first steps run at half its later rate, TensorFlow's first
   ones trace: a fixed warm-up count favours whichever side warms faster.
2. Timing: the parent asks the workers in turn for one repetition (A B A B ...), so slow drift
   of the machine hits both sides alike, at least `repeats` times and on until each side's
   spread ((max - min) / median of its repetitions) is within `TOLERANCE`, or `max_repeats`.

The table gives each side's median, spread and repetitions, and the ratio of the medians with
the range of the paired ratios (repetition i of one side over repetition i of the other).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from benchmarks import records

MARK = "@@bench "
WINDOW = 3
TOLERANCE = 0.05
MAX_WARMUP_SECONDS = 240.0


@dataclass
class Side:
    """Measurements of one framework: images per second of each repetition, peak RSS."""

    name: str
    rates: list[float]
    peak_rss_mb: float
    info: dict

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def spread(self) -> float:
        """(max - min) / median of the repetitions."""
        return spread(self.rates)


def spread(rates: list[float]) -> float:
    """(max - min) / median; 0 for fewer than two rates."""
    if len(rates) < 2:
        return 0.0
    return (max(rates) - min(rates)) / statistics.median(rates)


def settle(run_once: Callable[[], float], max_seconds: float = MAX_WARMUP_SECONDS) -> dict:
    """Run `run_once` until its last `WINDOW` rates are within `TOLERANCE` of each other (or
    `max_seconds` pass); returns what the warm-up saw, for the worker's info."""
    rates: list[float] = []
    start = time.perf_counter()
    while True:
        rates.append(run_once())
        settled = len(rates) >= WINDOW and spread(rates[-WINDOW:]) <= TOLERANCE
        if settled or time.perf_counter() - start >= max_seconds:
            return {
                "warmup_repetitions": len(rates),
                "warmup_rates": [round(r, 2) for r in rates],
                "settled": settled if max_seconds > 0 else None,  # None: not asked to settle
            }


def reply(message: dict) -> None:
    """Worker side: one marked JSON line on stdout (anything else printed there is ignored)."""
    sys.stdout.write(MARK + json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(
    setup: Callable[[], tuple[Callable[[], float], dict]],
    settle_seconds: float = MAX_WARMUP_SECONDS,
) -> None:
    """Worker main loop: `setup()` builds (and traces), returning (run_once -> images/s, info);
    then repetitions run untimed until the rate settles (`settle`, at most `settle_seconds`;
    0: one repetition).

    Then each line `run` on stdin runs one repetition; `stop` reports peak RSS and exits.
    """
    import resource

    run_once, info = setup()
    info = {**info, **settle(run_once, settle_seconds)}
    reply({"ready": True, "info": info})
    for line in sys.stdin:
        if line.strip() == "run":
            reply({"rate": run_once()})
        else:
            break
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reply({"peak_rss_mb": peak_kb / 1024})


def run_side_once(
    module: str, argv: list[str], side: str, expect: str, env: dict[str, str] | None = None
) -> str:
    """Stdout of `python -m MODULE ARGV --worker SIDE` (minus `--only`), run to its end in a
    process of its own; stop with the side's stderr if it failed or began no line with `expect`."""
    command = [sys.executable, "-m", module, *without_only(argv), "--worker", side]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not any(x.startswith(expect) for x in done.stdout.splitlines()):
        raise SystemExit(f"the {side} side failed:\n{done.stderr[-3000:]}")
    return done.stdout


def without_only(argv: list[str]) -> list[str]:
    """The parent's arguments minus `--only SIDE`, to forward to the workers."""
    return records.without_flag(argv, "--only")


class Worker:
    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.info = self._read().get("info", {})

    def _read(self) -> dict:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK) :])
        code = self.process.wait()
        raise RuntimeError(f"the {self.name} benchmark worker exited with code {code}")

    def run(self) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return float(self._read()["rate"])

    def stop(self) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        peak = float(self._read()["peak_rss_mb"])
        self.process.wait()
        return peak


def alternate(
    workers: list[Worker], repeats: int, progress=None, max_repeats: int | None = None
) -> list[Side]:
    """Run repetitions on each worker in turn (A B A B ...) until the last `repeats` of every
    side agree within `TOLERANCE`, or `max_repeats` (default 3 x `repeats`) are done; stop
    them all. Each side's measurement is its last `repeats` repetitions (all of them are in
    its info, `timed_rates`)."""
    rates: dict[str, list[float]] = {w.name: [] for w in workers}
    limit = max(repeats, max_repeats or 3 * repeats)

    def unsettled() -> bool:
        return any(spread(v[-repeats:]) > TOLERANCE for v in rates.values())

    try:
        r = 0
        while r < repeats or (r < limit and unsettled()):
            r += 1
            for w in workers:
                rates[w.name].append(w.run())
                if progress:
                    progress(f"repetition {r} {w.name}: {rates[w.name][-1]:.2f} img/s")
        return [
            Side(
                w.name,
                rates[w.name][-repeats:],
                w.stop(),
                {**w.info, "timed_rates": [round(x, 2) for x in rates[w.name]]},
            )  # fmt: skip
            for w in workers
        ]
    finally:
        for w in workers:
            if w.process.poll() is None:
                w.process.kill()


SIDES = ("keras", "torch")


def add_side_flags(parser, mixed_precision: bool = False, training: bool = False) -> None:
    """A benchmark's shared flags: `--repeats`, `--max-repeats`, `--settle-seconds`, `--only`,
    the hidden `--worker`; with `mixed_precision` the precision both sides compute in and the
    PyTorch side's layout and compilation, and with `training` its Adam."""
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed repetitions per side, at least (default 5)"
    )
    parser.add_argument(
        "--max-repeats", type=int, default=None,
        help=f"go on until each side's spread is within {TOLERANCE * 100:.0f}%%, up to this many "
        "(default: 3 x --repeats)",
    )  # fmt: skip
    parser.add_argument(
        "--settle-seconds", type=float, default=MAX_WARMUP_SECONDS,
        help=f"longest warm-up per side, until the last {WINDOW} rates agree within "
        f"{TOLERANCE * 100:.0f}%% (default {MAX_WARMUP_SECONDS:.0f}; 0: one untimed repetition)",
    )  # fmt: skip
    if mixed_precision:
        parser.add_argument(
            "--mixed-precision", choices=("auto", "on", "off"), default="off",
            help="both sides' precision: the recipes' --mixed-precision for Keras "
            "(mura_tf.training.precision; default off: float32), and the same precision for "
            "PyTorch (torch.autocast bfloat16 on CPU, float16 on GPU)",
        )  # fmt: skip
        parser.add_argument(
            "--torch-layout", choices=("channels_last", "contiguous"), default="channels_last",
            help="PyTorch side's memory format: channels_last (default, what PyTorch recommends "
            "for convolutions on CPU) or contiguous (NCHW, its default)",
        )  # fmt: skip
        parser.add_argument(
            "--torch-compile", choices=("true", "false"), default="false",
            help="PyTorch side: torch.compile the model (its compile time is reported apart "
            "from the steady rate; default false)",
        )  # fmt: skip
    if training:
        parser.add_argument(
            "--torch-fused-adam", choices=("true", "false"), default="true",
            help="PyTorch side: Adam's fused implementation (default true: PyTorch's docs call "
            "it the fastest, and the Keras side runs Adam on a fused kernel too; false: "
            "PyTorch's CPU default, a loop over the parameters)",
        )  # fmt: skip
    parser.add_argument("--only", choices=SIDES, help="run one side only")
    records.add_record_flag(parser)
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)


def run_sides(
    module: str,
    args,
    argv: list[str],
    setups: dict[str, Callable[[], tuple[Callable[[], float], dict]]],
    banner: str,
    extra_argv: tuple[str, ...] = (),
) -> int:
    """A benchmark's main after parsing: as a worker (`--worker SIDE`), serve that side's setup;
    as the parent, print `banner` and compare the sides `--only` leaves, each worker started
    as `python -m module` with this command line (less `--only`) and `extra_argv`."""
    if args.worker:
        serve(setups[args.worker], args.settle_seconds)
        return 0
    print(banner, file=sys.stderr)
    sides = [s for s in SIDES if args.only in (None, s)]
    forwarded = [*records.without_record(without_only(argv)), *extra_argv]
    results = compare(module, forwarded, sides, args.repeats, args.max_repeats)
    if args.record:
        columns, rows = records.markdown_rows(table(results))
        records.write_record(
            args.record, records.command_line(module, argv), columns, rows,
            comparison=comparison(results), sides={s.name: s.info for s in results},
        )  # fmt: skip
    return 0


def compare(
    module: str, argv: list[str], sides: list[str], repeats: int, max_repeats: int | None = None
) -> list[Side]:
    """Start a worker per side (`python -m module *argv --worker SIDE`), alternate, print;
    return the sides' measurements."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    workers = [Worker(s, ["-m", module, *argv, "--worker", s], env) for s in sides]
    results = alternate(workers, repeats, lambda m: print(m, file=sys.stderr), max_repeats)
    for side in results:
        print(f"{side.name}: {side.info}")
        if side.info.get("settled") is False:
            print(f"warning: {side.name} did not settle within {MAX_WARMUP_SECONDS:.0f} s")
    print(table(results))
    if len(results) == 2:
        print(ratio_line(*results))
    return results


def comparison(sides: list[Side]) -> dict:
    """What a record keeps for tables across invocations: per side its median, spread and peak
    RSS; with two sides the ratio of the first to the second and its paired range."""
    kept: dict = {
        s.name: {"median": s.median, "spread": s.spread, "peak_rss_mb": s.peak_rss_mb}
        for s in sides
    }
    if len(sides) == 2:
        a, b = sides
        paired = [x / y for x, y in zip(a.rates, b.rates, strict=False)]
        kept["ratio"] = a.median / b.median
        kept["paired"] = [min(paired), max(paired)]
    return kept


def ratio_line(a: Side, b: Side) -> str:
    """`a / b`: the ratio of the medians and the range of the paired repetitions' ratios."""
    paired = [x / y for x, y in zip(a.rates, b.rates, strict=False)]
    return (
        f"{a.name} / {b.name}: {a.median / b.median:.2f}x (paired repetitions "
        f"{min(paired):.2f}-{max(paired):.2f}x; spreads {a.spread:.0%} and {b.spread:.0%})"
    )


def batch_rate(
    make_iterator: Callable[[], object], batches: int, batch_size: int, warm: int = 3
) -> Callable[[], float]:
    """A `run_once` for `serve`: images/s of drawing `batches` batches from a fresh iterator
    (`make_iterator()`), after `warm` untimed ones. The iterator is dropped after each
    repetition: an input pipeline left running would go on preparing batches in background
    threads while the other side is timed, taking its cores and banking batches for later."""

    def run_once() -> float:
        iterator = make_iterator()
        for _ in range(warm):
            next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        rate = batches * batch_size / (time.perf_counter() - start)
        del iterator
        return rate

    return run_once


def step_rate(step: Callable[[], object], steps: int, batch_size: int) -> Callable[[], float]:
    """A `run_once` for `serve`: images/s of `steps` calls of `step`, each one batch."""

    def run_once() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * batch_size / (time.perf_counter() - start)

    return run_once


def fit_rate(model, data, steps: int, batch_size: int) -> Callable[[], float]:
    """A `run_once` for `serve`: images/s of steps 1..`steps` of one `model.fit` on `data`,
    timed by a callback. A `fit` call's set-up (about a second, paid once per stage in a
    recipe) would otherwise be charged to a handful of steps."""
    import keras

    class StepClock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                self.start = time.perf_counter()
            self.end = time.perf_counter()

    def run_once() -> float:
        clock = StepClock()
        model.fit(data, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[clock])
        return steps * batch_size / (clock.end - clock.start)

    return run_once


def torch_batches(dataset, batch_size: int, workers: int) -> Callable[[], Iterator]:
    """`make_iterator` of endless shuffled batches of a torch `Dataset` from a `DataLoader`
    with `workers` persistent worker processes (the last partial batch dropped)."""
    import torch

    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=True,
    )

    def batches() -> Iterator:
        while True:
            yield from loader

    return batches


def require_positive(parser: argparse.ArgumentParser, args, names: tuple[str, ...]) -> None:
    """Stop with the parser's usage error if any of the flags `names` is below 1."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")


def table(sides: list[Side], unit: str = "img/s") -> str:
    """A small Markdown table: median, all repetitions, peak RSS, ratio to the last side,
    spread ((max - min) / median)."""
    reference = sides[-1].median
    rows = [
        f"| side | median {unit} | repetitions | peak RSS MB | ratio to {sides[-1].name} | spread |"
    ]
    rows.append("|---|---|---|---|---|---|")
    for s in sides:
        reps = ", ".join(f"{r:.2f}" for r in s.rates)
        rows.append(
            f"| {s.name} | {s.median:.2f} | {reps} | {s.peak_rss_mb:.0f} | "
            f"{s.median / reference:.2f} | {s.spread:.0%} |"
        )
    return "\n".join(rows)


@dataclass(frozen=True)
class TorchSettings:
    """How the PyTorch side runs at the Keras side's precision: `autocast` (None: float32), the
    memory format of model and input, and whether the model is compiled."""

    autocast: object  # torch.dtype | None
    channels_last: bool
    compile: bool
    fused_adam: bool = True

    def context(self):
        """The autocast context of one forward pass (a null context in float32)."""
        import contextlib

        import torch

        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=self.autocast)

    def model(self, model):
        """`model` in the chosen memory format, compiled when asked."""
        import torch

        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return torch.compile(model) if self.compile else model

    def adam(self, parameters, lr: float):
        """`torch.optim.Adam` over `parameters`, fused when asked."""
        import torch

        return torch.optim.Adam(parameters, lr=lr, fused=self.fused_adam or None)

    def input(self, x):
        import torch

        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def describe(self) -> dict:
        return {
            "precision": "float32" if self.autocast is None else f"autocast {self.autocast}",
            "layout": "channels_last" if self.channels_last else "contiguous (NCHW)",
            "compiled": self.compile,
            "adam": "fused" if self.fused_adam else "for-loop (CPU default)",
        }


def torch_settings(args) -> TorchSettings:
    """The PyTorch side's settings for `args` (`add_side_flags(mixed_precision=True)`): the
    precision the Keras side resolves `--mixed-precision` to on this machine."""
    import torch

    from mura_tf.training.precision import cpu_has_bf16

    # As mura_tf.training.precision.policy_name resolves it, without loading TensorFlow here.
    dtype = None
    if args.mixed_precision != "off" and torch.cuda.is_available():
        dtype = torch.float16
    elif args.mixed_precision == "on" or (args.mixed_precision == "auto" and cpu_has_bf16()):
        dtype = torch.bfloat16
    return TorchSettings(
        dtype,
        args.torch_layout == "channels_last",
        args.torch_compile == "true",
        getattr(args, "torch_fused_adam", "true") == "true",
    )
