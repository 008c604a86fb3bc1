"""Where a training step's time goes, in both frameworks: op time by kind, from each profiler.

    python -m benchmarks.profile_step --model densenet169 [--mixed-precision on] [--steps 3]

The same step as `benchmarks.train_step` (the recipes' model, fixed batch, Adam, BCE; the same
flags), after its warm-up, profiled for `--steps` steps: the Keras side with TensorFlow's
profiler (`tf.profiler.experimental`; the op events of the executor threads, read from the
trace's XSpace), the PyTorch side with `torch.profiler` (each op's self time, so that a call and
the kernels it runs are not counted twice). Each op is put in one kind (convolutions forward and
backward, batch norm, ReLU, concatenation, casts, layout changes, the optimizer's update, ...)
by its name. The table gives each kind's milliseconds per step and share of the side's op time,
then each side's most expensive ops.

Op time is summed over threads: two ops running side by side on TensorFlow's two inter-op
threads both count, and an op waiting for the intra-op pool counts its wait. So compare shares
within a side, and each side's wall time per step (also printed) between sides; the
profilers themselves slow both sides a little. `--trace DIR` keeps TensorFlow's trace for
TensorBoard's profile plugin and PyTorch's as a Chrome trace.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import train_step
from benchmarks.harness import MARK, SIDES, require_positive, run_side_once

# (kind, name fragments), first match wins; names lower-cased. TensorFlow's op types
# (`Conv2DBackpropFilter`, `_MklNativeFusedBatchNormGradV3`, `ResourceApplyAdam`, ...) and
# PyTorch's aten ops (`aten::convolution_backward`, `aten::native_batch_norm`, ...).
KINDS = (
    ("convolution, backward", ("backprop", "convolution_backward")),
    ("convolution, forward", ("conv2d", "convolution", "conv")),
    ("batch norm, backward", ("batchnormgrad", "batch_norm_backward")),
    ("batch norm, forward", ("batchnorm", "batch_norm")),
    ("ReLU, both ways", ("relu", "threshold")),
    ("pooling, both ways", ("pool",)),
    ("matmul (the head)", ("matmul", "addmm", "linear", "mm")),
    ("concatenation, slicing", ("concat", "aten::cat", "slice", "split", "narrow", "pack")),
    ("optimizer update", ("applyadam", "adam", "_foreach", "addcdiv", "lerp")),
    ("casts, copies", ("cast", "_to_copy", "copy_", "aten::to", "clone", "contiguous", "identity")),
    ("layout (transposes, reorders)", ("transpose", "mkltotf", "reorder", "permute")),
    ("elementwise, reductions", ("add", "mul", "sub", "div", "sum", "mean", "sqrt", "neg",
                                 "square", "rsqrt", "sigmoid", "log", "exp", "max", "min",
                                 "select", "where", "fill", "zero", "ones", "reshape", "view")),
)  # fmt: skip
# TensorFlow events that are calls or bookkeeping, not kernels: their time is their ops'.
TF_CALLS = ("partitionedcall", "statefulpartitionedcall", "__inference", "while", "if", "noop")


def kind_of(name: str) -> str:
    """The kind of op `name` (a TensorFlow op type or a PyTorch aten op); 'other' if none."""
    low = name.lower()
    for kind, fragments in KINDS:
        if any(f in low for f in fragments):
            return kind
    return "other"


def tensorflow_ops(xplane: Path) -> dict[str, float]:
    """Op type -> summed microseconds of the op events on TensorFlow's executor threads."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(xplane.read_bytes())
    totals: dict[str, float] = collections.defaultdict(float)
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                # "node/name:OpType" marks an op; "ExecutorState::Process" and the like are
                # the executor's own bookkeeping around them.
                if ":" not in meta.name.replace("::", ""):
                    continue
                op = meta.display_name or meta.name.rsplit(":", 1)[1]
                if op.lower() not in TF_CALLS:
                    totals[op] += event.duration_ps / 1e6
    return totals


def profile_keras(args, trace: Path) -> tuple[dict[str, float], float]:
    """(op type -> µs over `args.steps` steps, wall seconds per step) of the Keras side."""
    import tensorflow as tf

    model, data = train_step.keras_training(args)
    model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)  # unprofiled, steady
    tf.profiler.experimental.start(str(trace))
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
    wall = (time.perf_counter() - start) / args.steps
    tf.profiler.experimental.stop()
    (xplane,) = sorted(trace.rglob("*.xplane.pb"))[-1:]  # the newest, in a kept --trace
    return tensorflow_ops(xplane), wall


