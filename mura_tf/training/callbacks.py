"""Keras callbacks the shared trainer adds to `fit`.

`RunCheckpoint` replaces four Keras callbacks that keep their state in memory or write in
place (`BackupAndRestore`, `ModelCheckpoint`, `EarlyStopping`, `CSVLogger`): after a kill and a
resume those start again from scratch (a worse epoch overwrites the best checkpoint, patience
counts from zero, the history repeats epochs), and a kill during their writes leaves a broken
file. Here one callback derives all of it from the run's history (`training.resume`), which it
commits atomically with the weights at every epoch end.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mura_tf.errors import TrainingError
from mura_tf.files import DiskError, save_keras, write_json, write_text
from mura_tf.models.outline_guided import guided_part
from mura_tf.training.resume import (
    BEST_VARIABLES,
    RunState,
    Selection,
    commit,
    restore,
    save_variables,
    weights_path,
)


def history_csv(rows: list[dict]) -> str:
    """`rows` (one dict of logs per epoch) as CSV text with the union of their columns."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class RunCheckpoint(keras.callbacks.Callback):
    """A run's history, best epoch, early stopping and resume point, kept on disk.

    At each epoch end, in this order: the epoch's logs join the history; early stopping is
    decided from the history (epochs since the best one >= `patience`, 0: never); the weights
    and the history are committed to `RUN/backup/` (`training.resume.commit`); `history.csv` is
    rewritten; and if the epoch is the best so far, its variables are saved as
    `checkpoints/best.variables.npz` (the resume point's format), then `checkpoints/best.json`
    (`{"epoch": 1-based, "monitor", "value"}`) saying which epoch they hold. A kill between the
    commit and `best.json` is repaired on resume, when the model holds exactly that last
    committed epoch. `restore_best` gives the model that epoch back (its moving average of the
    weights, where the optimizer keeps one) and writes it as `checkpoints/best.keras`, once,
    when training is over: a DenseNet169 `.keras` file takes seconds to write, and the best
    epoch changes many times in a run.

    Args:
        run_dir: the run folder.
        selection: the dev metric that picks the best epoch.
        patience: early-stopping patience in epochs; 0 trains every epoch.
        state: the committed state to resume from (`mura_tf.training.resume.load_state`).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        selection: Selection,
        patience: int = 0,
        state: RunState | None = None,
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.backup_dir = self.run_dir / "backup"
        self.best_path = self.run_dir / "checkpoints" / "best.keras"
        self.best_variables = self.run_dir / "checkpoints" / BEST_VARIABLES
        self.best_info = self.run_dir / "checkpoints" / "best.json"
        self.selection = selection
        self.patience = patience
        self.state = state or RunState()

    def on_train_begin(self, logs=None):
        path = weights_path(self.backup_dir, self.state)
        if path is None:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)  # so its variables load too
        restore(self.model, path)
        self._write_outputs()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if not self.run_dir.is_dir():  # writing on would recreate a folder missing its parts
            raise DiskError(
                f"the run folder {self.run_dir} vanished during training (deleted, or its disk "
                "went away); bring it back to resume, or run the same command again to start over"
            )
        if not math.isfinite(float(logs.get("loss", 0.0))):
            return  # TerminateOnNaN stops the run; the last committed epoch stays the resume point
        row = {"epoch": epoch}
        row.update({k: float(v) for k, v in sorted(logs.items())})
        if "learning_rate" not in row and self.model.optimizer is not None:
            row["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )
        history = (*self.state.history[:epoch], row)
        best = self.selection.best(list(history))
        stopped = bool(self.patience) and best is not None and epoch - best[0] >= self.patience
        self.state = commit(self.backup_dir, self.model, RunState(epoch + 1, history, stopped))
        if stopped:
            self.model.stop_training = True
        self._write_outputs()

    def _write_outputs(self) -> None:
        """`history.csv` and the best checkpoint, brought up to the committed state."""
        rows = list(self.state.history)
        write_text(self.run_dir / "history.csv", history_csv(rows))
        best = self.selection.best(rows)
        if best is None or best_epoch_on_disk(self.run_dir) == best[0] + 1:
            return
        if best[0] != self.state.epochs_done - 1:
            raise TrainingError(
                f"{self.best_path} does not hold the best epoch ({best[0] + 1}) of the run; "
                f"delete {self.backup_dir} to train again from the start"
            )
        save_variables(self.model, self.best_variables)
        write_json(
            self.best_info,
            {"epoch": best[0] + 1, "monitor": self.selection.monitor, "value": best[1]},
        )

    def restore_best(self) -> None:
        """Give the model the weights and optimizer state of the best epoch, and write them as
        `checkpoints/best.keras`.

        From `best.variables.npz`, or from `best.keras` for a run folder written before the
        `.npz` files.
        """
        if not self.best_variables.is_file():
            self.model.load_weights(self.best_path)
            return
        # Training is over: deleting checkpoints/ alone would resume to the end and find no
        # best epoch, so the way back is the whole run.
        restore(self.model, self.best_variables, start_over=self.run_dir)
        optimizer = self.model.optimizer
        if getattr(optimizer, "use_ema", False):
            # The epoch was chosen by its averaged weights (`SwapEMAWeights` in the dev pass);
            # the optimizer holds them: they are what is handed over.
            optimizer.finalize_variable_values(self.model.trainable_variables)
        save_keras(guided_part(self.model), self.best_path)


def best_epoch_on_disk(run_dir: str | os.PathLike[str]) -> int | None:
    """The 1-based epoch that `RUN/checkpoints/best.variables.npz` holds, or None."""
    info = Path(run_dir) / "checkpoints" / "best.json"
    try:
        return int(json.loads(info.read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return None


class TrainingImages(keras.callbacks.Callback):
    """Log a few augmented training images to TensorBoard once, at the start of training.

    Args:
        images: `[N, S, S, 3]` pixels 0-255 as a person sees the film: augmented, not yet
            normalised for the backbone.
        log_dir: the TensorBoard folder (images go to its `train/` writer).
    """

    def __init__(self, images, log_dir: str | os.PathLike[str]):
        super().__init__()
        self.images = np.asarray(images)
        self.log_dir = str(Path(log_dir) / "train")

    def on_train_begin(self, logs=None):
        shown = tf.clip_by_value(tf.convert_to_tensor(self.images, tf.float32) / 255.0, 0.0, 1.0)
        writer = tf.summary.create_file_writer(self.log_dir)
        with writer.as_default():
            tf.summary.image(
                "augmented_training_images", shown, step=0, max_outputs=len(self.images)
            )
        writer.flush()
