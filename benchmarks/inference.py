"""Inference throughput, encoded film to probability: the project's export against PyTorch.

    python -m benchmarks.inference --model resnet18 --size 256 --batch 16

What `mura-tf predict` and `mura-tf evaluate` do per film. The Keras side builds the model the
recipes build (random weights), exports it with `mura_tf.serving.export.export_savedmodel`,
loads the SavedModel with `tf.saved_model.load` and calls its `serve_images` signature on batches of
PNG bytes (decode, RGB, resize, normalise and the forward pass all inside the SavedModel). The
PyTorch side does the same work the usual way: Pillow decode and RGB, torchvision resize and
normalise in `DataLoader` workers (`--torch-workers`, as PyTorch recommends for input work),
torchvision's same architecture in `eval()` under `torch.inference_mode()`. Both
read the same synthetic MURA PNGs (300-512 px, MURA's modes) from memory, on the same cores.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import (
    add_side_flags,
    require_positive,
    run_sides,
    step_rate,
    torch_settings,
)
from benchmarks.pipeline import films_root, synthetic_frame

MODELS = ("resnet18", "densenet169", "resnet50")


def _films(frame, count: int) -> list[bytes]:
    paths = list(frame["path"])[:count]
    return [Path(p).read_bytes() for p in paths]


def _batches(films: list[bytes], batch: int):
    while True:
        for start in range(0, len(films) - batch + 1, batch):
            yield films[start : start + batch]


def _rate(step, films: list[bytes], args):
    batches = _batches(films, args.batch)
    return step_rate(lambda: step(next(batches)), args.batches, args.batch)


def _keras_side(args, films) -> tuple:
    from mura_tf.cli import start_tensorflow  # noqa: I001 - first: oneDNN on before TF loads

    start_tensorflow()
    import keras
    import tensorflow as tf

    from mura_tf.models.backbones import backbone_spec, build_backbone
    from mura_tf.models.heads import build_classifier, classification_head
    from mura_tf.serving.export import export_savedmodel
    from mura_tf.training.precision import policy_name

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras.mixed_precision.set_global_policy(policy_name(args.mixed_precision))
    keras.utils.set_random_seed(0)
    model = build_classifier(
        build_backbone(args.model, args.size, "none"), classification_head("linear"), args.size
    )
    folder = Path(tempfile.mkdtemp(prefix="inference-bench-"))
    export_savedmodel(model, backbone_spec(args.model).normalization, args.size, folder / "export")
    loaded = tf.saved_model.load(str(folder / "export"))

    def step(batch: list[bytes]) -> None:
        loaded.serve_images(tf.constant(batch, tf.string)).numpy()

    step(films[: args.batch])  # trace
    info = {
        "framework": f"keras {keras.__version__} / tensorflow {tf.__version__}",
        "dtype_policy": keras.mixed_precision.global_policy().name,
    }
    return _rate(step, films, args), info


def _torch_side(args, films) -> tuple:
    import torch
    import torchvision
    from PIL import Image
    from torchvision import transforms

    settings = torch_settings(args)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None, num_classes=1).eval()
    model = settings.model(model)
    prepare = transforms.Compose(
        [
            transforms.Resize((args.size, args.size)),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )

    class Films(torch.utils.data.Dataset):
        """The films cycled in order (long enough that no repetition reaches its end and waits
        for the workers to start over), decoded where the DataLoader puts the work."""

        def __len__(self) -> int:
            return len(films) * (args.batches + 2)

        def __getitem__(self, i: int):
            return prepare(Image.open(io.BytesIO(films[i % len(films)])).convert("RGB"))

    def predict(x) -> None:
        with torch.inference_mode(), settings.context():
            logits = model(settings.input(x))
        torch.sigmoid(logits.float()).numpy()

    # PyTorch's recommended input path: decoding in `DataLoader` workers, overlapping the
    # forward pass (`--torch-workers 0` decodes in the loop, as the rows before session 15 did).
    loader = torch.utils.data.DataLoader(
        Films(), batch_size=args.batch, num_workers=args.torch_workers,
        persistent_workers=args.torch_workers > 0, drop_last=True,
    )  # fmt: skip

    start = time.perf_counter()
    predict(next(iter(loader)))  # compiles, where the model is compiled
    info = {
        "framework": f"torch {torch.__version__} / torchvision {torchvision.__version__}",
        **settings.describe(),
        "dataloader_workers": args.torch_workers,
        "first_batch_s": round(time.perf_counter() - start, 1),
    }

    def run_once() -> float:
        # A fresh iterator each repetition, one batch untimed: workers left running would
        # decode ahead while the other side is timed (`harness.batch_rate`).
        batches = iter(loader)
        predict(next(batches))
        begin = time.perf_counter()
        for _ in range(args.batches):
            predict(next(batches))
        rate = args.batches * args.batch / (time.perf_counter() - begin)
        del batches
        return rate

    return run_once, info


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.inference",
        description="Films/s from PNG bytes to abnormality probability: the project's "
        "SavedModel (serve_images) against PyTorch, alternating in one invocation.",
    )
    p.add_argument("--model", choices=MODELS, default="resnet18")
    p.add_argument("--size", type=int, default=256, help="model input side (default 256)")
    p.add_argument("--batch", type=int, default=16, help="films per call (default 16)")
    p.add_argument("--batches", type=int, default=8, help="timed batches per repetition")
    p.add_argument("--films", type=int, default=128, help="distinct films cycled (default 128)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    p.add_argument(
        "--torch-workers", type=int, default=2,
        help="PyTorch side: DataLoader worker processes decoding the films (default 2, one per "
        "core here; 0: decode in the loop)",
    )  # fmt: skip
    add_side_flags(p, mixed_precision=True)
    p.add_argument("--root", default=None, help="where the synthetic PNGs go (default: cache)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    args = parser().parse_args(argv)
    require_positive(parser(), args, ("size", "batch", "batches", "films", "repeats"))
    if args.films < args.batch:
        parser().error(f"--films ({args.films}) must be at least --batch ({args.batch})")
    root = films_root(args.root)
    films = _films(synthetic_frame(args.films, root), args.films)
    banner = (
        f"{args.model}, {len(films)} PNG films cycled, batch {args.batch}, {args.size}x"
        f"{args.size}, {args.batches} batches per repetition; starting workers"
    )
    setups = {"keras": lambda: _keras_side(args, films), "torch": lambda: _torch_side(args, films)}
    return run_sides("benchmarks.inference", args, argv, setups, banner, ("--root", str(root)))


if __name__ == "__main__":
    sys.exit(main())
