"""What a run remembers between epochs, on disk, so that a kill costs at most one epoch.

A run's state is its history (one row of logs per finished epoch) and its weights with the
optimizer's variables after the last finished epoch. Everything else is derived from the
history: the best epoch by the monitored dev metric, the early-stopping counter (epochs since
the best one), whether training is over. Keeping nothing else in memory is what lets a resumed
run select the same epoch and stop at the same epoch as one that was never interrupted.

On disk, in `RUN/backup/`:

    state.json              {"epochs_done", "stopped", "weights", "history": [rows]}: the commit
    epoch-NNNN.weights.h5   the weights file `state.json` names

Each epoch end writes the new weights file first, then replaces `state.json` (atomic rename), and
only then removes the previous weights file, so at any instant `state.json` names a complete
file: a kill at any moment leaves the resume point of the last finished epoch.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from mura_tf.errors import TrainingError
from mura_tf.io import atomic_path, ensure_free_space, keras_bytes, write_json

STATE = "state.json"


@dataclass(frozen=True)
class Selection:
    """How the best epoch is chosen: the dev metric `monitor`, lower is better for losses."""

    monitor: str = "val_accuracy"

    @property
    def mode(self) -> str:
        return "min" if "loss" in self.monitor else "max"

    def best(self, rows: list[dict]) -> tuple[int, float] | None:
        """`(index, value)` of the best row (the first one on ties), or None without values."""
        best: tuple[int, float] | None = None
        for i, row in enumerate(rows):
            value = row.get(self.monitor)
            if value is None or not math.isfinite(value):
                continue
            if best is None or (value < best[1] if self.mode == "min" else value > best[1]):
                best = (i, float(value))
        return best


@dataclass(frozen=True)
class RunState:
    """A run's progress after `epochs_done` finished epochs.

    `history` holds one dict of logs per finished epoch, in order; `stopped` is true once early
    stopping has ended training; `weights` names the weights file in the backup folder.
    """

    epochs_done: int = 0
    history: tuple[dict, ...] = ()
    stopped: bool = False
    weights: str | None = None


def load_state(backup_dir: str | os.PathLike[str]) -> RunState | None:
    """The committed state in `backup_dir`, or None when there is none to resume from."""
    path = Path(backup_dir) / STATE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        state = RunState(
            epochs_done=int(data["epochs_done"]),
            history=tuple(data["history"]),
            stopped=bool(data["stopped"]),
            weights=data["weights"],
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainingError(
            f"cannot resume from {path}: {e}; delete {path.parent} to train from the start"
        ) from None
    if state.weights and not (path.parent / state.weights).is_file():
        raise TrainingError(
            f"cannot resume from {path}: {state.weights} is missing; delete {path.parent} "
            "to train from the start"
        )
    return state


def weights_path(backup_dir: str | os.PathLike[str], state: RunState) -> Path | None:
    return None if not state.weights else Path(backup_dir) / state.weights


def commit(backup_dir: str | os.PathLike[str], model, state: RunState) -> RunState:
    """Save `model`'s weights (and optimizer variables) and commit `state` pointing at them.

    Returns `state` with its `weights` set. Older weights files are removed after the commit.
    """
    backup_dir = Path(backup_dir)
    name = f"epoch-{state.epochs_done:04d}.weights.h5"
    ensure_free_space(backup_dir if backup_dir.is_dir() else backup_dir.parent, keras_bytes(model))
    with atomic_path(backup_dir / name) as tmp:
        keras_tmp = tmp.with_name(tmp.name + ".weights.h5")  # Keras insists on the suffix
        try:
            model.save_weights(keras_tmp)
            os.replace(keras_tmp, tmp)
        finally:
            if keras_tmp.exists():
                keras_tmp.unlink()
    committed = RunState(state.epochs_done, state.history, state.stopped, name)
    write_json(
        backup_dir / STATE,
        {
            "epochs_done": committed.epochs_done,
            "stopped": committed.stopped,
            "weights": committed.weights,
            "history": list(committed.history),
        },
    )
    for old in backup_dir.glob("epoch-*.weights.h5"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return committed
