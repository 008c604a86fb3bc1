"""SimCLR's two-view augmentation, adapted to radiographs, as tf.data graph ops.

Random resized crop (area 0.08-1, aspect 3/4-4/3), horizontal flip, brightness/contrast jitter
(p = 0.8; hue and saturation are meaningless on grayscale films, and random grayscale is moot),
Gaussian blur (p = 0.5, sigma 0.1-2.0) and an optional small rotation. Keras 3 has no
RandomResizedCrop and keras-cv is deprecated, so these are `tf.image` ops with stateless seeds.
They run once per batch, each image drawn on its own, with the pixel work compiled by XLA, as
the classifier's augmentation does (`pipeline.batch_pixels`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from mura_tf.data.augment import affine_matrix
from mura_tf.data.film_cache import displayed_files
from mura_tf.data.normalization import normalize
from mura_tf.data.pipeline import AUTOTUNE, PipelineConfig, load_image
from mura_tf.errors import ConfigError


@dataclass(frozen=True)
class ViewConfig:
    """Strengths of the SimCLR augmentations (the official defaults where they apply)."""

    crop_area: tuple[float, float] = (0.08, 1.0)
    crop_aspect: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4  # multiplicative factor in [1 - b, 1 + b]
    contrast: float = 0.4
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    rotation_degrees: float = 0.0


def gaussian_kernels(sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Normalised 1-D Gaussian kernels, one per sigma.

    Args:
        sigma: float `[N]`.
    Returns:
        float32 `[N, 2 * radius + 1]`, each row summing to one.
    """
    x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
    kernel = tf.exp(-(x**2) / (2.0 * tf.square(sigma[:, None])))
    return kernel / tf.reduce_sum(kernel, axis=1, keepdims=True)


def gaussian_blur(images: tf.Tensor, kernels: tf.Tensor) -> tf.Tensor:
    """Separable blur of each image by its own kernel, zero padding.

    The batch is folded into the channels, so one depthwise convolution per axis blurs every
    image with its own kernel.

    Args:
        images: float32 `[N, H, W, C]`.
        kernels: float32 `[N, K]`, K odd (from `gaussian_kernels`).
    Returns:
        float32 `[N, H, W, C]`.
    """
    n, h, w, c = images.shape
    k = kernels.shape[1]
    per_channel = tf.reshape(tf.repeat(kernels, c, axis=0), [n * c, k])  # image-major, as below
    x = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, h, w, n * c])
    kh = tf.transpose(per_channel)[:, None, :, None]  # [K, 1, N*C, 1]
    kw = tf.transpose(per_channel)[None, :, :, None]  # [1, K, N*C, 1]
    x = tf.nn.depthwise_conv2d(x, kh, [1, 1, 1, 1], "SAME")
    x = tf.nn.depthwise_conv2d(x, kw, [1, 1, 1, 1], "SAME")
    return tf.transpose(tf.reshape(x, [h, w, n, c]), [2, 0, 1, 3])


def crop_boxes(n: int, seed: tf.Tensor, config: ViewConfig, attempts: int = 10) -> tf.Tensor:
    """Random resized crop boxes for square images, torchvision's `RandomResizedCrop` rule.

    Each box keeps a uniform share of the area in `config.crop_area` at a log-uniform aspect
    ratio in `config.crop_aspect` (width / height); of `attempts` draws the first that fits is
    kept, and the whole image where none does.

    Returns:
        float32 `[n, 4]` boxes `(y1, x1, y2, x2)` in 0-1, as `tf.image.crop_and_resize` takes.
    """
    s = tf.random.experimental.stateless_split(seed, num=4)
    area = tf.random.stateless_uniform([n, attempts], s[0], *config.crop_area)
    log_ratio = tf.random.stateless_uniform(
        [n, attempts], s[1], math.log(config.crop_aspect[0]), math.log(config.crop_aspect[1])
    )
    ratio = tf.exp(log_ratio)
    width, height = tf.sqrt(area * ratio), tf.sqrt(area / ratio)
    fits = (width <= 1.0) & (height <= 1.0)
    first = tf.argmax(tf.cast(fits, tf.int32), axis=1)  # 0 where none fits
    any_fits = tf.reduce_any(fits, axis=1)
    width = tf.where(any_fits, tf.gather(width, first, batch_dims=1), 1.0)
    height = tf.where(any_fits, tf.gather(height, first, batch_dims=1), 1.0)
    y1 = tf.random.stateless_uniform([n], s[2]) * (1.0 - height)
    x1 = tf.random.stateless_uniform([n], s[3]) * (1.0 - width)
    return tf.stack([y1, x1, y1 + height, x1 + width], axis=1)


