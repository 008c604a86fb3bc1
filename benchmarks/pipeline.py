"""Input-pipeline throughput: the project's tf.data pipeline against a PyTorch DataLoader.

    python -m benchmarks.pipeline --images 256 --batch 16 --workers 2

Both sides read the same synthetic MURA PNGs (MURA-like sizes and modes), or with `--data-dir`
a real dataset's training films (FracAtlas: JPEGs up to 1024 px, grayscale and RGB, some
turned by their EXIF orientation), and do report 000's training preprocessing: orient as
displayed, RGB, resize to 256x256, random auto-contrast (p=0.5), horizontal flip (p=0.5), scale
to [0, 1] and ImageNet mean/std, batches of 16. The Keras side is
`mura_tf.data.pipeline.make_dataset` exactly as a recipe calls it for training; the PyTorch side
is torchvision transforms on Pillow images in a `DataLoader` with `--workers` processes (the
tf.data side gets the same number of cores through its thread pool).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.harness import (
    add_side_flags,
    batch_rate,
    require_positive,
    run_sides,
    torch_batches,
)

# MURA's images are ~300-512 px a side (most 512 on the long side).
MURA_LIKE = dict(min_side=300, max_side=512)


def films_root(root: str | None) -> Path:
    """Where the benchmarks' synthetic PNGs go: `--root`, else the project's cache."""
    from mura_tf.data.synthetic import cache_root

    return Path(root) if root else cache_root() / "benchmarks"


def synthetic_frame(images: int, root: Path):
    """A catalogue of about `images` synthetic MURA PNGs under `root` (made once, cached)."""
    from mura_tf.data.mura import load_mura
    from mura_tf.data.synthetic import SyntheticConfig, generate_synthetic

    # Measured: ~4 training images per patient and part (views, studies, cross-part patients).
    patients = max(2, round(images / 7 / 4))
    folder = root / f"pipeline_{patients}"
    if not (folder / "MURA-v1.1").is_dir():
        generate_synthetic(
            folder,
            SyntheticConfig(patients_per_part=patients, valid_patients_per_part=1, **MURA_LIKE),
        )
    return load_mura(folder, splits=("train",))


def _keras_side(args, frame) -> tuple:
    import tensorflow as tf

    from mura_tf.data.augment import AugmentConfig
    from mura_tf.data.pipeline import PipelineConfig, make_dataset

    if args.workers:
        tf.config.threading.set_inter_op_parallelism_threads(args.workers)
        tf.config.threading.set_intra_op_parallelism_threads(args.workers)
    config = PipelineConfig(
        image_size=args.size, augment=AugmentConfig(ops=("autocontrast", "hflip"))
    )
    kwargs = {} if args.deterministic is None else {"deterministic": args.deterministic}
    ds = make_dataset(frame, config, batch_size=args.batch, training=True, **kwargs).repeat()
    run_once = batch_rate(lambda: iter(ds), args.batches, args.batch)

    return run_once, {"framework": f"tf.data {tf.__version__}", "images": len(frame)}


def _torch_side(args, frame) -> tuple:
    import torch
    import torchvision
    from PIL import Image, ImageOps
    from torchvision import transforms

    paths = frame["path"].astype(str).tolist()
    labels = frame["label"].astype("float32").tolist()
    transform = transforms.Compose(
        [
            transforms.Resize((args.size, args.size)),
            transforms.RandomAutocontrast(p=0.5),
            transforms.RandomHorizontalFlip(p=0.5),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )

    class Films(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as image:
                # As displayed: a phone's or scanner's JPEG may be stored turned (EXIF).
                upright = ImageOps.exif_transpose(image).convert("RGB")
                return transform(upright), torch.tensor([labels[i]])

    torch.set_num_threads(1)  # as the DataLoader workers do; the work is per image
    batches = torch_batches(Films(), args.batch, args.workers)
    run_once = batch_rate(batches, args.batches, args.batch)

    info = {
        "framework": f"torch {torch.__version__} / torchvision {torchvision.__version__}",
        "images": len(frame),
    }
    return run_once, info


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.pipeline",
        description="Images/s of the training input pipeline (decode, resize, augment, "
        "normalise, batch): tf.data against a PyTorch DataLoader, alternating in one invocation.",
    )
    p.add_argument("--images", type=int, default=256, help="synthetic PNGs to read (default 256)")
    p.add_argument("--size", type=int, default=256, help="output side (default 256, report 000)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument(
        "--batches",
        type=int,
        default=100,
        help="timed batches per repetition; many more than either side prefetches while the "
        "other is measured (default 100)",
    )
    add_side_flags(p)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers / tf.data threads")
    p.add_argument(
        "--deterministic",
        choices=("true", "false"),
        default=None,
        help="override make_dataset's default element order for the tf.data side",
    )
    p.add_argument("--root", default=None, help="where the synthetic PNGs go (default: cache)")
    p.add_argument(
        "--data-dir", default=None,
        help="read this dataset's training films (a MURA or FracAtlas folder) instead of "
        "synthetic PNGs; --images caps their number",
    )  # fmt: skip
    return p


def real_frame(data_dir: str, images: int):
    """The first `images` training films of the dataset in `data_dir` (shuffled by the split's
    seed, so every part is in), read as a recipe reads them: films that do not decode (FracAtlas
    has truncated ones) are left out with a warning, as in training."""
    from mura_tf.data.catalogue import load_catalogue

    frame = load_catalogue(data_dir, splits=("train",))
    return frame.sample(frac=1.0, random_state=0).head(images).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    args = parser().parse_args(argv)
    if args.deterministic is not None:
        args.deterministic = args.deterministic == "true"
    require_positive(parser(), args, ("images", "size", "batch", "batches", "repeats"))
    root = films_root(args.root)
    if args.data_dir:
        if not Path(args.data_dir).is_dir():
            parser().error(f"--data-dir {args.data_dir}: no such folder")
        frame, what = real_frame(args.data_dir, args.images), "training films of " + args.data_dir
    else:
        frame, what = synthetic_frame(args.images, root), "synthetic PNGs"
    banner = (
        f"{len(frame)} {what}, batch {args.batch}, {args.size}x{args.size}, "
        f"{args.workers} workers, {args.batches} batches x at least {args.repeats} repetitions "
        "per side"
    )
    setups = {"keras": lambda: _keras_side(args, frame), "torch": lambda: _torch_side(args, frame)}
    return run_sides("benchmarks.pipeline", args, argv, setups, banner, ("--root", str(root)))


if __name__ == "__main__":
    sys.exit(main())
