"""SimCLR's two-view augmentation, adapted to radiographs, as tf.data graph ops.

Random resized crop (area 0.08-1, aspect 3/4-4/3), horizontal flip, brightness/contrast jitter
(p = 0.8; hue and saturation are meaningless on grayscale films, and random grayscale is moot),
Gaussian blur (p = 0.5, sigma 0.1-2.0) and an optional small rotation. Keras 3 has no
RandomResizedCrop and keras-cv is deprecated, so these are `tf.image` ops with stateless seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import tensorflow as tf

from mura_tf.data.augment import affine_transform
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


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Separable Gaussian blur of `[H, W, C]` float with a `2 * radius + 1` kernel."""
    x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
    kernel = tf.exp(-(x**2) / (2.0 * tf.square(sigma)))
    kernel /= tf.reduce_sum(kernel)
    channels = tf.shape(image)[-1]
    kh = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, channels, 1])
    kw = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, channels, 1])
    out = tf.nn.depthwise_conv2d(image[None], kh, [1, 1, 1, 1], "SAME")
    return tf.nn.depthwise_conv2d(out, kw, [1, 1, 1, 1], "SAME")[0]


def random_view(image: tf.Tensor, seed: tf.Tensor, size: int, config: ViewConfig) -> tf.Tensor:
    """One augmented view.

    Args:
        image: `[H, W, 3]` uint8 or float in 0-255.
        seed: int `[2]` stateless seed.
        size: output side.
    Returns:
        float32 `[size, size, 3]` in 0-255.
    """
    s = tf.random.experimental.stateless_split(seed, num=8)
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=s[0],
        min_object_covered=0.0,
        aspect_ratio_range=config.crop_aspect,
        area_range=config.crop_area,
        max_attempts=100,
        use_image_if_no_bounding_boxes=True,
    )
    x = tf.image.resize(tf.cast(tf.slice(image, begin, extent), tf.float32), [size, size])
    x = tf.where(tf.random.stateless_uniform([], s[1]) < config.hflip_p, tf.reverse(x, [1]), x)

    def jitter(x):
        b = tf.random.stateless_uniform([], s[2], 1 - config.brightness, 1 + config.brightness)
        c = tf.random.stateless_uniform([], s[3], 1 - config.contrast, 1 + config.contrast)
        x = x * b
        mean = tf.reduce_mean(x)
        return (x - mean) * c + mean

    x = tf.cond(
        tf.random.stateless_uniform([], s[4]) < config.jitter_p, lambda: jitter(x), lambda: x
    )
    radius = max(1, size // 20)  # the official kernel is a tenth of the side, i.e. radius side/20
    sigma = tf.random.stateless_uniform([], s[5], *config.blur_sigma)
    x = tf.cond(
        tf.random.stateless_uniform([], s[6]) < config.blur_p,
        lambda: gaussian_blur(x, sigma, radius),
        lambda: x,
    )
    if config.rotation_degrees:
        limit = config.rotation_degrees * math.pi / 180
        x = affine_transform(x, tf.random.stateless_uniform([], s[7], -limit, limit))
    return tf.clip_by_value(x, 0.0, 255.0)


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
    ds = tf.data.Dataset.from_tensor_slices(frame["path"].astype(str).to_numpy())
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
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(4)

    def two_views(image, key):
        a = random_view(image, key[:2], config.image_size, views)
        b = random_view(image, key[2:], config.image_size, views)
        return normalize(a, config.normalization), normalize(b, config.normalization)

    ds = tf.data.Dataset.zip((ds, seeds)).map(two_views, num_parallel_calls=AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)
