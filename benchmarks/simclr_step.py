"""SimCLR pre-training throughput: the project's two views and step against PyTorch's.

    python -m benchmarks.simclr_step --model resnet18 --batch 32 --size 128 --steps 5

Both sides hold the same synthetic MURA films decoded and resized to `--size` in memory (the
recipe's `--cache memory`), then per step draw two views of each image (random resized crop,
area 0.08-1 and aspect 3/4-4/3; horizontal flip; brightness and contrast jitter 0.4, p 0.8;
Gaussian blur, sigma 0.1-2, a kernel a tenth of the side, p 0.5; ImageNet mean/std) and train
the encoder, a 3-layer projection head and NT-Xent (temperature 0.1) on both views in one batch,
with Adam (LARS is not in PyTorch). The Keras side is `make_contrastive_dataset` and the
`SimCLR` model as `mura_tf.runs.pretrain` builds them; the PyTorch side is torchvision's v2
transforms on uint8 tensors in a `DataLoader` with `--workers` processes and torchvision's same
architecture. Rates are source images per second (each makes two views).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from benchmarks.harness import (
    add_side_flags,
    fit_rate,
    require_positive,
    run_sides,
    step_rate,
    torch_batches,
    torch_settings,
)
from benchmarks.pipeline import films_root, synthetic_frame

MODELS = ("resnet18", "resnet50")
TEMPERATURE = 0.1


def _keras_side(args, frame) -> tuple:
    from mura_tf.cli import start_tensorflow  # noqa: I001 - first: oneDNN on before TF loads

    start_tensorflow()
    import keras
    import tensorflow as tf

    from mura_tf.compat.fused_adam import fuse_adam
    from mura_tf.data.contrastive import ViewConfig, make_contrastive_dataset
    from mura_tf.data.pipeline import PipelineConfig
    from mura_tf.models.backbones import backbone_spec, build_backbone
    from mura_tf.models.simclr import SimCLR
    from mura_tf.training.precision import policy_name

    keras.mixed_precision.set_global_policy(policy_name(args.mixed_precision))
    keras.utils.set_random_seed(0)
    spec = backbone_spec(args.model)
    pipeline = PipelineConfig(
        image_size=args.size, normalization=spec.normalization, cache="memory"
    )
    data = make_contrastive_dataset(
        frame, pipeline, ViewConfig(), batch_size=args.batch, seed=0
    ).repeat()
    model = SimCLR(build_backbone(args.model, args.size, "none"), 3, 128, TEMPERATURE)
    model(keras.ops.zeros((2, args.size, args.size, 3)))
    model.compile(optimizer=fuse_adam(keras.optimizers.Adam(1e-3)))  # as pretrain does
    model.fit(data, steps_per_epoch=args.warmup, epochs=1, verbose=0)  # trace, fill the cache
    run_once = fit_rate(model, data, args.steps, args.batch)

    info = {
        "framework": f"keras {keras.__version__} / tensorflow {tf.__version__}",
        "dtype_policy": keras.mixed_precision.global_policy().name,
        "normalization": spec.normalization,
        "params": model.count_params(),
        "images": len(frame),
    }
    return run_once, info


def _torch_side(args, frame) -> tuple:
    import torch
    import torchvision
    from PIL import Image
    from torchvision.transforms import v2

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    resize = v2.Resize((args.size, args.size), antialias=True)
    films = []
    for path in frame["path"].astype(str):
        with Image.open(path) as image:
            films.append(resize(v2.functional.pil_to_tensor(image.convert("RGB"))))
    radius = max(1, args.size // 20)  # as mura_tf.data.contrastive
    view = v2.Compose(
        [
            v2.RandomResizedCrop(args.size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4)], p=0.8),
            v2.RandomApply([v2.GaussianBlur(2 * radius + 1, sigma=(0.1, 2.0))], p=0.5),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )

    class Pairs(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(films)

        def __getitem__(self, i):
            return view(films[i]), view(films[i])

    encoder = getattr(torchvision.models, args.model)(weights=None)
    width = encoder.fc.in_features
    encoder.fc = torch.nn.Identity()
    head = torch.nn.Sequential(  # the official head, as mura_tf.models.simclr.projection_head
        torch.nn.Linear(width, width, bias=False), torch.nn.BatchNorm1d(width), torch.nn.ReLU(),
        torch.nn.Linear(width, width, bias=False), torch.nn.BatchNorm1d(width), torch.nn.ReLU(),
        torch.nn.Linear(width, 128, bias=False), torch.nn.BatchNorm1d(128),  # + an offset
    )  # fmt: skip
    model = torch.nn.Sequential(encoder, head).train()
    params = sum(p.numel() for p in model.parameters())
    settings = torch_settings(args)
    model = settings.model(model)
    optimizer = settings.adam(model.parameters(), lr=1e-3)

    def nt_xent(z1, z2):
        z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
        n = z1.shape[0]
        logits = z @ z.T / TEMPERATURE
        logits.fill_diagonal_(-1e9)
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        return torch.nn.functional.cross_entropy(logits, targets)

    iterator = torch_batches(Pairs(), args.batch, args.workers)()

    def step() -> None:
        view_1, view_2 = next(iterator)
        optimizer.zero_grad(set_to_none=True)
        with settings.context():  # the loss in float32, as the Keras side computes it
            z = model(settings.input(torch.cat([view_1, view_2])))
        z1, z2 = z.float().chunk(2)
        nt_xent(z1, z2).backward()
        optimizer.step()

    start = time.perf_counter()
    step()  # compiles, where the model is compiled
    first = time.perf_counter() - start
    for _ in range(args.warmup - 1):
        step()
    run_once = step_rate(step, args.steps, args.batch)

    info = {
        "framework": f"torch {torch.__version__} / torchvision {torchvision.__version__}",
        **settings.describe(),
        "first_step_s": round(first, 1),
        "params": params,
        "images": len(films),
    }
    return run_once, info


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.simclr_step",
        description="Source images/s of SimCLR pre-training (two augmented views, encoder, "
        "projection head, NT-Xent, Adam): the project's against PyTorch's, alternating in one "
        "invocation.",
    )
    p.add_argument("--model", choices=MODELS, default="resnet18")
    p.add_argument("--batch", type=int, default=32, help="images per step (default 32)")
    p.add_argument("--size", type=int, default=128, help="view side in pixels (default 128)")
    p.add_argument("--images", type=int, default=256, help="synthetic films (default 256)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per repetition")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (tracing)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    add_side_flags(p, mixed_precision=True, training=True)
    p.add_argument("--root", default=None, help="where the synthetic PNGs go (default: cache)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    args = parser().parse_args(argv)
    require_positive(parser(), args, ("batch", "size", "images", "steps", "warmup", "repeats"))
    if args.batch < 2:
        parser().error("--batch must be at least 2: NT-Xent needs negatives")
    root = films_root(args.root)
    frame = synthetic_frame(args.images, root)
    if len(frame) < args.batch:
        parser().error(f"--images {args.images} gives {len(frame)} films: fewer than --batch")
    banner = (
        f"{args.model}, {len(frame)} synthetic films, batch {args.batch} (x2 views), "
        f"{args.size}x{args.size}, {args.steps} steps x at least {args.repeats} repetitions per "
        "side after the warm-up; starting workers (tracing can take minutes)"
    )
    setups = {"keras": lambda: _keras_side(args, frame), "torch": lambda: _torch_side(args, frame)}
    extra = ("--root", str(root))
    return run_sides("benchmarks.simclr_step", args, argv, setups, banner, extra)


if __name__ == "__main__":
    sys.exit(main())
