"""Grad-CAM (Selvaraju et al., 2017): where a trained classifier looked.

For a classifier built by `mura_tf.models.heads.build_classifier` (backbone -> global average
pooling -> head), the map of an image is

    cam = ReLU(sum_c w_c A_c),   w_c = mean over positions of d logit / d A_c

where `A` `[h, w, C]` is the backbone's last convolutional feature map (DenseNet169's final
ReLU, ResNet's last block) and `logit` the abnormality output before its sigmoid. The maps are
computed inside the export (`mura_tf.serving.export`, signature `grad_cam_images`), so any run
folder or export can draw them; `overlay` puts one on its film.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mura_tf.data.normalization import normalize
from mura_tf.data.pipeline import decode_and_resize, decode_film
from mura_tf.files import write_with


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


MapOf = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def grad_cam_of_films(
    model: keras.Model,
    normalization: str,
    image_size: int,
    keep_aspect: bool = False,
    map_of: MapOf | None = None,
) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    """Grad-CAM of encoded films, as the export's `grad_cam_images` computes it; with
    `map_of` (normalised images `[B, S, S, 3]` -> `(probability [B, 1], map [B, h, w])`) that
    map instead, for example an outline-guided model's own (`OutlineGuided.where_map`).

    Returns:
        `fn(data)` mapping a string tensor `[N]` of PNG or JPEG bytes to `probability`
        `[N, 1]`, `cam` `[N, S, S]` (bilinearly upsampled to the model's input frame) and
        `content` `[N, 4]` (y0, x0, y1, x1: the part of the frame the film fills, for
        `pipeline.to_film`).
    """

    def fn(data: tf.Tensor) -> dict[str, tf.Tensor]:
        films = tf.map_fn(
            lambda one: decode_and_resize(one, image_size, keep_aspect),
            data,
            fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8),
        )
        images = normalize(tf.cast(films, tf.float32), normalization)
        probability, cam = (map_of or (lambda x: grad_cam(model, x)))(images)
        cam = tf.image.resize(cam[..., None], [image_size, image_size], method="bilinear")
        content = tf.map_fn(
            lambda one: _content_box(tf.shape(decode_film(one)), image_size, keep_aspect),
            data,
            fn_output_signature=tf.TensorSpec([4], tf.float32),
        )
        return {"probability": probability, "cam": cam[..., 0], "content": content}

    return fn


def film_cams(
    model: keras.Model,
    normalization: str,
    image_size: int,
    keep_aspect: bool = False,
    map_of: MapOf | None = None,
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`grad_cam_of_films` on NumPy: encoded films (object array `[N]` of bytes) to
    `(probability [N], cam [N, S, S], content [N, 4])`, the shape of
    `mura_tf.serving.load.load_cam_serving`'s function, for a model still in memory."""
    fn = tf.function(
        grad_cam_of_films(model, normalization, image_size, keep_aspect, map_of),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )

    def cams(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = fn(tf.constant(list(data), tf.string))
        return out["probability"].numpy()[:, 0], out["cam"].numpy(), out["content"].numpy()

    return cams


def _content_box(shape: tf.Tensor, size: int, keep_aspect: bool) -> tf.Tensor:
    """Where a film of `shape` [H, W, C] lands in the `size` frame: (y0, x0, y1, x1)."""
    if not keep_aspect:
        return tf.constant([0.0, 0.0, size, size], tf.float32)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.minimum(size / h, size / w)
    new_h, new_w = tf.floor(h * scale), tf.floor(w * scale)
    # The offsets tf.image.resize_with_pad uses.
    top, left = tf.floor((size - h * scale) / 2), tf.floor((size - w * scale) / 2)
    return tf.stack([top, left, top + new_h, left + new_w])


def draw_outline(picture: np.ndarray, outline) -> np.ndarray:
    """`picture` (uint8 `[H, W, 3]`, the film as displayed) with the radiologists' fracture
    polygons (`mura_tf.data.fracatlas.Outline`; boxes where there are none) drawn on it in
    green, a line about 1/200 of the film wide; uint8 `[H, W, 3]`."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 200))
    for polygon in outline.polygons:
        points = [tuple(p) for p in polygon]
        draw.line([*points, points[0]], fill=(0, 255, 0), width=width, joint="curve")
    if not outline.polygons:
        for box in outline.boxes:
            draw.rectangle(box, outline=(0, 255, 0), width=width)
    return np.asarray(image)


def overlay(film: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The film (uint8 `[H, W]` or `[H, W, 3]`) under a heat map (`[H, W]` in [0, 1]) in
    matplotlib's `jet` colours, `alpha` of it where the map is 1, fading to none at 0;
    uint8 `[H, W, 3]`."""
    from matplotlib import colormaps

    gray = film if film.ndim == 3 else np.repeat(film[..., None], 3, axis=-1)
    colours = colormaps["jet"](heat)[..., :3] * 255.0
    weight = alpha * heat[..., None]
    return np.clip(gray * (1 - weight) + colours * weight, 0, 255).astype(np.uint8)


def study_sheet(
    pictures: list[np.ndarray], titles: list[str], path: str | os.PathLike[str], title: str
) -> Path:
    """A study's contact sheet: its views (uint8 `[H, W, 3]`, e.g. Grad-CAM overlays) side by
    side at a common height, each at its own aspect ratio and captioned, under `title`.

    Drawn with Pillow rather than matplotlib: a run draws one per reported study.
    """
    from PIL import Image, ImageDraw, ImageFont

    height, gap, caption = 256, 8, 18
    scaled = [
        Image.fromarray(p).resize((max(1, round(p.shape[1] * height / p.shape[0])), height))
        for p in pictures
    ]
    head = caption * (title.count("\n") + 1) + gap
    width = sum(im.width for im in scaled) + gap * (len(scaled) + 1)
    sheet = Image.new("RGB", (width, head + caption + height + gap), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    draw.multiline_text((gap, gap // 2), title, fill="black", font=font, spacing=4)
    x = gap
    for im, text in zip(scaled, titles, strict=True):
        draw.text((x, head), text, fill="black", font=font)
        sheet.paste(im, (x, head + caption))
        x += im.width + gap
    return write_with(path, lambda tmp: sheet.save(tmp, format="PNG"))
