"""Grad-CAM (Selvaraju et al., 2017): where a trained classifier looked.

For a classifier built by `mura_tf.models.heads.build_classifier` (backbone -> global average
pooling -> head), the map of an image is

    cam = ReLU(sum_c w_c A_c),   w_c = mean over positions of d logit / d A_c

where `A` `[h, w, C]` is the backbone's last convolutional feature map (DenseNet169's final
ReLU, ResNet's last block) and `logit` the abnormality output before its sigmoid. The maps are
computed inside the export (`mura_tf.export`, signature `grad_cam_images`), so any run folder
or export can draw them; `overlay` puts one on its film.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def classifier_parts(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """The backbone (normalised images -> feature map `[B, h, w, C]`) and the head (pooled
    features `[B, C]` -> probabilities) of a `build_classifier` model."""
    backbone = next(
        (
            layer
            for layer in model.layers
            if isinstance(layer, keras.Model) and len(layer.output.shape) == 4
        ),
        None,
    )
    head = model.layers[-1]
    if backbone is None or not isinstance(head, keras.Sequential):
        raise ValueError(f"{model.name} is not backbone -> pooling -> head (build_classifier)")
    return backbone, head


def logit_of(head: keras.Sequential, pooled: tf.Tensor) -> tf.Tensor:
    """The head's output before its final sigmoid: `[B, C]` -> `[B, 1]`."""
    x = pooled
    for layer in head.layers[:-1]:
        x = layer(x, training=False)
    out = head.layers[-1]
    return tf.matmul(tf.cast(x, out.kernel.dtype), out.kernel) + out.bias


def grad_cam(model: keras.Model, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Grad-CAM of the abnormality output.

    Args:
        model: a `build_classifier` model with one sigmoid output.
        images: normalised images `[B, S, S, 3]`, as the model takes them.
    Returns:
        `(probability [B, 1], cam [B, h, w])`, the map at the feature map's resolution,
        non-negative and not rescaled.
    """
    backbone, head = classifier_parts(model)
    with tf.GradientTape() as tape:
        features = tf.cast(backbone(images, training=False), tf.float32)
        tape.watch(features)
        logit = logit_of(head, tf.reduce_mean(features, axis=[1, 2]))
    grads = tape.gradient(logit, features)  # [B, h, w, C]
    weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
    return tf.sigmoid(logit), cam


def to_film(cam: np.ndarray, content: np.ndarray, film_shape: tuple[int, int]) -> np.ndarray:
    """One map `[s, s]` over the model's input frame, cut to the frame's `content` box
    (y0, x0, y1, x1 in the frame's pixels: all of it for stretched films, the unpadded part
    with `--keep-aspect`) and resized to the film's `(height, width)`; scaled to [0, 1]."""
    y0, x0, y1, x1 = (int(round(v)) for v in content)
    part = cam[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]
    resized = tf.image.resize(part[..., None], film_shape, method="bilinear")[..., 0].numpy()
    peak = resized.max()
    return resized / peak if peak > 0 else resized


def overlay(film: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The film (uint8 `[H, W]` or `[H, W, 3]`) under a heat map (`[H, W]` in [0, 1]) in
    matplotlib's `jet` colours, `alpha` of it where the map is 1, fading to none at 0;
    uint8 `[H, W, 3]`."""
    from matplotlib import colormaps

    gray = film if film.ndim == 3 else np.repeat(film[..., None], 3, axis=-1)
    colours = colormaps["jet"](heat)[..., :3] * 255.0
    weight = alpha * heat[..., None]
    return np.clip(gray * (1 - weight) + colours * weight, 0, 255).astype(np.uint8)
