"""Training-time augmentation as tf.data graph ops.

Keras augmentation layers set supports_jit=False, which turns XLA off for the whole model, so
augmentation stays in tf.data. It works on whole batches, each image drawn on its own; every
random draw is stateless and keyed by a per-batch seed, so a run is reproducible from its seed
while parallel map calls still differ per batch.
"""

from __future__ import annotations

import math

import tensorflow as tf

from mura_tf.data.augment_settings import GEOMETRIC, AugmentConfig


def autocontrast(image: tf.Tensor) -> tf.Tensor:
    """Stretch each channel to the full 0-255 range (PIL `ImageOps.autocontrast`, cutoff 0).

    Args:
        image: float `[H, W, C]` or a batch `[B, H, W, C]`, in 0-255.
    Returns:
        float, the input's shape; constant channels are left unchanged.
    """
    lo = tf.reduce_min(image, axis=[-3, -2], keepdims=True)
    hi = tf.reduce_max(image, axis=[-3, -2], keepdims=True)
    flat = hi <= lo
    scale = tf.where(flat, tf.ones_like(hi), 255.0 / tf.maximum(hi - lo, 1e-6))
    lo = tf.where(flat, tf.zeros_like(lo), lo)
    return tf.clip_by_value((image - lo) * scale, 0.0, 255.0)


def affine_matrix(
    angle: tf.Tensor, scale: tf.Tensor, tx: tf.Tensor, ty: tf.Tensor, size: tf.Tensor
):
    """The output->input transforms of `ImageProjectiveTransformV3`: `[8]`, or `[B, 8]`.

    Rotates by `angle` (radians) and scales by `scale` about the centre, then shifts by
    (`tx`, `ty`) pixels. The four parameters are scalars (one image) or `[B]` vectors.
    """
    h, w = tf.cast(size[0], tf.float32), tf.cast(size[1], tf.float32)
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # inverse map: input = R(-angle)/scale * (output - centre - t) + centre
    a0, a1 = cos, sin
    b0, b1 = -sin, cos
    ox, oy = cx + tx, cy + ty
    a2 = cx - a0 * ox - a1 * oy
    b2 = cy - b0 * ox - b1 * oy
    zero = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=-1)


def affine_transform(image: tf.Tensor, angle, scale=1.0, tx=0.0, ty=0.0) -> tf.Tensor:
    """Rotate by `angle` radians and scale about the centre, then shift by (`tx`, `ty`) px.

    Args:
        image: float32 `[H, W, C]`.
    Returns:
        float32 `[H, W, C]`, bilinear, black where the source falls outside the image.
    """
    size = tf.shape(image)[:2]
    as_float = lambda v: tf.cast(v, tf.float32)  # noqa: E731
    transform = affine_matrix(as_float(angle), as_float(scale), as_float(tx), as_float(ty), size)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=size,
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]


def photometric_choices(n: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Which of `n` images get auto-contrast (row 0) and a horizontal flip (row 1).

    Drawn apart from the pixel work because XLA's random numbers differ from TensorFlow's:
    the compiled and the plain path then agree exactly.

    Returns:
        bool `[2, n]`.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    p = [
        config.autocontrast_p if "autocontrast" in config.ops else 0.0,
        config.hflip_p if "hflip" in config.ops else 0.0,
    ]
    return tf.stack([tf.random.stateless_uniform([n], seeds[i]) < p[i] for i in range(2)])


def apply_photometric(images: tf.Tensor, choices: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Auto-contrast and flip the images `photometric_choices` picked (XLA-compilable).

    Args:
        images: float32 `[B, H, W, C]` in 0-255.
        choices: bool `[2, B]` from `photometric_choices`.
        config: which ops are on.
    Returns:
        float32 `[B, H, W, C]` in 0-255.
    """
    picked = choices[:, :, None, None, None]
    if "autocontrast" in config.ops:
        images = tf.where(picked[0], autocontrast(images), images)
    if "hflip" in config.ops:
        images = tf.where(picked[1], tf.reverse(images, [2]), images)
    return images


def augment_geometric(images: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Random rotation, scale and translation, drawn per image, bilinear with black fill.

    `ImageProjectiveTransformV3` has no XLA kernel, so this stays outside compiled code.

    Args:
        images: float32 `[B, H, W, C]` in 0-255.
        seed: int `[2]` stateless seed.
        config: which ops, and their ranges.
    Returns:
        float32 `[B, H, W, C]` in 0-255; the input itself if no geometric op is configured.
    """
    ops = set(config.ops)
    if not ops & GEOMETRIC:
        return images
    seeds = tf.random.experimental.stateless_split(seed, num=3)
    n = tf.shape(images)[0]
    size = tf.shape(images)[1:3]
    angle = tx = ty = tf.zeros([n])
    scale = tf.ones([n])
    if "rotate" in ops:
        limit = config.rotation_degrees * math.pi / 180.0
        angle = tf.random.stateless_uniform([n], seeds[0], -limit, limit)
    if "scale" in ops:
        scale = tf.random.stateless_uniform([n], seeds[1], *config.scale)
    if "translate" in ops:
        t = config.translation
        shift = tf.random.stateless_uniform([n, 2], seeds[2], -t, t)
        tx = shift[:, 0] * tf.cast(size[1], tf.float32)
        ty = shift[:, 1] * tf.cast(size[0], tf.float32)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=affine_matrix(angle, scale, tx, ty, size),
        output_shape=size,
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def augment_batch(images: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Apply the configured random augmentations to a batch, drawn independently per image.

    Photometric ops first, then geometric ones. One vectorised call per batch rather than one
    per image: per-element maps with `tf.cond`s cost more than the pixel work at 256 px.

    Args:
        images: float32 `[B, H, W, 3]` in 0-255.
        seed: int `[2]` stateless seed, distinct per batch and epoch.
        config: which ops and how strong.
    Returns:
        float32 `[B, H, W, 3]` in 0-255.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=2)
    choices = photometric_choices(tf.shape(images)[0], seeds[0], config)
    return augment_geometric(apply_photometric(images, choices, config), seeds[1], config)
