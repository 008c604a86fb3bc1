"""Training-time augmentation as tf.data graph ops.

Keras augmentation layers set supports_jit=False, which turns XLA off for the whole model, so
augmentation stays in tf.data. Every random draw is stateless and keyed by a per-element seed,
so a run is reproducible from its seed while parallel map calls still differ per element.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf

from mura_tf.errors import ConfigError

AUGMENTATIONS = ("autocontrast", "hflip", "rotate", "translate", "scale")


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, and their strengths (report 000 uses autocontrast + hflip)."""

    ops: tuple[str, ...] = ("autocontrast", "hflip")
    autocontrast_p: float = 0.5
    hflip_p: float = 0.5
    rotation_degrees: float = 10.0
    translation: float = 0.1  # fraction of the side, uniform in [-t, t]
    scale: tuple[float, float] = (0.9, 1.1)

    def __post_init__(self) -> None:
        unknown = [op for op in self.ops if op not in AUGMENTATIONS]
        if unknown:
            raise ConfigError(
                f"unknown augmentation {unknown[0]!r}: use any of {', '.join(AUGMENTATIONS)}"
            )
        for name in ("autocontrast_p", "hflip_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"scale range must be 0 < low <= high, got {self.scale}")


def autocontrast(image: tf.Tensor) -> tf.Tensor:
    """Stretch each channel to the full 0-255 range (PIL `ImageOps.autocontrast`, cutoff 0).

    Args:
        image: float `[H, W, C]` in 0-255.
    Returns:
        float `[H, W, C]`; constant channels are left unchanged.
    """
    lo = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    hi = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    flat = hi <= lo
    scale = tf.where(flat, tf.ones_like(hi), 255.0 / tf.maximum(hi - lo, 1e-6))
    lo = tf.where(flat, tf.zeros_like(lo), lo)
    return tf.clip_by_value((image - lo) * scale, 0.0, 255.0)


def affine_matrix(
    angle: tf.Tensor, scale: tf.Tensor, tx: tf.Tensor, ty: tf.Tensor, size: tf.Tensor
):
    """The 8-vector output->input transform of `ImageProjectiveTransformV3` for one image.

    Rotates by `angle` (radians) and scales by `scale` about the centre, then shifts by
    (`tx`, `ty`) pixels.
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
    return tf.stack([a0, a1, a2, b0, b1, b2, zero, zero])


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


def augment_image(image: tf.Tensor, seed: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Apply the configured random augmentations to one image.

    Args:
        image: float32 `[H, W, 3]` in 0-255.
        seed: int `[2]` stateless seed, distinct per element and epoch.
        config: which ops and how strong.
    Returns:
        float32 `[H, W, 3]` in 0-255.
    """
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    ops = set(config.ops)
    if "autocontrast" in ops:
        apply = tf.random.stateless_uniform([], seeds[0]) < config.autocontrast_p
        image = tf.cond(apply, lambda: autocontrast(image), lambda: image)
    if "hflip" in ops:
        apply = tf.random.stateless_uniform([], seeds[1]) < config.hflip_p
        image = tf.cond(apply, lambda: tf.reverse(image, axis=[1]), lambda: image)
    if ops & {"rotate", "translate", "scale"}:
        size = tf.shape(image)[:2]
        angle = tf.constant(0.0)
        scale = tf.constant(1.0)
        tx = ty = tf.constant(0.0)
        if "rotate" in ops:
            limit = config.rotation_degrees * math.pi / 180.0
            angle = tf.random.stateless_uniform([], seeds[2], -limit, limit)
        if "scale" in ops:
            scale = tf.random.stateless_uniform([], seeds[3], *config.scale)
        if "translate" in ops:
            shift = tf.random.stateless_uniform(
                [2], seeds[4], -config.translation, config.translation
            )
            tx = shift[0] * tf.cast(size[1], tf.float32)
            ty = shift[1] * tf.cast(size[0], tf.float32)
        image = affine_transform(image, angle, scale, tx, ty)
    return image


def parse_augmentations(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """`'autocontrast,hflip'`, `'none'`, `None` or a list -> validated op names."""
    if spec is None:
        return ()
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip().lower() for n in names if n.strip() and n.strip().lower() != "none"]
    AugmentConfig(ops=tuple(names))  # validates
    return tuple(names)
