"""The shared trainer: one function over `model.fit` that every recipe uses."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from mura_tf.compat.epoch_iterators import replay_epochs
from mura_tf.compat.fused_adam import fuse_adam
from mura_tf.compat.fused_batch_norm import follow_training_steps
from mura_tf.data.datasets import dataset_of_parts
from mura_tf.errors import ConfigError, FieldError, TrainingError
from mura_tf.training.callbacks import RunCheckpoint, TrainingImages
from mura_tf.training.optimizers import LARS
from mura_tf.training.resume import Selection, load_state

OPTIMIZERS = ("adam", "sgd", "adamw", "lars")


@dataclass(frozen=True)
class TrainConfig:
    """How `fit` runs.

    `lr_boundaries`/`lr_values` give a piecewise-constant schedule: `lr_values[0]` for the first
    `lr_boundaries[0]` optimizer steps, and so on (report 000 §3.4: `(1000,)`, `(0.01, 0.001)`
    is 0.01 for 1000 steps, then 0.001). Empty means a constant `learning_rate`.
    """

    epochs: int = 10
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_boundaries: tuple[int, ...] = ()
    lr_values: tuple[float, ...] = ()
    monitor: str = "val_accuracy"
    patience: int = 4  # early stopping; 0 turns it off
    reduce_lr_on_plateau: bool = False
    steps_per_epoch: int | None = None  # cap for smoke runs; the training data then repeats
    validation_steps: int | None = None
    jit_compile: bool | str = "auto"
    # Polyak averaging of the weights (`keras.optimizers.Optimizer(use_ema=True)`): dev is
    # scored, the epoch chosen and handed over with the average; 0 turns it off.
    ema_momentum: float = 0.0
    tensorboard_images: int = 8
    verbose: int | str = "auto"

    def __post_init__(self) -> None:
        # The one check of these settings: a run config passes its own through here
        # (`RunConfig.TRAINER_FIELDS`), and words the errors with its field names.
        if self.epochs < 1:
            raise FieldError("epochs", f"must be at least 1, got {self.epochs}")
        if self.optimizer not in OPTIMIZERS:
            raise FieldError(
                "optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if not self.learning_rate > 0:
            raise FieldError("learning_rate", f"must be positive, got {self.learning_rate}")
        if self.lr_boundaries and len(self.lr_values) != len(self.lr_boundaries) + 1:
            raise FieldError("lr_values", "of a piecewise schedule: one more than lr_boundaries")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise FieldError("steps_per_epoch", f"must be at least 1, got {self.steps_per_epoch}")
        if self.patience < 0:
            raise FieldError("patience", f"must be 0 or more, got {self.patience}")
        if not 0 <= self.ema_momentum < 1:
            raise FieldError("ema_momentum", f"must be in [0, 1), got {self.ema_momentum}")


def learning_rate(config: TrainConfig) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """A constant rate, or the piecewise-constant schedule the config describes."""
    if not config.lr_boundaries:
        return config.learning_rate
    # PiecewiseConstantDecay keeps values[0] while step <= boundary; steps count from 0, so
    # "N steps at the first rate" is the boundary N - 1.
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [b - 1 for b in config.lr_boundaries], list(config.lr_values)
    )


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam (the reports' choice), AdamW, SGD with momentum 0.9, or LARS (SimCLR); Adam's
    updates on TensorFlow's fused kernel (`mura_tf.compat.fused_adam`); keeping a moving
    average of the weights where `config.ema_momentum` asks for one."""
    lr = learning_rate(config)
    ema = {"use_ema": True, "ema_momentum": config.ema_momentum} if config.ema_momentum else {}
    if config.optimizer == "adam":
        return fuse_adam(keras.optimizers.Adam(lr, **ema))
    if config.optimizer == "adamw":
        return fuse_adam(keras.optimizers.AdamW(lr, **ema))
    if config.optimizer == "lars":
        return LARS(lr, momentum=0.9, weight_decay=0.0, **ema)  # SimCLR tunes without decay
    return keras.optimizers.SGD(lr, momentum=0.9, **ema)


def mura_class_weights(labels) -> dict[int, float]:
    """The MURA paper's weighting: w_abnormal = |N| / (|A| + |N|), w_normal = |A| / (|A| + |N|).

    Args:
        labels: `[N]` 0/1 training labels.
    """
    y = np.asarray(labels).astype(int).ravel()
    abnormal, total = int(y.sum()), len(y)
    if total == 0 or abnormal in (0, total):
        raise ConfigError("class weights need both normal and abnormal training images")
    return {0: abnormal / total, 1: (total - abnormal) / total}