def profile_torch(args, trace: Path) -> tuple[dict[str, float], float]:
    """(aten op -> self µs over `args.steps` steps, wall seconds per step) of PyTorch's side."""
    import torch

    step, *_ = train_step.torch_training(args)
    for _ in range(args.steps):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        wall = (time.perf_counter() - start) / args.steps
    trace.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(trace / "trace.json"))
    totals = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    return totals, wall


def by_kind(ops: dict[str, float], steps: int) -> dict[str, float]:
    """Kind -> milliseconds per step."""
    kinds: dict[str, float] = collections.defaultdict(float)
    for op, micros in ops.items():
        kinds[kind_of(op)] += micros / 1000 / steps
    return kinds


def kind_table(sides: dict[str, tuple[dict[str, float], float]], steps: int) -> str:
    """Markdown: each kind's ms per step and share, per side, most expensive first."""
    kinds = {name: by_kind(ops, steps) for name, (ops, _) in sides.items()}
    totals = {name: sum(k.values()) for name, k in kinds.items()}
    order = sorted({k for ks in kinds.values() for k in ks},
                   key=lambda k: -max(ks.get(k, 0.0) for ks in kinds.values()))  # fmt: skip
    names = list(sides)
    lines = ["| kind | " + " | ".join(f"{n} ms/step | {n} share" for n in names) + " |"]
    lines.append("|---|" + "---|---|" * len(names))
    for kind in order:
        cells = " | ".join(
            f"{kinds[n].get(kind, 0.0):.1f} | {kinds[n].get(kind, 0.0) / totals[n]:.0%}"
            for n in names
        )
        lines.append(f"| {kind} | {cells} |")
    lines.append("| **op time, summed over threads** | " + " | ".join(
        f"{totals[n]:.0f} | 100%" for n in names) + " |")  # fmt: skip
    lines.append("| **wall time per step** | " + " | ".join(
        f"{sides[n][1] * 1000:.0f} | " for n in names) + " |")  # fmt: skip
    return "\n".join(lines)


def top_ops(ops: dict[str, float], steps: int, count: int) -> str:
    rows = sorted(ops.items(), key=lambda item: -item[1])[:count]
    return "\n".join(f"  {micros / 1000 / steps:9.1f} ms  {op}" for op, micros in rows)


def parser() -> argparse.ArgumentParser:
    p = train_step.parser()
    p.prog = "python -m benchmarks.profile_step"
    p.description = (
        "Op time by kind per training step, from TensorFlow's profiler and torch.profiler, "
        "for the step benchmarks.train_step times."
    )
    p.add_argument("--top", type=int, default=12, help="most expensive ops listed per side")
    p.add_argument("--trace", default=None, help="keep both traces in this folder")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    args = train_step.parse_args(parser(), argv)
    require_positive(parser(), args, ("batch", "size", "steps", "top"))
    from benchmarks.records import command_line, cpu_model, markdown_rows, write_record

    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(args.trace or tmp)
        trace.mkdir(parents=True, exist_ok=True)
        if args.worker:  # one side, in a process of its own (its own thread pools)
            if args.worker == "keras":  # never in PyTorch's process: the two crash together
                from mura_tf.cli import start_tensorflow

                start_tensorflow()
            profile = profile_keras if args.worker == "keras" else profile_torch
            ops, wall = profile(args, trace / args.worker)
            print(MARK + json.dumps({"ops": ops, "wall": wall}))
            return 0
        sides = {}
        for side in [s for s in SIDES if args.only in (None, s)]:
            print(f"profiling the {side} side ...", file=sys.stderr, flush=True)
            stdout = run_side_once("benchmarks.profile_step", [*argv, "--trace", str(trace)],
                                   side, expect=MARK)  # fmt: skip
            found = [x for x in stdout.splitlines() if x.startswith(MARK)]
            result = json.loads(found[-1][len(MARK) :])
            sides[side] = (result["ops"], result["wall"])
    print(f"{args.model}, batch {args.batch}, {args.size} px, --mixed-precision "
          f"{args.mixed_precision}; {args.steps} profiled steps; CPU: {cpu_model()}")  # fmt: skip
    table = kind_table(sides, args.steps)
    print(table)
    if args.record:
        write_record(args.record, command_line("benchmarks.profile_step", argv),
                     *markdown_rows(table))  # fmt: skip
    for name, (ops, _) in sides.items():
        print(f"\n{name}: most expensive ops, ms per step")
        print(top_ops(ops, args.steps, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
