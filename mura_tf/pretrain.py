"""SimCLR pre-training on MURA's training images (labels unused), report 002's second half.

`run_pretraining` writes `OUT/simclr_pretrain/<parts>/<run>/`: `config.json`, `history.csv`,
`logs/` (TensorBoard), `checkpoints/best.keras` (whole SimCLR model, best dev NT-Xent),
`encoder.keras` (the backbone of that best epoch alone, what `simclr_finetune --encoder` loads)
and `metrics.json` (the selected epoch's losses, and linear probes on the abnormality label of
the pre-trained encoder and of the same encoder at its random initialisation, the baseline
pre-training must beat; written last).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from mura_tf.data.contrastive import ViewConfig, make_contrastive_dataset
from mura_tf.data.mura import load_mura
from mura_tf.data.pipeline import PipelineConfig
from mura_tf.data.splits import Splits, make_splits
from mura_tf.distribute import (
    check_strategy,
    describe,
    distribute_batches,
    local_copy,
    make_strategy,
    num_workers,
    worker_index,
    worker_run_dir,
)
from mura_tf.errors import ConfigError
from mura_tf.experiment import SYNTHETIC_IMAGE_SIZE, data_folder, run_folder
from mura_tf.io import disk_errors, save_keras, write_json
from mura_tf.models.backbones import backbone_spec, build_backbone
from mura_tf.models.simclr import SimCLR
from mura_tf.optimizers import LARS, scaled_learning_rate, warmup_cosine
from mura_tf.parts import parts_spec
from mura_tf.probe import linear_probe
from mura_tf.run_folder import finish_run, open_run
from mura_tf.train import TrainConfig, train


@dataclass(frozen=True)
class PretrainConfig:
    """SimCLR settings: report 002 where it speaks (ResNet-50, 50 epochs, elbow/hand/shoulder),
    google-research/simclr's defaults where it does not."""

    backbone: str = "resnet50"
    parts: str = "elbow,hand,shoulder"
    epochs: int = 50
    batch_size: int = 64
    image_size: int = 224
    base_learning_rate: float = 0.3
    lr_scaling: str = "linear"  # 0.3 x B / 256
    optimizer: str = "lars"
    warmup_epochs: int | None = None  # None: a tenth of training (the official 10 of 100)
    weight_decay: float = 1e-6
    temperature: float = 0.1
    min_crop_area: float = 0.08  # random resized crop keeps 8-100% of the image (official)
    projection_layers: int = 3
    projection_dim: int = 128
    dev_fraction: float = 0.1
    seed: int = 0
    max_steps: int | None = None
    cache: str | None = None
    data_dir: str | None = None
    synthetic: bool = False
    out: str = "saved_models"
    run_name: str | None = None
    overwrite: bool = False
    strategy: str = "auto"
    deterministic: bool = False
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        backbone_spec(self.backbone)
        check_strategy(self.strategy)
        # Parsed once into one spelling: `--parts Forearm` and `--parts forearm` are one run.
        object.__setattr__(self, "parts", parts_spec(self.parts))
        for name in ("epochs", "batch_size", "projection_layers", "projection_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}"
                )
        if self.batch_size < 2:
            raise ConfigError("--batch-size must be at least 2: NT-Xent needs negatives")
        if not self.temperature > 0:
            raise ConfigError(f"--temperature must be positive, got {self.temperature}")
        if not self.base_learning_rate > 0:
            raise ConfigError(f"--lr must be positive, got {self.base_learning_rate}")
        if self.optimizer not in ("lars", "adam"):
            raise ConfigError(f"unknown --optimizer {self.optimizer!r}: use lars or adam")
        if self.image_size < 32:
            raise ConfigError(f"--image-size must be at least 32, got {self.image_size}")

    def settings(self) -> dict:
        skip = {"out", "run_name", "overwrite", "notes", "strategy"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    def run_dir(self) -> Path:
        return run_folder(
            self.out, "simclr_pretrain", self.parts, self.settings(), self.seed, self.run_name
        )


def apply_synthetic_preset(
    cfg: PretrainConfig, explicit: frozenset[str] = frozenset()
) -> PretrainConfig:
    """CPU-sized pre-training on the embedded synthetic set, noting each change."""
    changes = {}
    if "image_size" not in explicit and cfg.image_size > SYNTHETIC_IMAGE_SIZE:
        changes["image_size"] = SYNTHETIC_IMAGE_SIZE
    if "epochs" not in explicit and cfg.epochs > 10:
        changes["epochs"] = 10
    if "backbone" not in explicit and cfg.backbone == "resnet50":
        changes["backbone"] = "resnet18"
    if "batch_size" not in explicit and cfg.batch_size > 32:
        changes["batch_size"] = 32
    # At 64 px an 8% crop is an 18 px patch, and patches of different synthetic films look
    # alike; with half the image or more the positives are recognisable (measured: NT-Xent
    # falls within 48 steps at 32 px with crops of 50-100%, rises with 8-100%).
    if "min_crop_area" not in explicit and cfg.min_crop_area < 0.5:
        changes["min_crop_area"] = 0.5
    # LARS exists for batches of thousands. At batch 32 linear scaling gives 0.3 x 32 / 256 =
    # 0.04, which its trust ratio turns into no learning, and sqrt scaling (batch 16, peak 1.0)
    # lowered NT-Xent but left a linear probe below that of the random encoder (112 steps);
    # Adam at 2e-3 lowers NT-Xent and lifts the probe above the random encoder's.
    if "optimizer" not in explicit and cfg.optimizer == "lars":
        changes["optimizer"] = "adam"
        if "base_learning_rate" not in explicit:
            changes["base_learning_rate"] = 2e-3
        if "lr_scaling" not in explicit:
            changes["lr_scaling"] = "none"
    notes = [f"synthetic preset: {k} {getattr(cfg, k)} -> {v}" for k, v in changes.items()]
    if cfg.cache is None and "cache" not in explicit:
        changes["cache"] = "memory"
    return dataclasses.replace(cfg, notes=(*cfg.notes, *notes), **changes)


def _probe(backbone: keras.Model, splits: Splits, pipeline: PipelineConfig) -> dict | None:
    return linear_probe(backbone, splits.train, splits.test, pipeline) if len(splits.test) else None


@dataclass
class PretrainResult:
    run_dir: Path
    metrics: dict
    model: SimCLR


def run_pretraining(cfg: PretrainConfig) -> PretrainResult:
    """Pre-train a SimCLR encoder; see the module docstring for the outputs."""
    strategy = make_strategy(cfg.strategy)  # first: see mura_tf.distribute.make_strategy
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    worker = worker_index(strategy)
    run_dir = worker_run_dir(cfg.run_dir(), strategy)
    with open_run(run_dir, cfg.overwrite), disk_errors(run_dir):
        return _pretrain(cfg, strategy, worker, run_dir)


def _pretrain(
    cfg: PretrainConfig, strategy: tf.distribute.Strategy, worker: int, run_dir: Path
) -> PretrainResult:
    data_dir = data_folder(cfg.synthetic, cfg.data_dir, cfg.parts)
    splits = make_splits(load_mura(data_dir, cfg.parts), cfg.dev_fraction, cfg.seed)
    spec = backbone_spec(cfg.backbone)
    pipeline = PipelineConfig(
        image_size=cfg.image_size, normalization=spec.normalization, cache=cfg.cache
    )
    views = ViewConfig(crop_area=(cfg.min_crop_area, 1.0))
    dev_batch = min(cfg.batch_size, len(splits.dev))
    if strategy.num_replicas_in_sync == 1:
        train_ds = make_contrastive_dataset(
            splits.train, pipeline, views, batch_size=cfg.batch_size, seed=cfg.seed
        )
        dev_ds = make_contrastive_dataset(
            splits.dev, pipeline, views, batch_size=dev_batch, seed=cfg.seed + 1
        )
        validation_steps = cfg.max_steps
    else:  # each worker reads its shard, repeated, so all run the same number of steps

        def shard_of(frame, seed):
            return lambda b, i, n: make_contrastive_dataset(
                frame, pipeline, views, batch_size=b, seed=seed, shard=(i, n)
            ).repeat()

        train_ds = distribute_batches(strategy, shard_of(splits.train, cfg.seed), cfg.batch_size)
        dev_batch -= dev_batch % strategy.num_replicas_in_sync
        dev_ds = distribute_batches(strategy, shard_of(splits.dev, cfg.seed + 1), dev_batch)
        validation_steps = cfg.max_steps or max(1, len(splits.dev) // dev_batch)
    steps_per_epoch = cfg.max_steps or len(splits.train) // cfg.batch_size
    total_steps = steps_per_epoch * cfg.epochs
    warmup_epochs = cfg.warmup_epochs if cfg.warmup_epochs is not None else max(1, cfg.epochs // 10)
    peak = scaled_learning_rate(cfg.base_learning_rate, cfg.batch_size, cfg.lr_scaling)
    schedule = warmup_cosine(peak, total_steps, min(warmup_epochs * steps_per_epoch, total_steps))
    config = {
        "pretrain": cfg.settings(),
        "data_dir": data_dir,
        "normalization": spec.normalization,
        "peak_learning_rate": peak,
        "steps_per_epoch": steps_per_epoch,
        "images": {"train": len(splits.train), "dev": len(splits.dev)},
        "strategy": describe(cfg.strategy, strategy),
        "notes": list(cfg.notes),
    }
    write_json(run_dir / "config.json", config)

    keras.utils.set_random_seed(cfg.seed)
    with strategy.scope():
        model = SimCLR(
            build_backbone(cfg.backbone, cfg.image_size, "none"),
            cfg.projection_layers,
            cfg.projection_dim,
            cfg.temperature,
        )
        model(keras.ops.zeros((2, cfg.image_size, cfg.image_size, 3)))  # built, so it resumes
        if cfg.optimizer == "lars":
            model.compile(optimizer=LARS(schedule, weight_decay=cfg.weight_decay))
        else:
            model.compile(optimizer=keras.optimizers.Adam(schedule))
    # Under multi-worker the chief probes an undistributed copy alone (see local_copy).
    multi_worker = num_workers(strategy) > 1

    def probe() -> dict | None:
        encoder = local_copy(model.backbone) if multi_worker else model.backbone
        return _probe(encoder, splits, pipeline)

    probe_before = probe() if worker == 0 else None
    train_config = TrainConfig(
        epochs=cfg.epochs,
        monitor="val_loss",
        patience=0,
        steps_per_epoch=steps_per_epoch if strategy.num_replicas_in_sync > 1 else cfg.max_steps,
        validation_steps=validation_steps,
    )
    result = train(model, train_ds, dev_ds, run_dir, train_config)

    save_keras(model.backbone, run_dir / "encoder.keras")
    if worker:
        finish_run(run_dir)
        return PretrainResult(run_dir, {}, model)
    selected = result.history[result.selected_epoch - 1]
    metrics = {
        "loss": float(selected["loss"]),
        "contrastive_accuracy": float(selected["contrastive_accuracy"]),
        "val_loss": float(selected["val_loss"]),
        "selected_epoch": result.selection(),
        "linear_probe": probe(),
        "linear_probe_at_init": probe_before,
    }
    write_json(run_dir / "metrics.json", metrics)
    finish_run(run_dir)
    return PretrainResult(run_dir, metrics, model)