def mura_part_class_weights(train: pd.DataFrame) -> np.ndarray:
    """The MURA paper's weighting per body part, from each part's training studies.

    Args:
        train: training images with `part`, `study` and `label`.
    Returns:
        float32 `[P, 2]` over the dataset's parts (`DatasetInfo.parts`): row `parts.index(part)`
        is (w_normal, w_abnormal) =
        (|A| / (|A| + |N|), |N| / (|A| + |N|)) over that part's studies; 1 for absent parts.
    Raises:
        ConfigError: a part holds studies of one label only.
    """
    dataset = dataset_of_parts(train["part"].unique())
    parts = dataset.parts
    table = np.ones((len(parts), 2), np.float32)
    studies = train.drop_duplicates("study")
    for part, group in studies.groupby("part"):
        abnormal, total = int(group["label"].sum()), len(group)
        if abnormal in (0, total):
            raise ConfigError(
                f"cannot weight {part} by class: its training studies are all "
                f"{dataset.positive if abnormal else dataset.negative}"
            )
        table[parts.index(part)] = (abnormal / total, (total - abnormal) / total)
    return table


def compile_classifier(
    model: keras.Model, config: TrainConfig, task: str = "binary"
) -> keras.Model:
    """Compile with the task's loss and the reports' metrics.

    `binary`: binary cross-entropy on sigmoid outputs; accuracy, precision, recall, AUC.
    `part`: sparse categorical cross-entropy on the 7-way softmax; accuracy.
    """
    if task == "binary":
        loss = keras.losses.BinaryCrossentropy()
        metrics = [
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
            keras.metrics.AUC(name="auc"),
        ]
    elif task == "part":
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    else:
        raise ConfigError(f"unknown task {task!r}")
    model.compile(make_optimizer(config), loss, metrics=metrics, jit_compile=config.jit_compile)
    return model


def make_callbacks(
    run_dir: Path,
    config: TrainConfig,
    checkpoint: RunCheckpoint,
    sample_images=None,
    probes: Sequence[keras.callbacks.Callback] = (),
) -> list[keras.callbacks.Callback]:
    """`probes` (callbacks that add dev scores to an epoch's logs), the run's checkpoint
    (history, best epoch, early stopping, resume point), TerminateOnNaN, TensorBoard, and
    ReduceLROnPlateau when asked; with `config.ema_momentum`, `SwapEMAWeights` first, so that
    the dev pass scores the averaged weights (the training weights are back before the
    checkpoint commits them with the average, which the optimizer holds)."""
    swap = [keras.callbacks.SwapEMAWeights()] if config.ema_momentum else []
    callbacks: list[keras.callbacks.Callback] = [
        *swap,
        # Probes first, so that what they add to the logs reaches history.csv and TensorBoard;
        # they do nothing before an epoch ends, so the checkpoint still restores a resumed
        # run's weights before anything looks at them.
        *probes,
        checkpoint,
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False),
    ]
    if config.reduce_lr_on_plateau:
        mode = checkpoint.selection.mode
        callbacks.append(keras.callbacks.ReduceLROnPlateau(config.monitor, mode=mode, patience=2))
    if sample_images is not None and config.tensorboard_images and len(sample_images.shape) == 4:
        callbacks.append(
            TrainingImages(sample_images[: config.tensorboard_images], run_dir / "logs")
        )
    return callbacks


@dataclass(frozen=True)
class TrainResult:
    """What `train` hands back besides the model (which then holds the selected epoch).

    `history`: one dict of logs per finished epoch (the whole run, resumed or not);
    `selected_epoch`: the 1-based epoch whose weights the model holds, chosen by `monitor` on
    the dev data, whose value there was `selected_value`; `stopped_early`: early stopping ended
    training before the last epoch.
    """

    history: tuple[dict, ...]
    monitor: str
    selected_epoch: int
    selected_value: float
    stopped_early: bool

    def selection(self) -> dict:
        """The `metrics.json` record of which epoch was handed over."""
        return {
            "epoch": self.selected_epoch,
            "epoch_base": 1,
            "monitor": self.monitor,
            "value": self.selected_value,
            "epochs_run": len(self.history),
            "stopped_early": self.stopped_early,
        }


