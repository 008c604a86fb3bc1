"""The tf.data input pipeline: film files (PNG, JPEG; DICOM rendered once, `film_cache`) ->
batches of normalised images and labels."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import tensorflow as tf

from mura_tf.data.augment import (
    apply_photometric,
    augment_geometric,
    photometric_choices,
)
from mura_tf.data.augment_settings import GEOMETRIC, AugmentConfig
from mura_tf.data.datasets import dataset_of_parts
from mura_tf.data.film_cache import displayed_files
from mura_tf.data.normalization import NORMALIZATIONS, normalize
from mura_tf.data.orientation import apply_orientation, exif_orientation
from mura_tf.errors import ConfigError

AUTOTUNE = tf.data.AUTOTUNE
TARGETS = ("label", "part")


@dataclass(frozen=True)
class PipelineConfig:
    """How images are prepared; training-only augmentation lives in `augment`.

    `cache` is None (decode every epoch), `"memory"`, or a file prefix for `Dataset.cache`;
    decoded, resized uint8 images are cached, so augmentation still varies per epoch.
    """

    image_size: int = 256
    keep_aspect: bool = False
    normalization: str = "imagenet"
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(ops=()))
    cache: str | None = None
    shuffle_buffer: int = 2048

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"unknown normalization {self.normalization!r}: use one of "
                + ", ".join(NORMALIZATIONS)
            )
        if self.shuffle_buffer < 1:
            raise ConfigError(f"shuffle buffer must be positive, got {self.shuffle_buffer}")


def decode_png(data: tf.Tensor) -> tf.Tensor:
    """Decode PNG bytes of any MURA mode to RGB.

    L and LA are replicated to three channels, alpha is dropped, and 16-bit samples keep their
    high byte (libpng's strip-16), i.e. `v >> 8`.

    Returns:
        uint8 `[H, W, 3]`.
    """
    image = tf.io.decode_png(data, channels=3, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def resize(image: tf.Tensor, size: int, keep_aspect: bool = False) -> tf.Tensor:
    """Resize to `[size, size, C]` with antialiasing.

    Shrinking on both axes (MURA's usual ~512 px films to 256) averages pixel areas, an
    antialiasing filter twice as fast here as TensorFlow's scale-aware bilinear kernel;
    anything else uses the antialiased bilinear kernel. With `keep_aspect` the image is scaled
    to fit and padded with black (the radiograph background) instead of being stretched.

    Args:
        image: uint8 or float `[H, W, C]` in 0-255.
    Returns:
        uint8 `[size, size, C]`.
    """
    x = tf.cast(image, tf.float32)
    if keep_aspect:
        x = tf.image.resize_with_pad(x, size, size, antialias=True)
    else:
        shrinking = tf.reduce_all(tf.shape(x)[:2] >= size)
        x = tf.cond(
            shrinking,
            lambda: tf.image.resize(x, [size, size], method="area"),
            lambda: tf.image.resize(x, [size, size], antialias=True),
        )
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def to_film(cam: np.ndarray, content: np.ndarray, film_shape: tuple[int, int]) -> np.ndarray:
    """`resize` undone for a map: one map `[s, s]` over the model's input frame, cut to the
    frame's `content` box (y0, x0, y1, x1 in the frame's pixels: all of it for stretched
    films, the unpadded part with `--keep-aspect`) and resized to the film's `(height,
    width)`; scaled to [0, 1]."""
    y0, x0, y1, x1 = (int(round(v)) for v in content)
    part = cam[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]
    resized = tf.image.resize(part[..., None], film_shape, method="bilinear")[..., 0].numpy()
    peak = resized.max()
    return resized / peak if peak > 0 else resized


def _decode_jpeg(data: tf.Tensor) -> tf.Tensor:
    # The accurate inverse DCT, as Pillow and libjpeg default to; TensorFlow's default (the
    # fast one) is off by up to two grey levels. Then the EXIF turn every viewer applies.
    image = tf.io.decode_jpeg(data, channels=0, dct_method="INTEGER_ACCURATE")
    return apply_orientation(image, exif_orientation(data))


def _decode(data: tf.Tensor) -> tf.Tensor:
    """PNG or JPEG bytes to uint8 `[H, W, 1]` (L, LA) or `[H, W, 3]` (RGB, RGBA), as displayed
    (a JPEG's EXIF orientation applied, see `orientation`)."""
    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: _decode_jpeg(data),
        lambda: tf.io.decode_png(data, channels=0, dtype=tf.uint8),
    )
    gray = tf.shape(image)[-1] <= 2  # L or LA
    return tf.cond(gray, lambda: image[..., :1], lambda: image[..., :3])


def decode_film(data: tf.Tensor) -> tf.Tensor:
    """One encoded film (PNG of any MURA mode, or JPEG) at its own size, as `decode_and_resize`
    reads it before resizing; uint8 `[H, W, 3]`."""
    return _traced(_decode_film)(data)


def _decode_film(data: tf.Tensor) -> tf.Tensor:
    image = _decode(data)
    return tf.cond(tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image)


def decode_and_resize(data: tf.Tensor, size: int, keep_aspect: bool = False) -> tf.Tensor:
    """Decode one encoded film (PNG of any MURA mode, or JPEG) and resize it as training does.

    Grayscale films (most of MURA) are resized as one channel and replicated afterwards, which
    gives the same pixels as `resize(decode_png(data), size)` for a third of the work; alpha is
    dropped and 16-bit samples keep their high byte, as in `decode_png`.

    Args:
        data: a scalar string tensor of PNG or JPEG bytes.
    Returns:
        uint8 `[size, size, 3]`.
    """
    return _traced(_decode_and_resize, size, keep_aspect)(data)


def _decode_and_resize(data: tf.Tensor, size: int, keep_aspect: bool) -> tf.Tensor:
    image = resize(_decode(data), size, keep_aspect)
    image = tf.cond(
        tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image[..., :3]
    )
    image.set_shape([size, size, 3])
    return image


def load_image(path: tf.Tensor, size: int, keep_aspect: bool = False) -> tf.Tensor:
    """Read one film and `decode_and_resize` it; uint8 `[size, size, 3]`."""
    return decode_and_resize(tf.io.read_file(path), size, keep_aspect)


@functools.cache
def _traced(decode: Callable[..., tf.Tensor], *settings) -> Callable[[tf.Tensor], tf.Tensor]:
    """`decode(data, *settings)` for one encoded film (a scalar string), as one tf.function
    traced once per process. Every tf.data map, export signature and Grad-CAM traces its
    function afresh, and the decode's graph (the EXIF walk above all) is most of such a trace;
    they all call this one graph, and an eager call runs it instead of op by op. No autograph:
    the decode's branches are explicit `tf.cond`s."""
    return tf.function(
        lambda data: decode(data, *settings),
        input_signature=[tf.TensorSpec([], tf.string)],
        autograph=False,
    )


def batch_pixels(
    normalization: str, augment: AugmentConfig | None = None
) -> Callable[[tf.Tensor, tf.Tensor | None], tf.Tensor]:
    """The per-batch pixel work of `make_dataset`: cast, augment, normalise.

    The returned `fn(images, seed)` maps uint8 `[B, S, S, 3]` and an int `[2]` stateless seed
    (ignored without `augment`) to float32 `[B, S, S, 3]`, equal to
    `normalize(augment_batch(images, seed, augment), normalization)`. The elementwise part is
    compiled with XLA, which fuses it into one pass over the batch; as separate TensorFlow ops
    each step is its own pass over 12 MB (16 float images at 256 px), 10x slower
    (benchmarks/README.md).
    Geometric augmentation has no XLA kernel and runs between two compiled halves.
    """
    geometric = augment is not None and bool(set(augment.ops) & GEOMETRIC)

    @tf.function(jit_compile=True)
    def front(images: tf.Tensor, choices: tf.Tensor) -> tf.Tensor:
        x = tf.cast(images, tf.float32)
        if augment is not None:
            x = apply_photometric(x, choices, augment)
        return x if geometric else normalize(x, normalization)

    @tf.function(jit_compile=True)
    def back(x: tf.Tensor) -> tf.Tensor:
        return normalize(x, normalization)

    def apply(images: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
        if augment is None:
            return front(images, tf.zeros([2, 0], tf.bool))
        seeds = tf.random.experimental.stateless_split(seed, num=2)  # as augment_batch does
        x = front(images, photometric_choices(tf.shape(images)[0], seeds[0], augment))
        return back(augment_geometric(x, seeds[1], augment)) if geometric else x

    return apply


def batch_masks(
    augment: AugmentConfig | None = None,
) -> Callable[[tf.Tensor, tf.Tensor | None], tf.Tensor]:
    """The geometric part of `batch_pixels` for masks: `fn(masks, seed)` maps uint8
    `[B, m, m, 1]` (0 or 255) to float32 `[B, m, m, 1]` in [0, 1], flipped, rotated, scaled and
    translated as `batch_pixels(..., augment)` moves the batch's films under the same `seed`.

    The draws are the same because they depend on the batch size and the seed only; the
    transforms are size-free (rotation and scale about the centre, translation as a share of
    the side), so a mask at a quarter of the films' side moves with its film.
    """

    def apply(masks: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
        x = tf.cast(masks, tf.float32) / 255.0
        if augment is None:
            return x
        seeds = tf.random.experimental.stateless_split(seed, num=2)  # as batch_pixels does
        if "hflip" in augment.ops:
            flip = photometric_choices(tf.shape(x)[0], seeds[0], augment)[1]
            x = tf.where(flip[:, None, None, None], tf.reverse(x, [2]), x)
        return augment_geometric(x, seeds[1], augment)

    return apply


def make_dataset(
    frame: pd.DataFrame,
    config: PipelineConfig | None = None,
    *,
    batch_size: int = 8,
    training: bool = False,
    target: str = "label",
    with_meta: bool = False,
    seed: int = 0,
    deterministic: bool = True,
    drop_remainder: bool = False,
    shard: tuple[int, int] = (0, 1),
    masks: tuple[np.ndarray, np.ndarray] | None = None,
) -> tf.data.Dataset:
    """Batches of `(image, target)` from a catalogue frame (see `mura.load_mura`).

    Args:
        frame: rows with `path`, `label`, `part`, `study`.
        config: image size, normalisation, augmentation, cache.
        batch_size: images per batch.
        training: shuffle (seeded, reshuffled each epoch) and augment. Evaluation keeps the
            frame's order and never augments.
        target: `label` (float32 `[B, 1]`, 1 = abnormal) or `part` (int32 `[B]`, index into
            the dataset's parts, `DatasetInfo.parts`) for the body-part task.
        with_meta: add a third element `{"part": int32 [B], "study": string [B],
            "path": string [B]}` for study-level evaluation (not for `fit`, which would read it
            as sample weights).
        seed: shuffling and augmentation seed.
        deterministic: keep element order fixed under parallel map (needed for reproducible
            batches; `False` trades that for throughput).
        drop_remainder: drop a last partial batch.
        shard: `(index, count)`: keep every `count`-th image from the `index`-th, before any
            file is read (one worker's share under multi-worker training).
        masks: for outline-guided training, `(masks uint8 [N, m, m, 1], known float32 [N])`
            of the frame's films in its order (`mura_tf.data.masks.outline_masks`). The
            batches' first element is then `{"image": images, "mask": float32 [B, m, m, 1]
            in [0, 1], moved with its film, "mask_known": float32 [B]}`.

    Returns:
        `tf.data.Dataset` yielding `(images float32 [B, S, S, 3], target[, meta])`.
    """
    config = config or PipelineConfig()
    if batch_size < 1:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")
    if frame.empty:
        raise ConfigError("cannot make a dataset from an empty selection of images")

    columns = {
        "path": frame["path"].astype(str).to_numpy(),
        # What is read: the film itself, or a DICOM film's rendering as displayed.
        "file": np.array(displayed_files(frame["path"].astype(str)), dtype=object),
        "label": frame["label"].astype("float32").to_numpy()[:, None],
        "part": frame["part"]
        .map(dataset_of_parts(frame["part"].unique()).parts.index)
        .astype("int32")
        .to_numpy(),
        "study": frame["study"].astype(str).to_numpy(),
    }
    if masks is not None:
        if len(masks[0]) != len(frame) or len(masks[1]) != len(frame):
            raise ConfigError(f"{len(masks[0])} masks for {len(frame)} films")
        columns["mask"], columns["mask_known"] = masks
    index, count = shard
    if not 0 <= index < count:
        raise ConfigError(f"shard index must be in [0, {count}), got {index}")
    ds = tf.data.Dataset.from_tensor_slices(columns).shard(count, index)
    options = tf.data.Options()
    options.deterministic = deterministic
    # Sharding is done above, by image; turn off tf.distribute's own (it would warn and fall
    # back to reading everything on every worker).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    ds = ds.with_options(options)

    if training and config.cache is None:
        # Shuffling paths is free; shuffling decoded images would need a large buffer.
        ds = ds.shuffle(len(frame) // count + 1, seed=seed, reshuffle_each_iteration=True)

    def load(element):
        element = dict(element)
        element["image"] = load_image(element["file"], config.image_size, config.keep_aspect)
        return element

    ds = ds.map(load, num_parallel_calls=AUTOTUNE)
    if config.cache is not None:
        ds = ds.cache("" if config.cache == "memory" else config.cache)
        if training:
            ds = ds.shuffle(min(len(frame), config.shuffle_buffer), seed=seed)

    # Images stay uint8 until batched (a quarter of the bytes to copy); augmentation and
    # normalisation then run once per batch (benchmarks/README.md).
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    augment = config.augment if training and config.augment.ops else None
    if augment is not None:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds))
    pixels = batch_pixels(config.normalization, augment)
    moved = batch_masks(augment)

    def finish(element, key=None):
        images = pixels(element["image"], key)
        if masks is not None:
            mask = moved(element["mask"], key)
            images = {"image": images, "mask": mask, "mask_known": element["mask_known"]}
        out = element["label"] if target == "label" else element["part"]
        if with_meta:
            return images, out, {k: element[k] for k in ("part", "study", "path")}
        return images, out

    return ds.map(finish, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
