"""The TFDS builder `mura`, prepared offline from the synthetic MURA folder."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mura_tf.cli import run
from mura_tf.data.mura import load_mura
from mura_tf.data.parts import PARTS
from mura_tf.data.pipeline import decode_png

# Module fixtures: these tests stay on one pytest-xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("tfds")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prepared(synthetic_dir, tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("tfds")
    offline = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    result = subprocess.run(
        [sys.executable, "-m", "mura_tf", "tfds-build", "--manual-dir", str(synthetic_dir),
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, **offline, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote" in result.stdout
    return data_dir


def test_tfds_mura_holds_every_image_with_the_catalogues_labels(prepared, synthetic_dir):
    from mura_tf.data.tfds_mura import Mura

    builder = Mura(data_dir=str(prepared))
    catalogue = load_mura(synthetic_dir)
    root = Path(catalogue["path"].iloc[0]).parents[5]  # the folder holding MURA-v1.1/
    for split in ("train", "valid"):
        expected = (
            catalogue[catalogue["split"] == split]
            .assign(rel=lambda f: [Path(p).relative_to(root).as_posix() for p in f["path"]])
            .set_index("rel")
        )
        examples = list(builder.as_dataset(split=split).as_numpy_iterator())
        assert builder.info.splits[split].num_examples == len(expected) == len(examples)
        for example in examples[:12]:
            row = expected.loc[example["path"].decode()]
            assert example["label"] == row["label"]
            assert PARTS[example["part"]] == row["part"]
            assert example["study"].decode() == row["study"]
            # RGB, the same pixels as the project's own decoder gives for the file.
            own = decode_png(tf.io.read_file(row["path"])).numpy()
            np.testing.assert_array_equal(example["image"], own)


def test_a_missing_manual_folder_is_one_line(tmp_path, capsys):
    from mura_tf.commands.tfds_build import main

    code = run(main, ["--manual-dir", str(tmp_path / "none"), "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"MURA data folder not found: {tmp_path / 'none'}" in err
