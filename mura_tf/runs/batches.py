"""What a supervised run feeds `fit`: its images prepared as its settings say, the trainer's
settings, and the training, dev and test batches, distributed where there are several
replicas (`fit_data`). The supervised run, its body-part stage and the part router share them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from mura_tf.data.augment_settings import AugmentConfig
from mura_tf.data.fracatlas import Outline
from mura_tf.data.masks import outline_masks
from mura_tf.data.pipeline import PipelineConfig, make_dataset
from mura_tf.data.splits import Splits
from mura_tf.runs.experiment import Experiment
from mura_tf.training.distribute import distribute_batches
from mura_tf.training.train import TrainConfig, mura_class_weights, mura_part_class_weights


def pipeline_config(exp: Experiment, normalization: str, training: bool) -> PipelineConfig:
    """How `exp` prepares its images: with its augmentations for training, without them for
    evaluation (the dev and test passes, and any other scoring of the run's films)."""
    return PipelineConfig(
        image_size=exp.image_size,
        keep_aspect=exp.keep_aspect,
        normalization=normalization,
        augment=AugmentConfig(
            ops=tuple(exp.augment) if training else (), rotation_degrees=exp.rotation_degrees
        ),
        cache=exp.cache,
    )


def train_config(
    exp: Experiment, data: FitData, epochs: int | None = None, task: str = "binary"
) -> TrainConfig:
    """The trainer's settings for `exp` on `data`; for the body-part `task`, which has no AUC,
    a run that selects by dev AUROC selects by dev accuracy (report 000's rule)."""
    monitor = exp.monitor
    if task == "part" and monitor == "val_auc":
        monitor = "val_accuracy"
    return TrainConfig(
        epochs=epochs or exp.epochs,
        optimizer=exp.optimizer,
        learning_rate=exp.learning_rate,
        lr_boundaries=tuple(exp.lr_boundaries),
        lr_values=tuple(exp.lr_values),
        monitor=monitor,
        patience=exp.patience,
        reduce_lr_on_plateau=exp.reduce_lr_on_plateau,
        steps_per_epoch=data.steps_per_epoch,
        validation_steps=data.validation_steps,
        jit_compile=exp.jit_compile if exp.jit_compile == "auto" else exp.jit_compile == "true",
        ema_momentum=exp.ema,
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


def fit_data(
    exp: Experiment,
    splits: Splits,
    normalization: str,
    strategy: tf.distribute.Strategy,
    target: str = "label",
    class_weight: np.ndarray | None = None,
    masks: tuple[np.ndarray, np.ndarray] | None = None,
) -> FitData:
    train_cfg = pipeline_config(exp, normalization, training=True)
    eval_cfg = pipeline_config(exp, normalization, training=False)

    def train_batches(batch_size: int, shard: int = 0, shards: int = 1) -> tf.data.Dataset:
        ds = make_dataset(
            splits.train, train_cfg, batch_size=batch_size, training=True, target=target,
            seed=exp.seed, shard=(shard, shards), with_meta=class_weight is not None, masks=masks,
        )  # fmt: skip
        if class_weight is not None:  # fit cannot weight classes of distributed batches
            table = tf.constant(class_weight, tf.float32)  # [parts, 2]: (w_normal, w_abnormal)

            def weigh(x, y, meta):
                index = tf.stack([meta["part"], tf.cast(y[:, 0], tf.int32)], axis=-1)
                return x, y, tf.gather_nd(table, index)

            ds = ds.map(weigh)
        return ds

    def dev_batches(batch_size: int, shard: int = 0, shards: int = 1) -> tf.data.Dataset:
        return make_dataset(
            splits.dev, eval_cfg, batch_size=batch_size, target=target, shard=(shard, shards)
        )

    test = make_dataset(splits.test, eval_cfg, batch_size=exp.eval_batch_size, target=target)
    first_batch = next(iter(train_batches(exp.batch_size).take(1)))[0]
    first_batch = (first_batch["image"] if masks is not None else first_batch).numpy()
    # The same draws without normalisation: what a person sees of the augmented films.
    pixels = make_dataset(
        splits.train, pipeline_config(exp, "raw", training=True), batch_size=exp.batch_size,
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


def class_weight_table(exp: Experiment, train: pd.DataFrame) -> np.ndarray | None:
    """float32 `[P, 2]` (w_normal, w_abnormal) per part of the dataset: the MURA paper's
    weighting per part (`--class-weights-by-part`) or one for all (`--class-weights`); None
    for neither."""
    if exp.class_weights_by_part:
        return mura_part_class_weights(train)
    if exp.class_weights:
        overall = mura_class_weights(train["label"])
        return np.tile([[overall[0], overall[1]]], (len(exp.data_info.parts), 1))
    return None


def training_masks(
    exp: Experiment, outlines: dict[str, Outline], train: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray] | None:
    """The training films' outline masks for `--outline-weight` (`data.masks.outline_masks`)
    from the run's `outlines` (`PreparedData.outlines`, checked there), None without it."""
    if not exp.outline_weight:
        return None
    return outline_masks(
        train["path"].tolist(), train["label"].tolist(), outlines, exp.image_size, exp.keep_aspect
    )
