"""Atomic file output: write to a temporary name in the same folder, then rename."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mura_tf.errors import ConfigError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`.

    A crash or exception leaves any earlier `path` untouched and no partial file behind.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise ConfigError(f"cannot write {target}: {e.strerror}; choose a writable --out") from None
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically write `text` to `path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Atomically write `data` as indented JSON."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> Path:
    """Atomically create `path` by calling `writer(temporary_path)`."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def save_keras(model, path: str | os.PathLike[str]) -> Path:
    """Atomically save a Keras model as a `.keras` archive at `path`."""

    def save(tmp: Path) -> None:
        keras_tmp = tmp.with_suffix(".keras")  # Keras refuses a name without the suffix
        model.save(keras_tmp)
        os.replace(keras_tmp, tmp)

    return write_with(path, save)


def check_unfinished(run_dir: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Refuse a run folder whose `metrics.json` marks a finished run, unless `overwrite`.

    An unfinished folder is fine: training resumes from its backup.
    """
    if (Path(run_dir) / "metrics.json").exists() and not overwrite:
        raise ConfigError(
            f"{run_dir} already holds a finished run: "
            "pass --overwrite to train again, or --run NAME"
        )


def start_run(run_dir: str | os.PathLike[str], config: dict) -> Path:
    """Create a run folder and write its `config.json`."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"cannot create {run_dir}: {e.strerror}; choose a writable --out"
        ) from None
    write_json(run_dir / "config.json", config)
    return run_dir


def finish_run(run_dir: str | os.PathLike[str]) -> None:
    """Remove the resume points of a run whose outputs are all written (`metrics.json` last).

    Until then they stay, so that a run killed while writing its outputs redoes only those.
    """
    run_dir = Path(run_dir)
    for backup in [run_dir / "backup", *run_dir.glob("*/backup")]:
        shutil.rmtree(backup, ignore_errors=True)
