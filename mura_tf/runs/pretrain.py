"""SimCLR pre-training on MURA's training images (labels unused), report 002's second half.

`run_pretraining` writes `OUT/simclr_pretrain/<parts>/<run>/`: `config.json`, `history.csv`,
`logs/` (TensorBoard), `checkpoints/best.keras` (whole SimCLR model, best dev NT-Xent),
`encoder.keras` (the backbone of that best epoch alone, what `simclr_finetune --encoder` loads);
`history.csv` and TensorBoard carry `val_knn_auc`, a kNN probe of the dev films after every
epoch (`mura_tf.training.probe.KnnProbe`), which shows while it runs whether pre-training
still helps;
`report.html` (`mura_tf.runs.page`) and `metrics.json` (the selected epoch's losses, and
linear probes on the abnormality label of
the pre-trained encoder and of the same encoder at its random initialisation, the baseline
pre-training must beat; written last).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, ClassVar

import keras

from mura_tf.compat.fused_adam import fuse_adam
from mura_tf.data.catalogue import load_catalogue
from mura_tf.data.contrastive import ViewConfig, make_contrastive_dataset
from mura_tf.data.pipeline import PipelineConfig
from mura_tf.data.splits import Splits, make_splits
from mura_tf.errors import FieldError
from mura_tf.files import save_keras
from mura_tf.models.backbones import backbone_spec, build_backbone
from mura_tf.models.simclr import SimCLR
from mura_tf.runs.folder import OpenRun, finish_run, run_context
from mura_tf.runs.presets import pretrain_changes
from mura_tf.runs.record import write_config
from mura_tf.runs.result import RunResult, location_lines, write_results
from mura_tf.runs.settings import MIXED_PRECISION_HELP, RunConfig, setting
from mura_tf.training.distribute import distribute_batches, local_copy, num_workers
from mura_tf.training.optimizers import LARS, scaled_learning_rate, warmup_cosine
from mura_tf.training.precision import MODES, precision
from mura_tf.training.probe import KnnProbe, linear_probe
from mura_tf.training.train import TrainConfig, train


@dataclass(frozen=True, kw_only=True)
class PretrainConfig(RunConfig):
    """SimCLR settings: report 002 where it speaks (ResNet-50, 50 epochs, elbow/hand/shoulder:
    `recipes/simclr_pretrain.py`), google-research/simclr's defaults where it does not."""

    base_learning_rate: float = setting(
        0.3, "base learning rate, scaled by --lr-scaling", name="--lr"
    )
    lr_scaling: str = setting(
        "linear",
        "linear (lr x B/256), sqrt (lr x sqrt(B)) or none",
        choices=("linear", "sqrt", "none"),
    )
    optimizer: str = setting(
        "lars", "lars (official) or adam (small batches)", choices=("lars", "adam")
    )
    warmup_epochs: int | None = setting(
        None, "linear warm-up epochs (default: a tenth of training, the official 10 of 100)"
    )
    weight_decay: float = setting(1e-6, "LARS weight decay")
    temperature: float = setting(0.1, "NT-Xent temperature")
    min_crop_area: float = setting(
        0.08, "smallest share of the image a random resized crop keeps (official: 0.08)"
    )
    projection_layers: int = setting(3, "layers in the projection head")
    projection_dim: int = setting(128, "output size of the projection head")
    # Mixed precision came to pre-training later than to the supervised runs: runs before it
    # computed in float32 (the settings record it as a bool, `RunConfig.settings`).
    mixed_precision: str = setting(
        "auto", MIXED_PRECISION_HELP, since="0.3", legacy=False, choices=MODES
    )
    TRAINER_FIELDS: ClassVar[dict[str, str]] = {
        **RunConfig.TRAINER_FIELDS,
        "base_learning_rate": "learning_rate",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        self._at_least("projection_layers", 1)
        self._at_least("projection_dim", 1)
        if self.batch_size < 2:
            raise FieldError("batch_size", "must be at least 2: NT-Xent needs negatives")
        if not self.temperature > 0:
            raise FieldError("temperature", f"must be positive, got {self.temperature}")
        if self.optimizer not in ("lars", "adam"):
            raise FieldError("optimizer", f"must be lars or adam, got {self.optimizer!r}")
        if not 0 < self.min_crop_area <= 1:
            raise FieldError("min_crop_area", f"must be in (0, 1], got {self.min_crop_area}")

    def synthetic_changes(self, explicit: frozenset[str]) -> dict[str, Any]:
        return pretrain_changes(self, explicit)


def _probe(backbone: keras.Model, splits: Splits, pipeline: PipelineConfig) -> dict | None:
    return linear_probe(backbone, splits.train, splits.test, pipeline) if len(splits.test) else None


def run_pretraining(cfg: PretrainConfig) -> RunResult:
    """Pre-train a SimCLR encoder; see the module docstring for the outputs. The result keeps
    the trained `SimCLR` model as `extra["model"]`."""
    with run_context(cfg) as run, precision(cfg.mixed_precision, cfg.image_size) as policy:
        return _pretrain(cfg, run, policy)


def _float32_copy(backbone: keras.Model, cfg: PretrainConfig) -> keras.Model:
    """`backbone` rebuilt under float32 with its weights: a saved layer keeps its dtype policy,
    so an encoder saved under mixed precision would compute in it in every fine-tuning run."""
    if backbone.dtype_policy.name == "float32":
        return backbone
    with precision("off"):
        copy = build_backbone(cfg.backbone, cfg.image_size, "none")
    copy.set_weights(backbone.get_weights())
    return copy


def _pretrain(cfg: PretrainConfig, run: OpenRun, policy: str) -> RunResult:
    strategy, run_dir, worker = run.strategy, run.run_dir, run.worker
    data_dir = cfg.data_folder()
    splits = make_splits(
        load_catalogue(
            data_dir, cfg.part, dataset=cfg.data_info, positive=cfg.positive, strict=cfg.strict
        ),
        cfg.dev_fraction,
        cfg.seed,
    )
    spec = backbone_spec(cfg.backbone)
    pipeline = PipelineConfig(
        image_size=cfg.image_size, normalization=spec.normalization, cache=cfg.cache
    )
    views = ViewConfig(crop_area=(cfg.min_crop_area, 1.0))
    # Before the datasets: tf.data's seeded ops (shuffle, Dataset.random) mix in TensorFlow's
    # global seed, so without it the batches would depend on what ran earlier in the process.
    keras.utils.set_random_seed(cfg.seed)
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
    write_config(
        run, cfg, data_dir,
        normalization=spec.normalization,
        peak_learning_rate=peak,
        steps_per_epoch=steps_per_epoch,
        images={"train": len(splits.train), "dev": len(splits.dev)},
        dtype_policy=policy,
    )  # fmt: skip

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
            model.compile(optimizer=fuse_adam(keras.optimizers.Adam(schedule)))
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
    # Whether pre-training still helps, epoch by epoch: a kNN probe of the dev films (one
    # replica only: the probe reads the encoder outside the strategy).
    probes = (
        [KnnProbe(lambda: model.backbone, splits.train, splits.dev, pipeline, seed=cfg.seed)]
        if strategy.num_replicas_in_sync == 1 and len(splits.dev)
        else []
    )
    result = train(model, train_ds, dev_ds, run_dir, train_config, probes=probes)

    save_keras(_float32_copy(model.backbone, cfg), run_dir / "encoder.keras")
    if worker:
        finish_run(run_dir)
        return RunResult(run_dir, {}, None, cfg, {"model": model})
    selected = result.history[result.selected_epoch - 1]
    metrics = {
        "loss": float(selected["loss"]),
        "contrastive_accuracy": float(selected["contrastive_accuracy"]),
        "val_loss": float(selected["val_loss"]),
        "selected_epoch": result.selection(),
        "linear_probe": probe(),
        "linear_probe_at_init": probe_before,
    }
    write_results(run_dir, metrics)
    return RunResult(run_dir, metrics, None, cfg, {"model": model})


def summary_lines(result: RunResult) -> list[str]:
    """What a pre-training run prints when it is done: the encoder handed over, its linear
    probe against the random encoder's, and how to fine-tune it."""
    m = result.metrics
    chosen = m["selected_epoch"]
    lines = [
        "",
        f"encoder handed over: epoch {chosen['epoch']} of {chosen['epochs_run']}, the best dev "
        f"NT-Xent {m['val_loss']:.3f} (train {m['loss']:.3f}), contrastive accuracy "
        f"{m['contrastive_accuracy']:.3f}",
    ]
    if m["linear_probe"]:
        after, before = m["linear_probe"], m["linear_probe_at_init"]
        lines.append(
            f"linear probe on the frozen encoder: image AUROC {after['image']['auc']:.3f} "
            f"(random init {before['image']['auc']:.3f}), study AUROC "
            f"{after['study']['auc']:.3f} (random init {before['study']['auc']:.3f})"
        )
    run_dir = shlex.quote(str(result.run_dir))
    return [
        *lines,
        *location_lines(result.run_dir, ("encoder:", result.run_dir / "encoder.keras")),
        f"fine-tune:    python -m recipes.simclr_finetune --encoder {run_dir} --fraction 0.1",
    ]
