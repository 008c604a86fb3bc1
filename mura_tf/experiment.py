"""An experiment is a config (a row of the reports' tables) and one call that runs it.

`run_experiment` loads the data, splits it by patient, builds the model, trains it with the
shared trainer, evaluates on MURA's valid split (image and study level), and writes the run
folder `OUT/<recipe>/<part>/<run>/`:

    config.json        every resolved setting, the data counts and the strategy
    splits.csv         every image used and its split (train, dev, test)
    history.csv        one row per epoch
    logs/              TensorBoard
    checkpoints/best.keras   the best dev epoch by `monitor` (best.json: which epoch)
    model.keras        the model handed over: the best dev epoch, however training ended
    export/            SavedModel: serve(float32 [N, S, S, 3] raw 0-255) -> probability [N, 1]
    predictions.csv    one row per test image
    metrics.json       image/study/per-part metrics, the selected epoch and a fingerprint
                       of the first training batch; written last, so it marks a finished run

`backup/` (the resume point, `mura_tf.resume`) stays until all of the above is written, so a
run killed at any point after its last epoch redoes only the outputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from mura_tf.data.augment import AugmentConfig, parse_augmentations
from mura_tf.data.mura import load_mura
from mura_tf.data.pipeline import PipelineConfig, make_dataset
from mura_tf.data.splits import Splits, label_fraction, make_splits
from mura_tf.data.synthetic import SyntheticConfig, synthetic_dataset
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
from mura_tf.export import export_savedmodel
from mura_tf.io import disk_errors, save_keras, write_json, write_text
from mura_tf.metrics import macro_f1, study_level_metrics
from mura_tf.models.backbones import backbone_spec, build_backbone
from mura_tf.models.heads import HEADS, build_classifier, classification_head
from mura_tf.parts import PARTS, parse_parts, parts_spec, short_name
from mura_tf.run_folder import finish_run, open_run
from mura_tf.train import TrainConfig, compile_classifier, mura_class_weights, train

# The embedded synthetic set for `--synthetic`: small enough for a 2-core CPU.
SYNTHETIC_DATA = SyntheticConfig(
    patients_per_part=60, valid_patients_per_part=20, min_side=96, max_side=192, seed=0
)
SYNTHETIC_IMAGE_SIZE = 64
SYNTHETIC_MAX_EPOCHS = 8
# Report 002's 2e-5 is a fine-tuning rate for ImageNet weights; from random weights (all that
# is available offline) nothing moves at that rate, so the synthetic preset trains at 1e-3.
SYNTHETIC_MIN_LR = 1e-3
SYNTHETIC_MAX_BATCH = 8
SYNTHETIC_MIN_DEV_FRACTION = 0.2


@dataclass(frozen=True)
class Experiment:
    """Every setting of one run; recipes fill in the reports' values."""

    recipe: str
    backbone: str
    head: str = "linear"
    freeze_backbone: bool = False
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_boundaries: tuple[int, ...] = ()
    lr_values: tuple[float, ...] = ()
    epochs: int = 10
    batch_size: int = 8
    eval_batch_size: int = 16
    image_size: int = 256
    keep_aspect: bool = False
    augment: tuple[str, ...] = ("autocontrast", "hflip")
    dev_fraction: float = 0.1
    part: str = "all"
    weights: str = "imagenet"
    patience: int = 4
    monitor: str = "val_accuracy"
    class_weights: bool = False
    reduce_lr_on_plateau: bool = False
    intermediate_epochs: int = 0  # > 0: first learn the 7-way body-part task (report 000 §3.3)
    label_fraction: float = 1.0  # train on this share of the labelled studies (nested, stratified)
    seed: int = 0
    max_steps: int | None = None
    mixed_precision: bool = False
    jit_compile: str = "auto"
    cache: str | None = None
    data_dir: str | None = None
    synthetic: bool = False
    out: str = "saved_models"
    run_name: str | None = None
    overwrite: bool = False
    strict: bool = False  # fail on an unreadable PNG instead of skipping it with a warning
    strategy: str = "auto"  # tf.distribute strategy, see mura_tf.distribute.make_strategy
    deterministic: bool = False  # op determinism: same seed, same batches, same metrics
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        backbone_spec(self.backbone)
        if self.head not in HEADS:
            raise ConfigError(f"unknown head {self.head!r}: use one of {', '.join(HEADS)}")
        # Parsed once into one spelling: `--part Forearm` and `--part forearm` are one run.
        object.__setattr__(self, "part", parts_spec(self.part))
        parse_augmentations(self.augment)
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be at least 1, got {getattr(self, name)}")
        if self.image_size < 32:
            raise ConfigError(f"--image-size must be at least 32, got {self.image_size}")
        if not self.learning_rate > 0:
            raise ConfigError(f"--lr must be positive, got {self.learning_rate}")
        if not 0 < self.dev_fraction < 1:
            raise ConfigError(f"--dev-fraction must be in (0, 1), got {self.dev_fraction}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"--max-steps must be at least 1, got {self.max_steps}")
        if not 0 < self.label_fraction <= 1:
            raise ConfigError(f"--fraction must be in (0, 1], got {self.label_fraction}")
        check_strategy(self.strategy)
        if self.intermediate_epochs < 0:
            raise ConfigError(
                f"--intermediate-epochs must be 0 or more, got {self.intermediate_epochs}"
            )

    def settings(self) -> dict:
        """The settings that define the run (not where it is written)."""
        # Where and on how many devices a run happens does not change what it computes, so a
        # run interrupted on one machine resumes from its folder on another.
        skip = {"out", "run_name", "overwrite", "strict", "notes", "strategy"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    def run_dir(self) -> Path:
        return run_folder(
            self.out, self.recipe, self.part, self.settings(), self.seed, self.run_name
        )


def run_folder(
    out: str, recipe: str, parts: str, settings: dict, seed: int, run_name: str | None = None
) -> Path:
    """`out/<recipe>/<parts>/<run>`; the default run name is the seed and a hash of `settings`,
    stable for the same settings, so the same command finds and resumes its run."""
    chosen = parse_parts(parts)
    part_dir = "all" if chosen == PARTS else "+".join(short_name(p) for p in chosen)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return Path(out) / recipe / part_dir / (run_name or f"seed{seed}-{digest[:8]}")


def data_folder(synthetic: bool, data_dir: str | None, parts: str) -> str:
    """The MURA folder: the embedded synthetic set of `parts`, `data_dir` or `$MURA_DATA_DIR`."""
    if synthetic:
        return str(synthetic_dataset(dataclasses.replace(SYNTHETIC_DATA, parts=parse_parts(parts))))
    data_dir = data_dir or os.environ.get("MURA_DATA_DIR")
    if not data_dir:
        raise ConfigError("no data: pass --data-dir (or set MURA_DATA_DIR), or use --synthetic")
    return data_dir


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    metrics: dict
    predictions: pd.DataFrame
    experiment: Experiment
    extra: dict = field(default_factory=dict)


def apply_synthetic_preset(exp: Experiment, explicit: frozenset[str] = frozenset()) -> Experiment:
    """Shrink an experiment to the embedded synthetic set on a CPU, noting every change.

    Settings the user gave explicitly (`explicit` holds their field names) are kept.
    """
    changes: dict = {}
    notes = list(exp.notes)
    if "image_size" not in explicit and exp.image_size > SYNTHETIC_IMAGE_SIZE:
        changes["image_size"] = SYNTHETIC_IMAGE_SIZE
    if "epochs" not in explicit and exp.epochs > SYNTHETIC_MAX_EPOCHS:
        changes["epochs"] = SYNTHETIC_MAX_EPOCHS
    if "weights" not in explicit and exp.weights == "imagenet":
        changes["weights"] = "none"
    weights = changes.get("weights", exp.weights)
    if (
        weights == "none"
        and "learning_rate" not in explicit
        and exp.learning_rate < SYNTHETIC_MIN_LR
    ):
        changes["learning_rate"] = SYNTHETIC_MIN_LR
    if (
        weights == "none"
        and exp.freeze_backbone
        and not exp.intermediate_epochs
        and "freeze_backbone" not in explicit
    ):
        # A frozen random backbone gives features of scale ~0.01 that a head barely learns from;
        # with ImageNet weights (--weights imagenet) the backbone stays frozen as reported.
        changes["freeze_backbone"] = False
    if "batch_size" not in explicit and exp.batch_size > SYNTHETIC_MAX_BATCH:
        # ~170 training images of a part make 5 steps an epoch at batch 32: 40 steps in all,
        # too few for weights (and batch-norm statistics) to move far from random.
        changes["batch_size"] = SYNTHETIC_MAX_BATCH
    if "dev_fraction" not in explicit and exp.dev_fraction < SYNTHETIC_MIN_DEV_FRACTION:
        # 10% of a part's synthetic patients is ~6 patients, ~20 images: a model is selected
        # on noise (seen: dev AUC below 0.5 at every epoch while the test AUC reached 0.9).
        changes["dev_fraction"] = SYNTHETIC_MIN_DEV_FRACTION
    if "monitor" not in explicit and exp.monitor == "val_accuracy":
        # The synthetic dev split has a few dozen images: accuracy ties from the first epoch.
        # The dev loss does not tie, and it scores the probabilities that the 0.5 threshold
        # (and so kappa) acts on, where AUC only scores their order; it is also the MURA
        # paper's criterion.
        changes["monitor"] = "val_loss"
    if "patience" not in explicit and exp.patience:
        # A dev split of a few dozen images swings between epochs, so early stopping would
        # end on a random early dip; train all epochs and hand over the best one.
        changes["patience"] = 0
    if exp.cache is None and "cache" not in explicit:
        changes["cache"] = "memory"
    for name, value in changes.items():
        if name != "cache":
            notes.append(f"synthetic preset: {name} {getattr(exp, name)} -> {value}")
    return dataclasses.replace(exp, notes=tuple(notes), **changes)


def resolve_data_dir(exp: Experiment) -> str:
    """The MURA folder of an experiment (see `data_folder`)."""
    return data_folder(exp.synthetic, exp.data_dir, exp.part)


def _pipeline(exp: Experiment, normalization: str, training: bool) -> PipelineConfig:
    return PipelineConfig(
        image_size=exp.image_size,
        keep_aspect=exp.keep_aspect,
        normalization=normalization,
        augment=AugmentConfig(ops=tuple(exp.augment) if training else ()),
        cache=exp.cache,
    )


def _train_config(exp: Experiment, data: FitData, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(
        epochs=epochs or exp.epochs,
        optimizer=exp.optimizer,
        learning_rate=exp.learning_rate,
        lr_boundaries=tuple(exp.lr_boundaries),
        lr_values=tuple(exp.lr_values),
        monitor=exp.monitor,
        patience=exp.patience,
        reduce_lr_on_plateau=exp.reduce_lr_on_plateau,
        steps_per_epoch=data.steps_per_epoch,
        validation_steps=data.validation_steps,
        jit_compile=exp.jit_compile if exp.jit_compile == "auto" else exp.jit_compile == "true",
    )


@dataclass
class FitData:
    """What `fit` reads: training and dev batches (distributed under a multi-replica strategy),
    their step counts (None: one pass), an undistributed first training batch (its
    fingerprint), the same batch's pixels before normalisation (TensorBoard), and the
    undistributed test batches."""

    train: object
    dev: object
    test: tf.data.Dataset
    steps_per_epoch: int | None
    validation_steps: int | None
    first_batch: np.ndarray
    first_pixels: np.ndarray


def _fit_data(
    exp: Experiment,
    splits: Splits,
    normalization: str,
    strategy: tf.distribute.Strategy,
    target: str = "label",
    class_weight: dict[int, float] | None = None,
) -> FitData:
    train_cfg = _pipeline(exp, normalization, training=True)
    eval_cfg = _pipeline(exp, normalization, training=False)

    def train_batches(batch_size: int, shard: int = 0, shards: int = 1) -> tf.data.Dataset:
        ds = make_dataset(
            splits.train, train_cfg, batch_size=batch_size, training=True, target=target,
            seed=exp.seed, shard=(shard, shards),
        )  # fmt: skip
        if class_weight is not None:  # fit cannot weight classes of distributed batches
            w = tf.constant([class_weight[0], class_weight[1]], tf.float32)
            ds = ds.map(lambda x, y: (x, y, tf.gather(w, tf.cast(y[:, 0], tf.int32))))
        return ds

    def dev_batches(batch_size: int, shard: int = 0, shards: int = 1) -> tf.data.Dataset:
        return make_dataset(
            splits.dev, eval_cfg, batch_size=batch_size, target=target, shard=(shard, shards)
        )

    test = make_dataset(splits.test, eval_cfg, batch_size=exp.eval_batch_size, target=target)
    first_batch = next(iter(train_batches(exp.batch_size).take(1)))[0].numpy()
    # The same draws without normalisation: what a person sees of the augmented films.
    pixels = make_dataset(
        splits.train, _pipeline(exp, "raw", training=True), batch_size=exp.batch_size,
        training=True, target=target, seed=exp.seed,
    )  # fmt: skip
    first_pixels = next(iter(pixels.take(1)))[0].numpy()
    if strategy.num_replicas_in_sync == 1:
        return FitData(
            train_batches(exp.batch_size), dev_batches(exp.eval_batch_size), test,
            exp.max_steps, exp.max_steps, first_batch, first_pixels,
        )  # fmt: skip
    # Every replica must run the same number of steps: each worker repeats its shard and all
    # stop after the same count (about one pass over the data per epoch).
    steps = exp.max_steps or max(1, len(splits.train) // exp.batch_size)
    validation_steps = exp.max_steps or math.ceil(len(splits.dev) / exp.eval_batch_size)
    train = distribute_batches(
        strategy, lambda b, i, n: train_batches(b, i, n).repeat(), exp.batch_size
    )
    dev = distribute_batches(
        strategy, lambda b, i, n: dev_batches(b, i, n).repeat(), exp.eval_batch_size,
        "--eval-batch-size",
    )  # fmt: skip
    return FitData(train, dev, test, steps, validation_steps, first_batch, first_pixels)


def _body_part_stage(
    exp: Experiment,
    splits: Splits,
    backbone: keras.Model,
    normalization: str,
    run_dir: Path,
    strategy: tf.distribute.Strategy,
) -> tuple[keras.layers.Layer, dict]:
    """Report 000 §3.3, first stage: the unfrozen backbone + MLP learns the body part.

    Returns the trained hidden layer of the best dev epoch (kept for the binary stage) and
    the stage's metrics.
    """
    data = _fit_data(exp, splits, normalization, strategy, target="part")
    config = _train_config(exp, data, exp.intermediate_epochs)
    with strategy.scope():
        head = classification_head("mlp", outputs=len(PARTS), name="part_head")
        model = build_classifier(
            backbone, head, exp.image_size, freeze_backbone=False, name="body_part"
        )
        compile_classifier(model, config, task="part")
    result = train(
        model, data.train, data.dev, run_dir / "body_part", config, sample=data.first_pixels
    )
    predicted = model.predict(data.test, verbose=0).argmax(axis=1)
    truth = splits.test["part"].map(PARTS.index).to_numpy()
    stage = {
        "macro_f1": macro_f1(truth, predicted),
        "accuracy": float(np.mean(truth == predicted)),
        "n_images": int(len(truth)),
        "selected_epoch": result.selection(),
    }
    write_json(run_dir / "body_part" / "metrics.json", stage)
    return head.get_layer("hidden"), stage


def run_experiment(exp: Experiment) -> RunResult:
    """Train and evaluate one experiment; see the module docstring for what it writes.

    Under `--strategy multi_worker` every worker trains; worker 0 (the chief) writes the run
    folder, the others keep their checkpoints and backups in `RUN/worker<i>/` and return
    without evaluating (`RunResult.metrics` is empty for them).
    """
    # First: a multi-worker strategy must exist before TensorFlow runs any op.
    strategy = make_strategy(exp.strategy)
    if exp.deterministic:
        tf.config.experimental.enable_op_determinism()
    run_dir = worker_run_dir(exp.run_dir(), strategy)
    with open_run(run_dir, exp.overwrite), disk_errors(run_dir):
        return _run_experiment(exp, strategy, run_dir)


def _run_experiment(exp: Experiment, strategy: tf.distribute.Strategy, run_dir: Path) -> RunResult:
    data_dir = resolve_data_dir(exp)
    frame = load_mura(data_dir, exp.part, strict=exp.strict)
    splits = make_splits(frame, exp.dev_fraction, exp.seed)
    if exp.label_fraction < 1:
        splits = Splits(
            label_fraction(splits.train, exp.label_fraction, exp.seed), splits.dev, splits.test
        )
    if splits.test.empty:
        raise ConfigError(
            f"{data_dir} has no valid split to test on: MURA's valid/ folder (or its "
            f"valid_*.csv files) is missing or holds none of --part {exp.part}"
        )
    spec = backbone_spec(exp.backbone)
    counts = {name: int(len(getattr(splits, name))) for name in ("train", "dev", "test")}
    config = {
        "experiment": exp.settings(),
        "data_dir": str(data_dir),
        "images": counts,
        "normalization": spec.normalization,
        "strategy": describe(exp.strategy, strategy),
        "notes": list(exp.notes),
    }
    write_json(run_dir / "config.json", config)
    write_text(run_dir / "splits.csv", _split_table(splits).to_csv(index=False))

    keras.utils.set_random_seed(exp.seed)
    if exp.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    with strategy.scope():
        backbone = build_backbone(exp.backbone, exp.image_size, exp.weights)
    extra: dict = {}
    hidden = None
    if exp.intermediate_epochs:
        hidden, extra["body_part"] = _body_part_stage(
            exp, splits, backbone, spec.normalization, run_dir, strategy
        )

    weights = mura_class_weights(splits.train["label"]) if exp.class_weights else None
    data = _fit_data(exp, splits, spec.normalization, strategy, class_weight=weights)
    train_config = _train_config(exp, data)
    with strategy.scope():
        head = classification_head(exp.head)
        if hidden is not None:  # keep the body-part stage's hidden layer, replace the output
            head = keras.Sequential(
                [hidden, keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="out")],
                name="head",
            )
        model = build_classifier(backbone, head, exp.image_size, exp.freeze_backbone)
        compile_classifier(model, train_config)
    result = train(model, data.train, data.dev, run_dir, train_config, sample=data.first_pixels)
    save_keras(model, run_dir / "model.keras")
    if num_workers(strategy) > 1:
        if worker_index(strategy):
            finish_run(run_dir)
            return RunResult(run_dir, {}, pd.DataFrame(), exp, extra)
        model = local_copy(model)

    probabilities = model.predict(data.test, verbose=0)[:, 0]
    predictions = splits.test[["path", "part", "patient", "study", "label"]].assign(
        probability=probabilities
    )
    metrics = study_level_metrics(predictions)
    metrics.update(extra)
    metrics["selected_epoch"] = result.selection()
    metrics["first_batch_sha1"] = hashlib.sha1(data.first_batch.tobytes()).hexdigest()
    export_savedmodel(model, spec.normalization, exp.image_size, run_dir / "export")
    write_text(run_dir / "predictions.csv", predictions.to_csv(index=False, float_format="%.7g"))
    write_json(run_dir / "metrics.json", metrics)
    finish_run(run_dir)
    return RunResult(run_dir, metrics, predictions, exp, extra)


def _split_table(splits: Splits) -> pd.DataFrame:
    """`path, split` for every image used: which images trained, selected and tested."""
    return pd.concat(
        [getattr(splits, name)[["path"]].assign(split=name) for name in ("train", "dev", "test")],
        ignore_index=True,
    )
