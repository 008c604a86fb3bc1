"""Export a trained classifier as a TensorFlow SavedModel that needs no project code.

Two signatures, both returning the abnormality probability float32 `[N, 1]`:

- `serve` (also `serving_default`): raw pixels, float32 `[N, S, S, 3]` in 0-255, resized to the
  model's side `S` as training did; normalised inside the way the backbone expects.
- `serve_images`: encoded films, a string `[N]` of PNG (any MURA mode: L, LA, RGB, RGBA,
  16-bit) or JPEG bytes of any size; decoded, converted to RGB and resized inside exactly as
  the training pipeline does (`mura_tf.data.pipeline.decode_and_resize`, honouring
  `keep_aspect`), then passed to `serve`.

and `grad_cam_images` (not a serving signature: it differentiates the model), the same
encoded films to `probability` `[N, 1]`, `cam` `[N, S, S]` (`mura_tf.gradcam`, bilinearly
upsampled to the input frame) and `content` `[N, 4]` (y0, x0, y1, x1: the part of the frame
the film fills; all of it unless `keep_aspect` padded it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from mura_tf.data.normalization import normalize
from mura_tf.data.pipeline import decode_and_resize
from mura_tf.errors import ConfigError
from mura_tf.gradcam import grad_cam_of_films


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


def export_archive(
    model: keras.Model, normalization: str, image_size: int, keep_aspect: bool = False
) -> keras.export.ExportArchive:
    """The SavedModel of `model` (normalised images -> probabilities) with the module
    docstring's two signatures."""
    serving = serving_model(model, normalization, image_size)
    archive = keras.export.ExportArchive()
    archive.track(serving)
    pixels = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="pixels")
    archive.add_endpoint("serve", lambda x: serving(x, training=False), input_signature=[pixels])

    def from_images(data: tf.Tensor) -> tf.Tensor:
        films = tf.map_fn(
            lambda one: decode_and_resize(one, image_size, keep_aspect),
            data,
            fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8),
        )
        return serving(tf.cast(films, tf.float32), training=False)

    images = tf.TensorSpec([None], tf.string, name="images")
    archive.add_endpoint("serve_images", from_images, input_signature=[images])

    cam_images = grad_cam_of_films(model, normalization, image_size, keep_aspect)
    archive.add_endpoint("grad_cam_images", cam_images, input_signature=[images])
    return archive


def export_savedmodel(
    model: keras.Model,
    normalization: str,
    image_size: int,
    path: str | os.PathLike[str],
    keep_aspect: bool = False,
) -> Path:
    """Write `model` as a SavedModel at `path` (atomically); see `export_archive`."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as e:
        raise ConfigError(f"cannot write {target}: {e.strerror}; choose a writable --out") from None
    try:
        export_archive(model, normalization, image_size, keep_aspect).write_out(
            str(tmp / "savedmodel"), verbose=False
        )
        (tmp / "savedmodel").rename(tmp / "ready")
        ready = tmp / "ready"
        replace_dir(ready, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
