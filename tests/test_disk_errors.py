"""`disk_cause` and `disk_errors` (mura_tf.files): which failures are the disk's, as the OS,
TensorFlow and h5py word them, and what becomes of each under `disk_errors`."""

import errno
import os
import subprocess
from pathlib import Path

import pytest
import tensorflow as tf

from mura_tf.errors import ConfigError
from mura_tf.files import DiskError, disk_cause, disk_errors, write_text


def os_error(code: int, filename: str | None = None) -> OSError:
    return OSError(code, os.strerror(code), filename)


@pytest.mark.parametrize(
    "error, cause",
    [
        # The OS's own errors, by errno.
        (os_error(errno.ENOSPC), "no space left"),
        (os_error(errno.EDQUOT), "no space left"),
        (os_error(errno.EROFS), "read-only file system"),
        (os_error(errno.EACCES), "permission denied"),
        (os_error(errno.EPERM), "permission denied"),
        (os_error(errno.ENOENT), "the folder is gone"),
        # TensorFlow's file system layer: its own types, no errno, the OS's words.
        (tf.errors.ResourceExhaustedError(None, None, "x.tmp; No space left on device"),
         "no space left"),
        (tf.errors.PermissionDeniedError(None, None, "x.tmp; Read-only file system"),
         "read-only file system"),
        (tf.errors.NotFoundError(None, None, "x/variables; No such file or directory"),
         "the folder is gone"),
        # h5py (Keras's .h5 weights): an OSError without errno, the errno in its message.
        (OSError("Unable to synchronously create file (unable to open file: name = 'w.h5', "
                 "errno = 28, error message = 'No space left on device')"), "no space left"),
        (OSError("Unable to synchronously create file (unable to open file: name = 'w.h5', "
                 "errno = 30, error message = 'Read-only file system')"), "read-only file system"),
        (OSError("unable to open file: name = 'w.h5', errno = 13, error message = 'Permission "
                 "denied'"), "permission denied"),
        # Not the disk's.
        (os_error(errno.EIO), None),
        (os_error(errno.EINVAL), None),
        (ValueError("Shapes (None, 1) and (None, 7) are incompatible"), None),
        (tf.errors.InvalidArgumentError(None, None, "Input to reshape is a tensor with 12"),
         None),
        (OSError("errno = 21, error message = 'Is a directory'"), None),
    ],
)  # fmt: skip
def test_disk_cause_names_the_disks_failures_only(error, cause):
    assert disk_cause(error) == cause


def test_a_disk_failure_under_the_folder_is_one_line_naming_it(tmp_path):
    with pytest.raises(DiskError) as e, disk_errors(tmp_path):
        raise os_error(errno.ENOSPC, str(tmp_path / "backup" / "epoch-3.npz"))
    said = str(e.value)
    assert said.splitlines() == [said] and str(tmp_path) in said
    assert "no space left; free some space and run the same command again" in said
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_a_failure_elsewhere_or_not_the_disks_passes_through_unchanged(tmp_path):
    elsewhere = os_error(errno.EACCES, "/data/MURA-v1.1/train_image_paths.csv")
    for error in (elsewhere, ValueError("bad shape"), ConfigError("--lr must be positive")):
        with pytest.raises(type(error)) as e, disk_errors(tmp_path / "run"):
            raise error
        assert e.value is error


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder on a read-only tmpfs: the OS's own EROFS (root, or CI, can mount one)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs as root and can mount a tmpfs: {done.stderr.decode().strip()}")
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_write_to_a_read_only_file_system_is_one_line_and_leaves_nothing(read_only_folder):
    with (
        pytest.raises(DiskError, match="read-only file system") as e,
        disk_errors(read_only_folder),
    ):
        write_text(read_only_folder / "history.csv", "epoch\n0\n")
    assert str(read_only_folder) in str(e.value)
    assert list(read_only_folder.iterdir()) == []


def test_a_write_that_fills_the_disk_leaves_the_earlier_file_whole(tmp_path, monkeypatch):
    """ENOSPC from the write itself (no tmpfs needed): the temporary file is dropped and the
    file written before stays as it was."""
    target = tmp_path / "history.csv"
    write_text(target, "epoch\n0\n")
    real_write = Path.write_text

    def full(self, data, *a, **k):  # half the bytes reach the disk, then it is full
        real_write(self, data[: len(data) // 2], *a, **k)
        raise os_error(errno.ENOSPC, str(self))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DiskError, match="no space left"), disk_errors(tmp_path):
        write_text(target, "epoch\n0\n1\n" * 1000)
    monkeypatch.undo()
    assert target.read_text() == "epoch\n0\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]
