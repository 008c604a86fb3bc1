"""A plain PyTorch twin of a finished `resnet18_mlp` or `fracatlas_outlines` run, for
`benchmarks.real_films` and `benchmarks.time_to_quality`.

torchvision's ResNet18 (random weights) + Linear(512, 512) + ReLU + Linear(512, 1), trained
with the run's own schedule (Adam and its learning rate, epochs, batch size, image size,
autocontrast and horizontal flip at p = 0.5, rotation, scaling and shifts drawn per film as
`mura_tf.data.augment_settings.AugmentConfig` draws them, the moving average of the weights that
`--ema` asks for, the learning-rate cut of `--reduce-lr-on-plateau`, early-stopping
patience, the dev metric that chooses the epoch handed over) on the run's own films
(`splits.csv`), read with Pillow as a viewer shows them (EXIF orientation applied), stretched
to the square side as the run does, ImageNet-normalised, in a `DataLoader` with workers;
channels-last, and `torch.autocast` bfloat16 where the run computed in bfloat16. Needs
`pip install -e .[bench]`.

A run with `--outline-weight W` gets the same outline head as `mura_tf.models.outline_guided`
(3x3 convolution to 64 channels, ReLU, 1x1 convolution to one logit, on the stride-8 map:
torchvision's `layer2`), the same masks (`mura_tf.data.masks.outline_masks`, numpy and Pillow
only), mirrored with their films, and the same loss: per-pixel binary cross-entropy against the
mask's area share per cell, averaged over the films whose mask is known, times W.

The moving average is Keras's (`Optimizer(use_ema=True)`): the trainable weights only, set to
the weights after the first step, then `m * average + (1 - m) * weights` after each step;
batch-norm statistics stay the live ones. Dev, the epoch handed over and test use the average,
as `keras.callbacks.SwapEMAWeights` does.

Each epoch's dev AUROC and the wall clock (`time.time()`) at its end are returned as `curve`,
from which `benchmarks.time_to_quality` reads the minutes until a dev AUROC is first reached.

Run it in a process without TensorFlow (`python -m benchmarks.torch_reference RUN SEED`
prints its result as JSON): PyTorch and TensorFlow loaded together crashed with a
segmentation fault here (torch 2.14.1, tensorflow 2.21).
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

# numpy, pandas and scipy only: TensorFlow is never imported beside torch (see real_films).
from mura_tf.evaluators.intervals import interval_text, metric_intervals

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def run_films(run_dir: Path) -> pd.DataFrame:
    """The films a finished run used (`splits.csv`: `path`, `split`) with their catalogue
    columns (`label`, `part`, `study`, ...), read without TensorFlow."""
    from mura_tf.data.catalogue import load_catalogue

    config = json.loads((run_dir / "config.json").read_text())
    used = pd.read_csv(run_dir / "splits.csv")
    catalogue = load_catalogue(config["data_dir"], check_images=False)
    catalogue = catalogue.drop(columns=[c for c in ("split",) if c in catalogue])
    return used.merge(catalogue, on="path", how="left", validate="1:1")


def train_reference(run_dir: str | Path, seed: int) -> dict:
    """Train the twin of the run in `run_dir`; its test AUROC, kappa, accuracy, the epoch
    handed over and `curve` (per epoch: `epoch`, `dev_auroc`, `time`, the wall clock)."""
    import torch
    from PIL import Image, ImageOps
    from sklearn.metrics import cohen_kappa_score, roc_auc_score
    from torch import nn
    from torch.nn import functional
    from torch.utils.data import DataLoader, Dataset
    from torchvision.models import resnet18
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2.functional import affine

    from mura_tf.data.augment_settings import GEOMETRIC, AugmentConfig
    from mura_tf.data.catalogue import load_outlines
    from mura_tf.data.masks import outline_masks

    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    settings = config["experiment"]
    size, batch = settings["image_size"], settings["batch_size"]
    augment = set(settings["augment"])
    # The ranges `mura_tf.data.augment` draws from (the run's rotation limit is in its config).
    ranges = AugmentConfig(
        rotation_degrees=settings.get("rotation_degrees", AugmentConfig.rotation_degrees)
    )
    moves = bool(augment & GEOMETRIC)
    ema = float(settings.get("ema") or 0.0)
    bf16 = "bfloat16" in str(config.get("dtype_policy", ""))
    films = run_films(run_dir)
    weight = float(settings.get("outline_weight") or 0.0)
    train_films = films[films["split"] == "train"]
    masks, known = outline_masks(
        train_films["path"].tolist(), train_films["label"].tolist(),
        load_outlines(config["data_dir"]) if weight else {}, size, False,
    )  # fmt: skip
    mask_of = {p: (m[..., 0], k) for p, m, k in zip(train_films["path"], masks, known, strict=True)}
    empty = (np.zeros(masks.shape[1:3], np.uint8), np.float32(0))
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))

    class Films(Dataset):
        def __init__(self, frame: pd.DataFrame, training: bool) -> None:
            self.paths = frame["path"].tolist()
            self.labels = frame["label"].to_numpy(np.float32)
            self.training = training

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, i: int):
            with Image.open(self.paths[i]) as im:
                film = ImageOps.exif_transpose(im).convert("RGB")
            film = film.resize((size, size), Image.BILINEAR, reducing_gap=None)
            mask, mask_known = mask_of.get(self.paths[i], empty)
            if self.training and "autocontrast" in augment and np.random.rand() < 0.5:
                film = ImageOps.autocontrast(film)
            if self.training and "hflip" in augment and np.random.rand() < 0.5:
                film, mask = ImageOps.mirror(film), mask[:, ::-1]
            x = torch.from_numpy(np.asarray(film, np.float32) / 255.0).permute(2, 0, 1)
            m = torch.from_numpy(np.ascontiguousarray(mask, np.float32) / 255.0)[None]
            if self.training and moves:
                x, m = geometric(x, m)
            x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
            return x, self.labels[i], m, mask_known

    def geometric(x, m):
        """Film `[3, s, s]` and its mask `[1, s/4, s/4]` (`data.masks.mask_side`) rotated,
        scaled and shifted alike about their centres, bilinear, black outside the film."""
        angle, scale, shift = 0.0, 1.0, np.zeros(2)
        if "rotate" in augment:
            angle = np.random.uniform(-ranges.rotation_degrees, ranges.rotation_degrees)
        if "scale" in augment:
            scale = np.random.uniform(*ranges.scale)
        if "translate" in augment:
            shift = np.random.uniform(-ranges.translation, ranges.translation, 2)
        moved = []
        for pixels in (x, m):
            side = pixels.shape[-1]
            moved.append(
                affine(
                    pixels, angle=float(angle), translate=[float(v) for v in shift * side],
                    scale=float(scale), shear=[0.0, 0.0],
                    interpolation=InterpolationMode.BILINEAR, fill=0.0,
                )
            )  # fmt: skip
        return moved[0], moved[1]

    def loader(split: str, training: bool) -> DataLoader:
        frame = films[films["split"] == split]
        return DataLoader(
            Films(frame, training), batch_size=batch if training else 64, shuffle=training,
            num_workers=2, persistent_workers=True,
            worker_init_fn=lambda w: np.random.seed(seed + w),
        )  # fmt: skip

    class Guided(nn.Module):
        """ResNet18 + MLP head, and the outline head on `layer2` (stride 8)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = resnet18(weights=None)
            self.net.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 1))
            self.outline = nn.Sequential(
                nn.Conv2d(128, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 1, 1)
            )

        def forward(self, x):
            n = self.net
            middle = n.layer2(n.layer1(n.maxpool(n.relu(n.bn1(n.conv1(x))))))
            pooled = torch.flatten(n.avgpool(n.layer4(n.layer3(middle))), 1)
            return n.fc(pooled), self.outline(middle)

    model = Guided().to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["learning_rate"])
    loss_fn = nn.BCEWithLogitsLoss()
    monitor, patience = settings["monitor"], settings["patience"]
    # Keras's ReduceLROnPlateau as the run sets it: factor 0.1 after 2 epochs without a gain of
    # 1e-4. torch cuts after `patience` + 1 such epochs, Keras after `patience`: hence 1.
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, "min" if monitor == "val_loss" else "max", factor=0.1, patience=1,
            threshold=1e-4, threshold_mode="abs",
        )
        if settings.get("reduce_lr_on_plateau")
        else None
    )  # fmt: skip
    averaged = [p.detach().clone() for p in model.parameters()] if ema else []

    def average_step(first: bool) -> None:
        momentum = 0.0 if first else ema
        with torch.no_grad():
            for a, p in zip(averaged, model.parameters(), strict=True):
                a.mul_(momentum).add_(p.detach(), alpha=1.0 - momentum)

    def swap_average() -> None:
        """Trade the live weights and their moving average (a no-op without `--ema`)."""
        with torch.no_grad():
            for a, p in zip(averaged, model.parameters(), strict=True):
                live = p.detach().clone()
                p.copy_(a)
                a.copy_(live)

    train, dev, test = loader("train", True), loader("dev", False), loader("test", False)

    def predict(batches: DataLoader) -> tuple[np.ndarray, np.ndarray]:
        model.eval()
        out, truth = [], []
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            for x, y, _, _ in batches:
                logits = model(x.to(memory_format=torch.channels_last))[0].float()[:, 0]
                out.append(torch.sigmoid(logits).numpy())
                truth.append(y.numpy())
        return np.concatenate(out), np.concatenate(truth)

    def outline_loss(mask, mask_known, logits):
        target = functional.adaptive_avg_pool2d(mask, logits.shape[-2:])  # area share per cell
        per_film = functional.binary_cross_entropy_with_logits(
            logits, target, reduction="none"
        ).mean(dim=(1, 2, 3))
        return (per_film * mask_known).sum() / mask_known.sum().clamp_min(1e-12)

    best, best_state, best_epoch, waited, epochs_run = None, None, 0, 0, 0
    curve, steps = [], 0
    for epoch in range(1, settings["epochs"] + 1):
        model.train()
        for x, y, mask, mask_known in train:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                logits, where = model(x.to(memory_format=torch.channels_last))
            loss = loss_fn(logits.float()[:, 0], y)
            if weight:
                loss = loss + weight * outline_loss(mask, mask_known.float(), where.float())
            loss.backward()
            optimizer.step()
            if ema:
                average_step(first=steps == 0)
            steps += 1
        epochs_run = epoch
        swap_average()
        p, y = predict(dev)
        curve.append({"epoch": epoch, "dev_auroc": float(roc_auc_score(y, p)), "time": time.time()})
        value = {
            "val_accuracy": float(np.mean((p >= 0.5) == y)),
            "val_auc": float(roc_auc_score(y, p)) if len(set(y)) > 1 else 0.5,
            "val_loss": float(-np.mean(y * np.log(p + 1e-7) + (1 - y) * np.log(1 - p + 1e-7))),
        }[monitor]
        better = best is None or (value < best if monitor == "val_loss" else value > best)
        if better:
            best, best_state, best_epoch, waited = (
                value,
                copy.deepcopy(model.state_dict()),
                epoch,
                0,
            )
        else:
            waited += 1
        swap_average()
        if plateau is not None:
            plateau.step(value)
        if not better and patience and waited >= patience:
            break
    model.load_state_dict(best_state)  # the average's weights where the run keeps one
    p, y = predict(test)
    # The Keras run's intervals, computed the same way (one film a study in FracAtlas).
    scored = pd.DataFrame({"study": np.arange(len(y)), "part": "all", "label": y, "probability": p})
    intervals = metric_intervals(scored, seed=seed)["study"]
    return {
        "auroc": float(roc_auc_score(y, p)),
        "auroc 95%": interval_text(intervals["auc"]),
        "kappa": float(cohen_kappa_score(y, p >= 0.5)),
        "kappa 95%": interval_text(intervals["kappa"]),
        "accuracy": float(np.mean((p >= 0.5) == y)),
        "epoch": f"{best_epoch}/{epochs_run}",
        "curve": curve,
    }


if __name__ == "__main__":
    import sys

    print(json.dumps(train_reference(sys.argv[1], int(sys.argv[2]))))
