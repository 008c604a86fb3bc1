"""Export a trained classifier as a TensorFlow SavedModel that needs no project code.

Two signatures, both returning the abnormality probability float32 `[N, 1]`:

- `serve` (also `serving_default`): raw pixels, float32 `[N, S, S, 3]` in 0-255, resized to the
  model's side `S` as training did; normalised inside the way the backbone expects.
- `serve_images`: encoded films, a string `[N]` of PNG (any MURA mode: L, LA, RGB, RGBA,
  16-bit) or JPEG bytes of any size; decoded, converted to RGB and resized inside exactly as
  the training pipeline does (`mura_tf.data.pipeline.decode_and_resize`, honouring
  `keep_aspect`), then passed to `serve`.

and `grad_cam_images` (not a serving signature: it differentiates the model), the same
encoded films to `probability` `[N, 1]`, `cam` `[N, S, S]` (`mura_tf.serving.gradcam`, bilinearly
upsampled to the input frame) and `content` `[N, 4]` (y0, x0, y1, x1: the part of the frame
the film fills; all of it unless `keep_aspect` padded it).

A run trained with `--outline-weight` adds `outline_map_images`: the same inputs and outputs,
with `cam` the outline head's own map (`mura_tf.models.outline_guided`) in place of Grad-CAM.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import tensorflow as tf

from mura_tf.compat.export_archive import write_savedmodel
from mura_tf.data.normalization import normalize
from mura_tf.data.pipeline import decode_and_resize
from mura_tf.errors import ConfigError
from mura_tf.serving.gradcam import MapOf, grad_cam_of_films


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


def ensemble_serving_model(
    members: Sequence[tuple[keras.Model, str]], image_size: int
) -> keras.Model:
    """Raw pixels `[N, S, S, 3]` -> the mean of the members' probabilities `[N, 1]`; each
    member is a classifier and the normalisation its backbone expects."""
    if len(members) == 1:
        model, normalization = members[0]
        inputs = keras.Input((image_size, image_size, 3), dtype="float32", name="pixels")
        outputs = model(PixelNormalization(normalization, name="normalize")(inputs), training=False)
        return keras.Model(inputs, outputs, name="mura_serving")
    # A subclassed model: functional graphs need unique layer names, and members trained by the
    # same recipe share theirs.
    ensemble = MeanOfMembers(members, name="mura_serving")
    ensemble(keras.ops.zeros((1, image_size, image_size, 3)))
    return ensemble


class MeanOfMembers(keras.Model):
    """The mean probability of several classifiers, each on its own normalisation of the same
    raw pixels."""

    def __init__(self, members: Sequence[tuple[keras.Model, str]], **kwargs):
        super().__init__(**kwargs)
        self.classifiers = [model for model, _ in members]
        self.normalizations = [normalization for _, normalization in members]

    def call(self, pixels, training=False):
        outputs = [
            model(normalize(pixels, normalization), training=False)
            for model, normalization in zip(self.classifiers, self.normalizations, strict=True)
        ]
        return keras.ops.mean(keras.ops.stack(outputs, axis=0), axis=0)


def replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder `tmp` onto `target`, replacing any earlier one."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    tmp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


OUTLINE_SIGNATURE = "outline_map_images"


def export_archive(
    members: Sequence[tuple[keras.Model, str]],
    image_size: int,
    keep_aspect: bool = False,
    outline: tuple[keras.Model, MapOf] | None = None,
) -> keras.export.ExportArchive:
    """The SavedModel of the mean of `members` (classifier, its normalisation), one member for a
    single run, with the module docstring's signatures. An ensemble's Grad-CAM is the mean of
    its members' maps. `outline`: a single run's outline-guided model and its map
    (normalised images -> probability, map), exported as `outline_map_images`."""
    cams = [grad_cam_of_films(m, norm, image_size, keep_aspect) for m, norm in members]

    def cam_images(data: tf.Tensor) -> dict[str, tf.Tensor]:
        outs = [cam(data) for cam in cams]
        return {
            "probability": tf.add_n([o["probability"] for o in outs]) / len(outs),
            "cam": tf.add_n([o["cam"] for o in outs]) / len(outs),
            "content": outs[0]["content"],
        }

    serving = ensemble_serving_model(members, image_size)
    archive = serving_archive(serving, image_size, keep_aspect, cam_images)
    if outline is not None:
        guided, map_of = outline
        if len(members) != 1:
            raise ValueError("an outline map is exported for a single run, not an ensemble")
        model, normalization = members[0]
        archive.track(guided)
        archive.add_endpoint(
            OUTLINE_SIGNATURE,
            grad_cam_of_films(model, normalization, image_size, keep_aspect, map_of),
            input_signature=[IMAGES],
        )
    return archive


def films_to_pixels(data: tf.Tensor, image_size: int, keep_aspect: bool) -> tf.Tensor:
    """Encoded films string `[N]` -> float32 `[N, S, S, 3]` raw 0-255, as training read them."""
    films = tf.map_fn(
        lambda one: decode_and_resize(one, image_size, keep_aspect),
        data,
        fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8),
    )
    return tf.cast(films, tf.float32)


PIXELS = "pixels"
IMAGES = tf.TensorSpec([None], tf.string, name="images")


def serving_archive(
    serving: keras.Model,
    image_size: int,
    keep_aspect: bool,
    grad_cam_images: Callable[[tf.Tensor], dict[str, tf.Tensor]],
) -> keras.export.ExportArchive:
    """An archive with the module docstring's signatures: `serving` (raw pixels `[N, S, S, 3]`
    -> probability `[N, 1]`) as `serve`, the same on encoded films as `serve_images`, and
    `grad_cam_images` (encoded films -> probability, cam, content)."""
    archive = keras.export.ExportArchive()
    archive.track(serving)
    pixels = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=PIXELS)
    serve = archive.add_endpoint(
        "serve", lambda x: serving(x, training=False), input_signature=[pixels]
    )
    # Calling `serve` (a function call in the graph) instead of `serving` again traces the
    # model's forward pass once for both signatures.
    archive.add_endpoint(
        "serve_images",
        lambda data: serve(films_to_pixels(data, image_size, keep_aspect)),
        input_signature=[IMAGES],
    )
    archive.add_endpoint("grad_cam_images", grad_cam_images, input_signature=[IMAGES])
    return archive


def export_savedmodel(
    model: keras.Model,
    normalization: str,
    image_size: int,
    path: str | os.PathLike[str],
    keep_aspect: bool = False,
    outline: tuple[keras.Model, MapOf] | None = None,
) -> Path:
    """Write `model` as a SavedModel at `path` (atomically); see `export_archive`."""
    archive = export_archive([(model, normalization)], image_size, keep_aspect, outline)
    return write_archive(archive, path)


def export_ensemble(
    members: Sequence[tuple[keras.Model, str]],
    image_size: int,
    path: str | os.PathLike[str],
    keep_aspect: bool = False,
    outline_exports: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Write the mean of `members` (classifier, normalisation) as a SavedModel at `path`
    (atomically), with the same signatures as a single run's. `outline_exports`: the members'
    own exports, where every member learnt the outlines; the ensemble's `outline_map_images`
    is then the mean of theirs (the members' heads live in their exports only: `model.keras`
    holds the classifier)."""
    archive = export_archive(members, image_size, keep_aspect)
    if outline_exports:
        add_mean_outline_map(archive, outline_exports)
    return write_archive(archive, path)


