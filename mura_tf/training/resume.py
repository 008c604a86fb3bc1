"""What a run remembers between epochs, on disk, so that a kill costs at most one epoch.

A run's state is its history (one row of logs per finished epoch) and its weights with the
optimizer's variables after the last finished epoch. Everything else is derived from the
history: the best epoch by the monitored dev metric, the early-stopping counter (epochs since
the best one), whether training is over. Keeping nothing else in memory is what lets a resumed
run select the same epoch and stop at the same epoch as one that was never interrupted.

On disk, in `RUN/backup/`:

    state.json                  {"epochs_done", "stopped", "weights", "history": [rows]}: the commit
    epoch-NNNN.variables.npz    the variables file `state.json` names

Each epoch end writes the new weights file first, then replaces `state.json` (atomic rename), and
only then removes the previous weights file, so at any instant `state.json` names a complete
file: a kill at any moment leaves the resume point of the last finished epoch.

The variables file is NumPy's `.npz`: the values of `saved_variables(model)` in order, with their
shapes. It is written every epoch, and Keras's `save_weights` walks every layer and optimizer
slot into HDF5 at several times the cost (`benchmarks/README.md`, "Time to first result"). The
hand-over files (`best.keras`, `model.keras`) stay Keras's own format.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mura_tf.errors import TrainingError
from mura_tf.files import atomic_path, ensure_free_space, keras_bytes, write_json

STATE = "state.json"
VARIABLES_SUFFIX = ".variables.npz"
# The best epoch's variables in `RUN/checkpoints/` while training; `best.keras` once it is over.
BEST_VARIABLES = "best.variables.npz"
# Resume points of runs started before the `.npz` files; read with Keras's `load_weights`.
KERAS_WEIGHTS_SUFFIX = ".weights.h5"


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


def saved_variables(model) -> list:
    """The variables a resume point (and a `.keras` file) restores that bear on the model: its
    weights, then its optimizer's state."""
    optimizer = getattr(model, "optimizer", None)
    return [*model.weights, *(optimizer.variables if optimizer is not None else [])]


def save_variables(model, path: str | os.PathLike[str]) -> None:
    """Atomically write `saved_variables(model)` to `path` (`.npz`: `v00000`... in order, and
    their `shapes` as JSON)."""
    path = Path(path)
    values = [np.asarray(v.numpy()) for v in saved_variables(model)]
    ensure_free_space(
        path.parent if path.parent.is_dir() else path.parent.parent, keras_bytes(model)
    )
    shapes = json.dumps([list(v.shape) for v in values])
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, shapes=np.array(shapes), **{f"v{i:05d}": v for i, v in enumerate(values)})


def commit(backup_dir: str | os.PathLike[str], model, state: RunState) -> RunState:
    """Save `model`'s weights (and optimizer variables) and commit `state` pointing at them.

    Returns `state` with its `weights` set. Older weights files are removed after the commit.
    """
    backup_dir = Path(backup_dir)
    name = f"epoch-{state.epochs_done:04d}{VARIABLES_SUFFIX}"
    save_variables(model, backup_dir / name)
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
    for old in backup_dir.glob("epoch-*"):
        if old.name != name and old.name.endswith((VARIABLES_SUFFIX, KERAS_WEIGHTS_SUFFIX)):
            old.unlink(missing_ok=True)
    return committed


def restore(
    model, path: str | os.PathLike[str], start_over: str | os.PathLike[str] | None = None
) -> None:
    """Give `model` (its optimizer built) the weights and optimizer state in `path`, as
    `save_variables` wrote them (or a Keras `.weights.h5` resume point of an older run).

    Args:
        start_over: the folder whose deletion trains the run again from the start, named by
            the error if `path` cannot be read (default: the folder of `path`).
    """
    path = Path(path)
    start_over = Path(start_over) if start_over is not None else path.parent
    if path.name.endswith(KERAS_WEIGHTS_SUFFIX):
        model.load_weights(path)
        return
    variables = saved_variables(model)
    try:
        with np.load(path) as data:
            saved = [tuple(s) for s in json.loads(str(data["shapes"]))]
            wanted = [tuple(v.shape) for v in variables]
            if saved != wanted:
                pairs = enumerate(zip(saved, wanted, strict=False))
                i = next((i for i, (a, b) in pairs if a != b), None)
                differ = (
                    f"variable {i} is {saved[i]} there and {wanted[i]} here"
                    if i is not None
                    else f"{len(saved)} variables there, {len(wanted)} here"
                )
                raise TrainingError(
                    f"cannot resume from {path}: another model wrote it ({differ}); delete "
                    f"{start_over} to train from the start"
                )
            for i, variable in enumerate(variables):
                variable.assign(data[f"v{i:05d}"])
    except (OSError, ValueError, KeyError) as e:
        raise TrainingError(
            f"cannot resume from {path}: {e}; delete {start_over} to train from the start"
        ) from None