def train(
    model: keras.Model,
    train_data: tf.data.Dataset,
    dev_data: tf.data.Dataset,
    run_dir: str | os.PathLike[str],
    config: TrainConfig,
    *,
    class_weight: dict[int, float] | None = None,
    sample: np.ndarray | None = None,
    probes: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Fit a compiled `model` with the project's callbacks and leave it at its best epoch.

    Writes `history.csv`, `logs/` (TensorBoard: scalars, learning rate, augmented training
    images), `checkpoints/best.keras` with `checkpoints/best.json` (the best dev epoch by
    `config.monitor`; `best.variables.npz` keeps it while training) and `backup/` (the resume
    point). The caller removes `backup/` and `best.variables.npz` once everything the run hands
    over is written (`mura_tf.runs.folder.finish_run`). A run whose `backup/` exists resumes
    from it; one whose `backup/` says training is over only reloads its best epoch.

    Whatever ended training (early stopping, the last epoch, a resume), `model` returns holding
    the weights of the best dev epoch, those `checkpoints/best.keras` holds
    (`RunCheckpoint.restore_best`). The moving statistics of its batch norms average over no
    more steps than it has trained (`mura_tf.compat.fused_batch_norm.follow_training_steps`).

    Args:
        train_data: batches `(images [B, S, S, 3], targets[, sample weights])`, shuffled and
            augmented; a `tf.data.Dataset`, or a distributed dataset that repeats (then
            `config.steps_per_epoch` and `config.validation_steps` are required).
        dev_data: batches for model selection, never augmented.
        sample: pixels 0-255 `[N, S, S, 3]`, augmented but not normalised, shown in
            TensorBoard.
        probes: callbacks that add dev scores to each epoch's logs
            (`mura_tf.training.probe.KnnProbe`); they are recorded with the rest, but never
            select the epoch.
    Raises:
        TrainingError: the loss became NaN, or no epoch gave a finite dev value to select by.
    """
    run_dir = Path(run_dir)
    selection = Selection(config.monitor)
    optimizer = model.optimizer
    if optimizer is not None and not optimizer.built:
        # Built here rather than by Keras inside the first traced step: a tf.function that
        # creates variables is traced twice, and a DenseNet169 step is slow to trace
        # (benchmarks/README.md, "Time to first result"). The same variables either way.
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)
    checkpoint = RunCheckpoint(run_dir, selection, config.patience, load_state(run_dir / "backup"))
    follow_training_steps(model, model.optimizer.iterations)
    state = checkpoint.state
    if state.stopped or state.epochs_done >= config.epochs:
        # Training is over; a kill came during what follows it. Bring the outputs up to date.
        checkpoint.set_model(model)
        with model.distribute_strategy.scope():
            checkpoint.on_train_begin()
    else:
        if isinstance(train_data, tf.data.Dataset):
            # A resumed run goes on with the batches its uninterrupted self would have drawn.
            if config.steps_per_epoch:
                train_data = train_data.repeat()
            if state.epochs_done and config.steps_per_epoch:
                train_data = train_data.skip(state.epochs_done * config.steps_per_epoch)
            elif state.epochs_done:
                replay_epochs(train_data, state.epochs_done)
        elif not (config.steps_per_epoch and config.validation_steps):
            raise ConfigError(
                "distributed training data needs steps_per_epoch and validation_steps"
            )
        history = model.fit(
            train_data,
            validation_data=dev_data,
            epochs=config.epochs,
            initial_epoch=state.epochs_done,
            steps_per_epoch=config.steps_per_epoch,
            validation_steps=config.validation_steps,
            class_weight=class_weight,
            shuffle=False,  # the tf.data pipeline shuffles (seeded); Keras cannot shuffle it
            callbacks=make_callbacks(run_dir, config, checkpoint, sample, probes),
            verbose=config.verbose,
        )
        if model.stop_training and any(
            not np.isfinite(v) for v in history.history.get("loss", [0.0])[-1:]
        ):
            raise TrainingError(
                f"training stopped: the loss became NaN (lower --lr?); the best epoch before "
                f"it is in {run_dir / 'checkpoints'}"
            )
    state = checkpoint.state
    best = selection.best(list(state.history))
    if best is None:
        raise TrainingError(
            f"no epoch gave a finite dev {config.monitor} to select a model by; "
            f"see {run_dir / 'history.csv'}"
        )
    checkpoint.restore_best()
    return TrainResult(
        history=state.history,
        monitor=config.monitor,
        selected_epoch=best[0] + 1,
        selected_value=best[1],
        stopped_early=state.stopped and state.epochs_done < config.epochs,
    )
