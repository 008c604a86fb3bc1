"""Shared fixtures: a small synthetic MURA and tiny runs on it, each made once per test session
and shared by pytest-xdist's workers (the first to ask makes it, under a lock)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mura_tf.cli import start_tensorflow  # noqa: E402

start_tensorflow()  # as the commands and recipes start it: oneDNN on, quietly

from mura_tf.data.synthetic import SyntheticConfig, generate_synthetic  # noqa: E402

SMALL = SyntheticConfig(
    patients_per_part=8, valid_patients_per_part=4, min_side=48, max_side=96, seed=7
)


@pytest.fixture(scope="session")
def small_config() -> SyntheticConfig:
    """The configuration `synthetic_dir` was generated with."""
    return SMALL


def _shared_root(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this session sees (the parent of the workers'
    own base folders, as pytest-xdist's documentation recommends); without xdist, this
    process's own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def _held(lock: Path) -> Iterator[None]:
    """`lock` held exclusively (waiting for another worker that holds it)."""
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """A folder holding `MURA-v1.1/` (~300 images of 48-96 px). Do not modify: copy it."""
    root = _shared_root(tmp_path_factory)
    out, made = root / "synthetic", root / "synthetic.made"
    with _held(root / "synthetic.lock"):
        if not made.exists():
            shutil.rmtree(out, ignore_errors=True)
            generate_synthetic(out, SMALL)
            made.touch()
    return out


TINY_RUN = ["--image-size", "32", "--epochs", "1", "--max-steps", "3", "--weights", "none"]


@dataclass(frozen=True)
class TinyRuns:
    """Finished `resnet18_mlp` runs on the synthetic set (`TINY_RUN`: 32 px, one epoch of three
    steps), all in `out` (their `--out`), each trained once per session by whichever test asks
    first. Read them; do not modify them."""

    data_dir: Path
    out: Path
    lock: Path
    flags: tuple[str, ...] = tuple(TINY_RUN)

    def held(self):
        """The lock to hold while training into `out` (other workers wait for it)."""
        return _held(self.lock)

    def __call__(self, part: str = "elbow", seed: int = 0) -> Path:
        """The run folder of `--part part --seed seed`, trained if no test has asked yet."""
        from recipes.common import run
        from recipes.resnet18_mlp import CONFIG

        folder = self.out / "resnet18_mlp" / part.replace(",", "+")
        with self.held():
            if not list(folder.glob(f"seed{seed}-*/metrics.json")):
                argv = ["--data-dir", str(self.data_dir), "--out", str(self.out), "--part", part,
                        "--seed", str(seed), *self.flags]  # fmt: skip
                assert run(CONFIG, argv=argv) == 0
        (metrics,) = folder.glob(f"seed{seed}-*/metrics.json")
        return metrics.parent


@pytest.fixture(scope="session")
def tiny_runs(synthetic_dir, tmp_path_factory) -> TinyRuns:
    """The session's `TinyRuns`: `tiny_runs("elbow", 0)` is a finished run's folder."""
    root = _shared_root(tmp_path_factory)
    return TinyRuns(synthetic_dir, root / "tiny-runs", root / "tiny-runs.lock")


@pytest.fixture
def mura_copy(synthetic_dir, tmp_path) -> Path:
    """A private copy of the synthetic set that a test may damage; returns its `MURA-v1.1/`."""
    shutil.copytree(synthetic_dir / "MURA-v1.1", tmp_path / "MURA-v1.1")
    return tmp_path / "MURA-v1.1"
