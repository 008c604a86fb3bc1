"""Keras callbacks the shared trainer adds to `fit`.

Keras' own `ModelCheckpoint` and `CSVLogger` write in place, so a kill mid-write leaves a
broken file, and `CSVLogger` repeats epochs after `BackupAndRestore` resumes a run. These two
write atomically and key the history by epoch.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mura_tf.io import save_keras, write_text


class BestModelCheckpoint(keras.callbacks.Callback):
    """Save the whole model to `path` (`.keras`) whenever `monitor` improves; atomic."""

    def __init__(
        self, path: str | os.PathLike[str], monitor: str = "val_accuracy", mode: str = "max"
    ):
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.better = np.greater if mode == "max" else np.less
        self.best = -math.inf if mode == "max" else math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not self.better(value, self.best):
            return
        self.best = float(value)
        save_keras(self.model, self.path)


class EpochHistoryCSV(keras.callbacks.Callback):
    """`history.csv` with one row per epoch, rewritten atomically at each epoch end.

    Rows of epochs at or after the current one are dropped first, so an epoch that is run again
    after a resume replaces its row instead of adding a second one.
    """

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        rows = []
        if self.path.exists():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < epoch]
        row = {"epoch": epoch}
        row.update({k: float(v) for k, v in sorted((logs or {}).items())})
        if "learning_rate" not in row and self.model.optimizer is not None:
            row["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )
        rows.append(row)
        fields = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, buf.getvalue())


class TrainingImages(keras.callbacks.Callback):
    """Log a few augmented training images to TensorBoard once, at the start of training.

    Args:
        images: float `[N, S, S, 3]` as fed to the model (normalised).
        log_dir: the TensorBoard folder (images go to its `train/` writer).
        normalization: how `images` were normalised, to show them in natural contrast.
    """

    def __init__(self, images, log_dir: str | os.PathLike[str]):
        super().__init__()
        self.images = images
        self.log_dir = str(Path(log_dir) / "train")

    def on_train_begin(self, logs=None):
        x = tf.convert_to_tensor(self.images, tf.float32)
        lo = tf.reduce_min(x, axis=[1, 2, 3], keepdims=True)
        hi = tf.reduce_max(x, axis=[1, 2, 3], keepdims=True)
        shown = (x - lo) / tf.maximum(hi - lo, 1e-6)  # per-image min-max, whatever the scaling
        writer = tf.summary.create_file_writer(self.log_dir)
        with writer.as_default():
            tf.summary.image(
                "augmented_training_images", shown, step=0, max_outputs=len(self.images)
            )
        writer.flush()