def view_draws(n: int, seed: tf.Tensor, size: int, config: ViewConfig) -> dict[str, tf.Tensor]:
    """Every random choice of `n` views, drawn apart from the pixel work (XLA's random numbers
    differ from TensorFlow's, so the compiled and the plain path then agree).

    Returns:
        `boxes` `[n, 4]`, `flip`, `jitter` bool `[n]`, `brightness`, `contrast`, `angle`
        float32 `[n]` and `kernels` float32 `[n, K]` (identity where not blurred).
    """
    s = tf.random.experimental.stateless_split(seed, num=8)
    uniform = lambda i, low=0.0, high=1.0: tf.random.stateless_uniform([n], s[i], low, high)  # noqa: E731
    radius = max(1, size // 20)  # the official kernel is a tenth of the side, i.e. radius side/20
    sigma = uniform(5, *config.blur_sigma)
    blur = uniform(6) < config.blur_p
    identity = tf.one_hot(tf.fill([n], radius), 2 * radius + 1)
    limit = config.rotation_degrees * math.pi / 180
    return {
        "boxes": crop_boxes(n, s[0], config),
        "flip": uniform(1) < config.hflip_p,
        "jitter": uniform(4) < config.jitter_p,
        "brightness": uniform(2, 1 - config.brightness, 1 + config.brightness),
        "contrast": uniform(3, 1 - config.contrast, 1 + config.contrast),
        "kernels": tf.where(blur[:, None], gaussian_kernels(sigma, radius), identity),
        "angle": uniform(7, -limit, limit),
    }


def flip_and_jitter(x: tf.Tensor, draws: dict[str, tf.Tensor]) -> tf.Tensor:
    """Flip and brightness/contrast jitter as `draws` say (XLA-compilable).

    Args:
        x: float32 `[N, S, S, C]` in 0-255, the crops.
    Returns:
        float32 `[N, S, S, C]`, not yet clipped.
    """
    x = tf.where(draws["flip"][:, None, None, None], tf.reverse(x, [2]), x)
    b = draws["brightness"][:, None, None, None]
    c = draws["contrast"][:, None, None, None]
    bright = x * b
    mean = tf.reduce_mean(bright, axis=[1, 2, 3], keepdims=True)
    return tf.where(draws["jitter"][:, None, None, None], (bright - mean) * c + mean, x)


def random_views(
    images: tf.Tensor, seed: tf.Tensor, size: int, config: ViewConfig, normalization: str = "raw"
) -> tf.Tensor:
    """One augmented view of each image, drawn independently per image, in plain TF ops.

    The reference for the compiled `view_maker`, which `make_contrastive_dataset` uses.

    Args:
        images: `[N, H, W, 3]` uint8 or float in 0-255 (square, as the pipeline stores them).
        seed: int `[2]` stateless seed.
        size: output side.
    Returns:
        float32 `[N, size, size, 3]`, normalised as `normalization` says (`raw`: 0-255).
    """
    return view_maker(images.shape[0], size, config, normalization, compiled=False)(images, seed)


def view_maker(
    n: int, size: int, config: ViewConfig, normalization: str, *, compiled: bool = True
) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """`fn(images, seed)`: `random_views` for batches of `n`, the elementwise work compiled.

    Flip, jitter, clipping and normalisation are compiled with XLA (one fused pass each side
    of the blur). Crop-and-resize and rotation have no XLA kernels, and XLA's CPU depthwise
    convolution is tens of times slower than TensorFlow's (benchmarks/README.md), so those
    three run as TensorFlow ops between the compiled parts (as `pipeline.batch_pixels` does).
    """
    maybe_compiled = tf.function(jit_compile=True) if compiled else (lambda f: f)
    side = [size, size]

    @maybe_compiled
    def front(x, draws):
        return flip_and_jitter(x, draws)

    @maybe_compiled
    def back(x):
        return normalize(tf.clip_by_value(x, 0.0, 255.0), normalization)

    def views(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        draws = view_draws(n, seed, size, config)
        x = tf.image.crop_and_resize(tf.cast(images, tf.float32), draws["boxes"], tf.range(n), side)
        x = front(x, {k: draws[k] for k in ("flip", "jitter", "brightness", "contrast")})
        x = gaussian_blur(x, draws["kernels"])
        if config.rotation_degrees:
            zero = tf.zeros([n])
            x = tf.raw_ops.ImageProjectiveTransformV3(
                images=x,
                transforms=affine_matrix(draws["angle"], tf.ones([n]), zero, zero, side),
                output_shape=side,
                fill_value=0.0,
                interpolation="BILINEAR",
                fill_mode="CONSTANT",
            )
        return back(x)

    return views


def make_contrastive_dataset(
    frame: pd.DataFrame,
    config: PipelineConfig,
    views: ViewConfig | None = None,
    *,
    batch_size: int = 32,
    seed: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> tf.data.Dataset:
    """Unlabelled pairs of views for SimCLR pre-training.

    Labels are never read. Batches have a fixed size (the last partial one is dropped) so that
    every replica contributes the same number of negatives. `shard` is `(index, count)` as in
    `make_dataset`.

    Returns:
        Batches `(view_1, view_2)`, each float32 `[B, S, S, 3]`, normalised as `config` says.
    """
    views = views or ViewConfig()
    if len(frame) < batch_size:
        raise ConfigError(
            f"{len(frame)} images cannot fill one batch of {batch_size}: lower --batch-size"
        )
    index, count = shard
    files = displayed_files(frame["path"].astype(str))  # DICOM films as displayed
    ds = tf.data.Dataset.from_tensor_slices(np.array(files, dtype=object))
    ds = ds.shard(count, index)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    ds = ds.with_options(options)
    if config.cache is None:
        ds = ds.shuffle(len(frame) // count + 1, seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(
        lambda p: load_image(p, config.image_size, config.keep_aspect), num_parallel_calls=AUTOTUNE
    )
    if config.cache is not None:
        ds = ds.cache("" if config.cache == "memory" else config.cache)
        ds = ds.shuffle(min(len(frame), config.shuffle_buffer), seed=seed)
    # Images stay uint8 until batched; both views are then made once per batch, vectorised
    # and compiled (benchmarks/README.md).
    ds = ds.batch(batch_size, drop_remainder=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(4)
    make_views = view_maker(batch_size, config.image_size, views, config.normalization)

    def two_views(images, key):
        return make_views(images, key[:2]), make_views(images, key[2:])

    ds = tf.data.Dataset.zip((ds, seeds)).map(two_views, num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
