"""Pixel normalisation per backbone family, usable in tf.data and inside exported models."""

from __future__ import annotations

import tensorflow as tf

from mura_tf.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# keras.applications' "caffe" mode (ResNet50): BGR order, ImageNet means in 0-255, no scaling.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

NORMALIZATIONS = ("imagenet", "caffe", "unit", "symmetric", "raw")


def normalize(images: tf.Tensor, mode: str = "imagenet") -> tf.Tensor:
    """Map raw pixel values to what a backbone was trained on.

    Args:
        images: float `[..., H, W, 3]` RGB in 0-255.
        mode: `imagenet` ((x/255 - mean) / std, torchvision and keras DenseNet), `caffe`
            (keras ResNet50), `unit` (x/255), `symmetric` (x/127.5 - 1) or `raw` (unchanged).
    Returns:
        float32 tensor of the same shape.
    """
    x = tf.cast(images, tf.float32)
    if mode == "imagenet":
        return (x / 255.0 - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
    if mode == "caffe":
        return x[..., ::-1] - tf.constant(CAFFE_MEAN_BGR)
    if mode == "unit":
        return x / 255.0
    if mode == "symmetric":
        return x / 127.5 - 1.0
    if mode == "raw":
        return x
    raise ConfigError(f"unknown normalization {mode!r}: use one of {', '.join(NORMALIZATIONS)}")
