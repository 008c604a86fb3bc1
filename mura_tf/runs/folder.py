"""A run folder's life: held by one process, set aside on `--overwrite`, cleaned, finished.

`run_context` is the door every run goes through (its strategy, then `open_run`); `open_run`:

- **One process per folder.** It holds an exclusive lock (`flock`) on `.<run>.lock` beside
  the folder for as long as the run lasts. A second process stops at once with one line naming
  the folder and the process holding it; the kernel drops the lock of a killed process, so a
  stale lock is simply taken over.
- **`--overwrite` never mixes two runs.** A finished run is renamed to `.<run>.replaced`
  before anything new is written, and deleted only when the new run finishes (`finish_run`);
  an interrupted overwrite leaves an unfinished new run (the same command resumes it) and the
  old run set aside, never a folder whose parts come from both.
- **What a killed process left is removed**: temporary files and folders (`.NAME.*tmp*`) of
  its atomic writes.

`finish_run`, called once `metrics.json` (which marks a finished run) is written, removes the
resume points (`backup/`) and the set-aside run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mura_tf.errors import ConfigError
from mura_tf.files import disk_errors, exclusive_lock
from mura_tf.training.resume import BEST_VARIABLES

if TYPE_CHECKING:
    from mura_tf.runs.settings import RunConfig

FINISHED_MARK = "metrics.json"
WORKER_FOLDER = re.compile(r"worker\d+")  # mura_tf.training.distribute.worker_run_dir


def lock_path(run_dir: Path) -> Path:
    return run_dir.with_name(f".{run_dir.name}.lock")


def set_aside_path(run_dir: Path) -> Path:
    return run_dir.with_name(f".{run_dir.name}.replaced")


def is_finished(run_dir: str | os.PathLike[str]) -> bool:
    return (Path(run_dir) / FINISHED_MARK).is_file()


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete what interrupted atomic writes left under `folder`; returns what was removed.

    Atomic writes (`mura_tf.files`, `mura_tf.serving.export`, `mura_tf.training.resume`) name their
    temporaries `.NAME.<random>.tmp…` or `.NAME.tmp-<random>` (and a replaced export
    `.NAME.old-<pid>`), so nothing else matches.
    """
    removed = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.rglob(".*"), key=lambda p: len(p.parts)):
        if any(WORKER_FOLDER.fullmatch(part) for part in path.relative_to(folder).parts):
            continue  # another worker's folder: that live process cleans its own
        temporary = ".tmp" in path.name or ".old-" in path.name
        if not (temporary and path.name.startswith(".")) or not path.exists():
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextlib.contextmanager
def open_run(run_dir: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Hold `run_dir` for this process while the block runs (see the module docstring).

    Raises:
        InUseError: another live process holds it.
        ConfigError: it holds a finished run and `overwrite` is false, or it cannot be created.
    """
    run_dir = Path(run_dir)
    with exclusive_lock(lock_path(run_dir), f"the run folder {run_dir}"):
        aside = set_aside_path(run_dir)
        if is_finished(run_dir):
            if not overwrite:
                raise ConfigError(
                    f"{run_dir} already holds a finished run: "
                    "pass --overwrite to train again, or --run NAME"
                )
            if aside.exists():  # the run set aside earlier was already replaced by this one
                shutil.rmtree(aside)
            run_dir.rename(aside)
        remove_temporaries(run_dir)
        created = not run_dir.exists()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"cannot create {run_dir}: {e.strerror}; choose a writable --out"
            ) from None
        try:
            yield run_dir
        except BaseException:
            # A run refused before it wrote anything (a setting its films cannot serve) leaves
            # no folder for `ls` to show as a run.
            if created and run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()
            raise


def finish_run(run_dir: str | os.PathLike[str]) -> None:
    """Remove the resume points of a run whose outputs are all written (`metrics.json` last),
    the best epoch's training-time copy (`checkpoints/best.keras` holds it now), and the
    earlier run that `--overwrite` set aside.

    Until then they stay, so that a run killed while writing its outputs redoes only those.
    """
    run_dir = Path(run_dir)
    for backup in [run_dir / "backup", *run_dir.glob("*/backup")]:
        shutil.rmtree(backup, ignore_errors=True)
    for stage in [run_dir, *(p.parent for p in run_dir.glob("*/checkpoints"))]:
        (stage / "checkpoints" / BEST_VARIABLES).unlink(missing_ok=True)
    shutil.rmtree(set_aside_path(run_dir), ignore_errors=True)


# --- Opening a run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenRun:
    """A run in progress: its tf.distribute strategy, its folder (a worker's own under
    multi-worker), and this process's worker index (0: the chief, which writes the results)."""

    strategy: Any
    run_dir: Path
    worker: int


@contextlib.contextmanager
def run_context(config: RunConfig) -> Iterator[OpenRun]:
    """Create the strategy, hold the run folder and turn disk errors into one line.

    Raises:
        InUseError: another process runs in the same folder.
        ConfigError: the folder holds a finished run and `config.overwrite` is false.
        DiskError: the disk filled up or turned read-only while the run wrote.
    """
    # TensorFlow only when a run opens: reading run folders (`mura-tf report`) stays free of it.
    import tensorflow as tf

    from mura_tf.training.distribute import make_strategy, worker_index, worker_run_dir

    # First: a multi-worker strategy must exist before TensorFlow runs any op.
    strategy = make_strategy(config.strategy)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    run_dir = worker_run_dir(config.run_dir(), strategy)
    with open_run(run_dir, config.overwrite), disk_errors(run_dir):
        yield OpenRun(strategy, run_dir, worker_index(strategy))
