"""Shared fixtures: a small synthetic MURA generated once per test session."""

from __future__ import annotations

import os
import shutil
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


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """A folder holding `MURA-v1.1/` (~300 images of 48-96 px). Do not modify: copy it."""
    out = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(out, SMALL)
    return out


@pytest.fixture
def mura_copy(synthetic_dir, tmp_path) -> Path:
    """A private copy of the synthetic set that a test may damage; returns its `MURA-v1.1/`."""
    shutil.copytree(synthetic_dir / "MURA-v1.1", tmp_path / "MURA-v1.1")
    return tmp_path / "MURA-v1.1"
