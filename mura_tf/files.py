"""Atomic file output: write to a temporary name in the same folder, then rename."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mura_tf.errors import ConfigError, MuraError


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
        cause = disk_cause(e)
        if cause in ("no space left", "read-only file system", "permission denied"):
            raise disk_error(target, cause) from None
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
        keras_tmp = tmp.with_name(tmp.name + ".keras")  # Keras insists on the suffix
        ensure_free_space(tmp.parent, keras_bytes(model))
        model.save(keras_tmp)
        os.replace(keras_tmp, tmp)

    return write_with(path, save)


def load_for_inference(path: str | os.PathLike[str]):
    """A `.keras` model to predict with: not compiled, so the optimizer state it was saved with
    is not read (Keras would warn that it "skips variable loading for optimizer" whenever the
    optimizer in hand was built differently)."""
    import keras  # here: the rest of this module serves commands that never load Keras

    return keras.saving.load_model(path, compile=False)


def same_file(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Atomically make `path` hold what `source` holds: a hard link where the file system has
    them (no bytes written; `source` is only ever replaced by renames, so the two never
    change together), a copy otherwise."""

    def link(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            ensure_free_space(tmp.parent, os.path.getsize(source))
            shutil.copyfile(source, tmp)

    return write_with(path, link)


class DiskError(MuraError):
    """A write failed for lack of space or permission; the run can resume once that is fixed."""


# Headroom over a file's expected size: HDF5 and zip metadata, the next small writes.
_SPARE_BYTES = 4 << 20


def keras_bytes(model) -> int:
    """About how many bytes `model.save` or `save_weights` writes: every variable of the model
    and of its optimizer."""
    import numpy as np

    variables = list(model.variables)
    if getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    # From shapes and dtypes: reading every variable back (`numpy()`) cost ~0.1 s a save
    # for DenseNet169 and its optimizer.
    return sum(
        int(np.prod(v.shape, dtype=np.int64)) * np.dtype(v.dtype).itemsize
        for v in variables
        if hasattr(v, "shape") and hasattr(v, "dtype")
    )


def ensure_free_space(folder: str | os.PathLike[str], nbytes: int) -> None:
    """Raise `DiskError` unless `folder`'s file system has room for `nbytes` more.

    Checked before writing HDF5 files: h5py has been seen to crash the process (segmentation
    fault) when the disk fills in the middle of a file, where a check first gives one line.
    """
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # the write itself will say what is wrong
    if free < nbytes + _SPARE_BYTES:
        raise DiskError(
            f"cannot write under {folder}: no space left on the device ({free >> 20} MiB free, "
            f"{(nbytes + _SPARE_BYTES) >> 20} MiB needed); free some space and run the same "
            "command again: it resumes where it stopped"
        )


_CAUSES = [
    ((errno.ENOSPC, errno.EDQUOT), ("no space left", "errno = 28", "disk quota"), "no space left"),
    ((errno.EROFS,), ("read-only file system", "errno = 30"), "read-only file system"),
    ((errno.EACCES, errno.EPERM), ("permission denied", "errno = 13"), "permission denied"),
    ((errno.ENOENT,), ("no such file or directory", "errno = 2,"), "the folder is gone"),
]


def disk_cause(error: BaseException) -> str | None:
    """`error`'s cause if it is a full, read-only or forbidden file system, else None.

    TensorFlow, h5py and Keras report these in their own exception types; the errno or the
    message is what they share.
    """
    code = getattr(error, "errno", None)
    text = str(error).lower()
    for codes, phrases, cause in _CAUSES:
        if code in codes or any(p in text for p in phrases):
            return cause
    return None


def disk_error(where: str | os.PathLike[str], cause: str) -> DiskError:
    """The one line for a write under `where` that failed for `cause` (see `disk_cause`)."""
    what = {
        "no space left": "free some space",
        "the folder is gone": "bring it back (or its disk)",
    }.get(cause, "make it writable")
    return DiskError(
        f"cannot write under {where}: {cause}; {what} and run the same command again: "
        "it resumes where it stopped"
    )


@contextlib.contextmanager
def disk_errors(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full, read-only or forbidden file system under the block into one `DiskError`
    line naming `folder`; anything else passes through unchanged."""
    try:
        yield
    except MuraError:
        raise
    except Exception as e:  # noqa: BLE001 - TensorFlow, h5py and Keras each have their own
        cause = disk_cause(e)
        named = getattr(e, "filename", None)
        elsewhere = named and not os.path.abspath(named).startswith(os.path.abspath(folder))
        if cause is None or elsewhere:  # e.g. a data file that cannot be read: not ours to say
            raise
        raise disk_error(folder, cause) from None


class InUseError(MuraError):
    """Another live process holds a lock (a run folder, a data set being generated)."""


@contextlib.contextmanager
def exclusive_lock(path: Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created if needed) inside the block.

    Without `wait`, a lock held by another process raises `InUseError` naming `what` and
    the holder (its pid, host and command, which the holder writes into the lock file).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise ConfigError(f"cannot create {path}: {e.strerror}; choose a writable --out") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise InUseError(
                f"{what} is in use by {_holder(path)}: wait for it to end, or stop it"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        with contextlib.suppress(OSError):  # the lock works without the note
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return (
            f"process {info['pid']} on {info['host']} ({info['command']}, since {info['started']})"
        )
    except (OSError, ValueError, KeyError):
        return "another process"
