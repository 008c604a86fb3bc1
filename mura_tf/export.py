"""Export a trained classifier as a TensorFlow SavedModel that needs no project code.

The `serve` endpoint takes raw pixels, float32 `[N, S, S, 3]` in 0-255, normalises them the way
the backbone expects, and returns the abnormality probability `[N, 1]`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import keras

from mura_tf.data.normalization import normalize
from mura_tf.errors import ConfigError


@keras.saving.register_keras_serializable(package="mura_tf")
class PixelNormalization(keras.layers.Layer):
    """Raw 0-255 RGB -> the backbone's input scaling (see `normalization.normalize`)."""

    def __init__(self, mode: str = "imagenet", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, images):
        return normalize(images, self.mode)

    def get_config(self) -> dict:
        return {**super().get_config(), "mode": self.mode}


def serving_model(model: keras.Model, normalization: str, image_size: int) -> keras.Model:
    """Wrap `model` (normalised images -> probabilities) to take raw pixels instead."""
    inputs = keras.Input((image_size, image_size, 3), dtype="float32", name="pixels")
    outputs = model(PixelNormalization(normalization, name="normalize")(inputs), training=False)
    return keras.Model(inputs, outputs, name="mura_serving")


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder `tmp` onto `target`, replacing any earlier one."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_savedmodel(
    model: keras.Model, normalization: str, image_size: int, path: str | os.PathLike[str]
) -> Path:
    """Write `model` as a SavedModel at `path` via `keras.Model.export` (atomically)."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as e:
        raise ConfigError(f"cannot write {target}: {e.strerror}; choose a writable --out") from None
    try:
        serving_model(model, normalization, image_size).export(
            str(tmp / "savedmodel"), format="tf_saved_model", verbose=False
        )
        (tmp / "savedmodel").rename(tmp / "ready")
        ready = tmp / "ready"
        replace_dir(ready, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
