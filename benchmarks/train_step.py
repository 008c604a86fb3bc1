"""Training-step throughput: the project's Keras model against torchvision's, side by side.

    python -m benchmarks.train_step --model resnet18 --batch 16 --size 224 --steps 5

Each side trains the same architecture on the same fixed random batch (no input pipeline:
`benchmarks.pipeline` measures that), with a one-output head, binary cross-entropy and Adam,
on the same number of threads, at the same precision (`--mixed-precision`: float32 on both
sides by default; bfloat16 is Keras's mixed policy against `torch.autocast` on the CPU). The
Keras side is built and compiled by the project's own functions (`build_backbone`,
`build_classifier`, `compile_classifier` with `TrainConfig`'s defaults), so what is measured
is what the recipes run; the PyTorch side runs as PyTorch recommends on a CPU: channels-last
model and input (`--torch-layout contiguous`: its NCHW default), `torch.compile` with
`--torch-compile true` (its first step, compilation included, is reported apart).
"""

from __future__ import annotations

import argparse
import os
import sys

from benchmarks.harness import (
    add_side_flags,
    fit_rate,
    require_positive,
    run_sides,
    step_rate,
    torch_settings,
)

MODELS = ("resnet18", "densenet169", "resnet50")


def keras_training(args) -> tuple:
    """(compiled model, endless dataset of one fixed batch) as the recipes build them, traced
    by `args.warmup` steps."""
    from mura_tf.cli import start_tensorflow  # noqa: I001 - first: oneDNN on before TF loads

    start_tensorflow()
    import keras
    import numpy as np
    import tensorflow as tf

    from mura_tf.compat.fused_adam import is_fused
    from mura_tf.models.backbones import build_backbone
    from mura_tf.models.heads import build_classifier, classification_head
    from mura_tf.training.precision import policy_name
    from mura_tf.training.train import TrainConfig, compile_classifier

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras.mixed_precision.set_global_policy(policy_name(args.mixed_precision))
    keras.utils.set_random_seed(0)
    backbone = build_backbone(
        args.model, args.size, "none", fused_batch_norm=args.fused_batch_norm != "false"
    )
    model = build_classifier(backbone, classification_head("linear"), args.size)
    overrides = {} if args.jit_compile is None else {"jit_compile": args.jit_compile}
    config = TrainConfig(**overrides)
    compile_classifier(model, config)
    if args.fused_adam == "false":  # Keras's own Adam update, op by op: unshadow the class's
        vars(model.optimizer).pop("update_step")
        assert not is_fused(model.optimizer)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.size, args.size, 3)).astype("float32")
    y = rng.integers(0, 2, size=(args.batch, 1)).astype("float32")
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0)  # trace and compile
    return model, data


def _keras_side(args) -> tuple:
    import keras
    import tensorflow as tf

    model, data = keras_training(args)
    run_once = fit_rate(model, data, args.steps, args.batch)
    info = {
        "framework": f"keras {keras.__version__} / tensorflow {tf.__version__}",
        "dtype_policy": keras.mixed_precision.global_policy().name,
        "jit_compile": str(model.jit_compile),
        "fused_batch_norm": args.fused_batch_norm,
        "fused_adam": args.fused_adam,
        "params": model.count_params(),
    }
    return run_once, info


def torch_training(args) -> tuple:
    """(step, first step's seconds, parameter count, settings): PyTorch's training step on one
    fixed batch, run `args.warmup` times."""
    import time

    import torch
    import torchvision

    settings = torch_settings(args)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None, num_classes=1)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    model = settings.model(model)
    optimizer = settings.adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x = settings.input(torch.randn(args.batch, 3, args.size, args.size))
    y = torch.randint(0, 2, (args.batch, 1)).float()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with settings.context():  # PyTorch's CPU mixed precision: autocast the forward only
            logits = model(x)
        loss_fn(logits.float(), y).backward()
        optimizer.step()

    start = time.perf_counter()
    step()  # the first step compiles, where the model is compiled
    first = time.perf_counter() - start
    for _ in range(args.warmup - 1):
        step()
    return step, first, params, settings


def _torch_side(args) -> tuple:
    import torch
    import torchvision

    step, first, params, settings = torch_training(args)
    run_once = step_rate(step, args.steps, args.batch)
    info = {
        "framework": f"torch {torch.__version__} / torchvision {torchvision.__version__}",
        **settings.describe(),
        "first_step_s": round(first, 1),
        "params": params,
    }
    return run_once, info


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.train_step",
        description="Images/s of one training step (forward, backward, update): "
        "the project's Keras model against torchvision's, alternating in one invocation.",
    )
    p.add_argument("--model", choices=MODELS, default="resnet18")
    p.add_argument("--batch", type=int, default=16, help="images per step (default 16)")
    p.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per repetition")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (tracing)")
    add_side_flags(p, mixed_precision=True, training=True)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    p.add_argument(
        "--jit-compile",
        choices=("auto", "true", "false"),
        default=None,
        help="override the project's default (TrainConfig.jit_compile) for the Keras side",
    )
    p.add_argument(
        "--fused-batch-norm",
        choices=("true", "false"),
        default="true",
        help="Keras side: the project's fused batch norm (default) or Keras's own",
    )
    p.add_argument(
        "--fused-adam",
        choices=("true", "false"),
        default="true",
        help="Keras side: Adam's update on TensorFlow's fused kernel (default) or Keras's own",
    )
    return p


def parse_args(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`p`'s arguments (this parser's or one built on it), `--jit-compile` made a bool."""
    args = p.parse_args(argv)
    if args.jit_compile in ("true", "false"):
        args.jit_compile = args.jit_compile == "true"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(parser(), argv)
    require_positive(parser(), args, ("batch", "size", "steps", "repeats"))
    banner = (
        f"{args.model}, batch {args.batch}, {args.size}x{args.size}, {args.steps} steps x "
        f"at least {args.repeats} repetitions per side after the warm-up; starting workers "
        "(tracing can take minutes)"
    )
    setups = {"keras": lambda: _keras_side(args), "torch": lambda: _torch_side(args)}
    argv = list(argv if argv is not None else sys.argv[1:])
    return run_sides("benchmarks.train_step", args, argv, setups, banner)


if __name__ == "__main__":
    sys.exit(main())
