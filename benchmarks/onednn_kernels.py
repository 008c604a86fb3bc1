"""Which oneDNN kernels each framework's training step runs, and how long each takes.

    python -m benchmarks.onednn_kernels --model densenet169 --mixed-precision on \
        [--inter-op-threads 1]

TensorFlow and PyTorch both hand their convolutions and (TensorFlow) batch norms to oneDNN.
Each side runs the step of `benchmarks.train_step` (the same flags) in a process of its own
with `ONEDNN_VERBOSE=1`, which makes oneDNN log every primitive it executes with its
implementation (`jit_bf16:avx512_core_bf16`, `brg_conv_fwd:...`) and its time. After the
warm-up, `--steps` steps are read and summed by (primitive, direction, implementation), so
the two sides' kernels can be set side by side: the same kernel on both sides should take
the same time, and where it does not, the difference lies in how it is run, not in the
kernel.

oneDNN times each primitive from its start to its end: on TensorFlow, whose executor runs
independent ops at once on its inter-op threads (a layer's two backward convolutions), two
kernels sharing the cores each count the whole span. `--inter-op-threads 1` runs the Keras
side's ops one at a time, so that each kernel's time is its own.
"""

from __future__ import annotations

import collections
import os
import sys

from benchmarks import train_step
from benchmarks.harness import SIDES, require_positive, run_side_once

STEADY = "=== onednn_kernels: steady steps from here ==="


def kernel_times(log: str, steps: int) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(primitive, direction, implementation) -> (calls per step, milliseconds per step), from
    the `ONEDNN_VERBOSE=1` lines of `log` after the `STEADY` mark (all of them without one).

    A line reads `onednn_verbose,v1,primitive,exec,cpu,<primitive>,<implementation>,
    <direction>,<memory descriptors>...,<time in ms>` (oneDNN 3.x); other lines are skipped.
    """
    log = log.split(STEADY, 1)[-1]
    totals: dict[tuple[str, str, str], list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for line in log.splitlines():
        fields = line.split(",")
        if len(fields) < 9 or fields[0] != "onednn_verbose" or fields[2:4] != ["primitive", "exec"]:
            continue
        key = (fields[5], fields[7], fields[6])
        totals[key][0] += 1
        totals[key][1] += float(fields[-1])
    return {key: (calls / steps, ms / steps) for key, (calls, ms) in totals.items()}


def library_info(log: str) -> str:
    """oneDNN's version and threading runtime, from its `info` lines ('' if none)."""
    found = []
    for line in log.splitlines():
        fields = line.split(",")
        if fields[:3] != ["onednn_verbose", "v1", "info"]:
            continue
        if fields[3].startswith("oneDNN v"):
            found.append(fields[3].split(" (")[0])
        elif fields[3] == "cpu" and len(fields) > 5 and fields[4].startswith("runtime:"):
            found.append(f"{fields[4]}, {fields[5]}")
    return "; ".join(found)


def kernel_table(sides: dict[str, dict]) -> str:
    """Markdown: each kernel's calls and ms per step on each side, most expensive first."""
    names = list(sides)
    keys = sorted({k for times in sides.values() for k in times},
                  key=lambda k: -max(sides[n].get(k, (0, 0.0))[1] for n in names))  # fmt: skip
    head = " | ".join(f"{n} calls | {n} ms/step" for n in names)
    lines = [f"| primitive | direction | implementation | {head} |"]
    lines.append("|---|---|---|" + "---|---|" * len(names))
    for key in keys:
        cells = " | ".join(
            "{:g} | {:.1f}".format(*sides[n][key]) if key in sides[n] else "- | -" for n in names
        )
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {cells} |")

    def subtotal(name: str, primitive: str | None) -> str:
        picked = [v for k, v in sides[name].items() if primitive in (None, k[0])]
        return f"{sum(c for c, _ in picked):g} | {sum(ms for _, ms in picked):.1f}"

    # Per primitive, so that a side's convolutions can be read against the other's at a glance.
    kernels_per_primitive = collections.Counter(k[0] for k in keys)
    for primitive in sorted(p for p, kernels in kernels_per_primitive.items() if kernels > 1):
        cells = " | ".join(subtotal(n, primitive) for n in names)
        lines.append(f"| **{primitive}, all** | | | {cells} |")
    everything = " | ".join(subtotal(n, None) for n in names)
    lines.append(f"| **all oneDNN primitives** | | | {everything} |")
    return "\n".join(lines)


def parser():
    p = train_step.parser()
    p.prog = "python -m benchmarks.onednn_kernels"
    p.description = (
        "oneDNN kernels of one training step, per framework, with ONEDNN_VERBOSE=1: which "
        "implementation each convolution and batch norm runs on, and its milliseconds per step."
    )
    p.add_argument(
        "--inter-op-threads", type=int, default=0,
        help="Keras side: TensorFlow's inter-op threads (default 0: TensorFlow's choice; 1 runs "
        "one op at a time, so that each kernel's time is its own)",
    )  # fmt: skip
    p.set_defaults(steps=2)
    return p


def _worker(args) -> int:
    """One side's warm-up, the mark, then `args.steps` steps; oneDNN logs to stdout."""
    if args.worker == "keras":  # never in PyTorch's process: the two crash together
        # start_tensorflow first: it turns oneDNN on (TF_ENABLE_ONEDNN_OPTS) before TF loads.
        from mura_tf.cli import start_tensorflow  # noqa: I001

        start_tensorflow()
        import tensorflow as tf

        if args.inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
        model, data = train_step.keras_training(args)
        print(STEADY, flush=True)
        model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
    else:
        step, *_ = train_step.torch_training(args)
        print(STEADY, flush=True)
        for _ in range(args.steps):
            step()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    args = train_step.parse_args(parser(), argv)
    require_positive(parser(), args, ("batch", "size", "steps", "warmup"))
    if args.inter_op_threads < 0:
        parser().error(f"--inter-op-threads must be 0 or more, got {args.inter_op_threads}")
    if args.worker:
        return _worker(args)
    from benchmarks.records import command_line, cpu_model, markdown_rows, write_record

    sides, libraries = {}, {}
    for side in [s for s in SIDES if args.only in (None, s)]:
        print(f"running the {side} side with ONEDNN_VERBOSE=1 ...", file=sys.stderr, flush=True)
        env = {**os.environ, "ONEDNN_VERBOSE": "1"}
        stdout = run_side_once("benchmarks.onednn_kernels", argv, side, expect=STEADY, env=env)
        sides[side] = kernel_times(stdout, args.steps)
        libraries[side] = library_info(stdout)
        if not any(kind == "convolution" for kind, _, _ in sides[side]):
            print(f"the {side} side ran no oneDNN convolution (TF_ENABLE_ONEDNN_OPTS=0 set?): "
                  "its table is not the one to compare", file=sys.stderr)  # fmt: skip
    print(f"{args.model}, batch {args.batch}, {args.size} px, --mixed-precision "
          f"{args.mixed_precision}, Keras inter-op threads {args.inter_op_threads or 'default'}; "
          f"{args.steps} steps; CPU: {cpu_model()}")  # fmt: skip
    for side, info in libraries.items():
        print(f"{side}: {info or 'no oneDNN info lines'}")
    table = kernel_table(sides)
    print(table)
    if args.record:
        write_record(args.record, command_line("benchmarks.onednn_kernels", argv),
                     *markdown_rows(table))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