def add_mean_outline_map(
    archive: keras.export.ExportArchive, exports: Sequence[str | os.PathLike[str]]
) -> None:
    """Add `outline_map_images` to `archive`: the mean of the probabilities and maps of these
    SavedModels' own `outline_map_images` (loaded, tracked: the archive carries their
    variables)."""
    loaded = [tf.saved_model.load(str(path)) for path in exports]
    for member in loaded:
        archive.track(member)

    def outline_map_images(data: tf.Tensor) -> dict[str, tf.Tensor]:
        outs = [member.outline_map_images(data) for member in loaded]
        return {
            "probability": tf.add_n([o["probability"] for o in outs]) / len(outs),
            "cam": tf.add_n([o["cam"] for o in outs]) / len(outs),
            "content": outs[0]["content"],
        }

    archive.add_endpoint(OUTLINE_SIGNATURE, outline_map_images, input_signature=[IMAGES])


def write_archive(archive: keras.export.ExportArchive, path: str | os.PathLike[str]) -> Path:
    """Write `archive` as a SavedModel at `path`: in a temporary folder beside it, then renamed
    over any earlier one, so `path` is never half-written."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as e:
        raise ConfigError(f"cannot write {target}: {e.strerror}; choose a writable --out") from None
    try:
        write_savedmodel(archive, tmp / "savedmodel")
        (tmp / "savedmodel").rename(tmp / "ready")
        replace_dir(tmp / "ready", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
