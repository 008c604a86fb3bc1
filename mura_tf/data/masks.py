"""Fracture outlines as masks in the model's input frame, for outline-guided training.

A film's outline (`fracatlas.Outline`, in the pixels of the film as displayed) is drawn into
the square frame the film itself lands in (`pipeline.resize`: stretched, or scaled to fit and
padded with `keep_aspect`), at a quarter of the input side: the outline head predicts at stride
8 or coarser, so finer masks would carry nothing it can learn. The training pipeline then moves
each mask with its film's flip, rotation, scale and translation (`pipeline.make_dataset`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from mura_tf.data.fracatlas import Outline

MASK_DIVISOR = 4  # mask side = input side / MASK_DIVISOR


def mask_side(image_size: int) -> int:
    """The side of the masks for an input of `image_size` px."""
    return max(1, image_size // MASK_DIVISOR)


def content_box(
    width: int, height: int, size: int, keep_aspect: bool
) -> tuple[float, float, float, float]:
    """Where a film of `width` x `height` lands in the `size` frame: (y0, x0, y1, x1), as
    `tf.image.resize_with_pad` places it (`gradcam._content_box` in TensorFlow)."""
    if not keep_aspect:
        return 0.0, 0.0, float(size), float(size)
    scale = min(size / height, size / width)
    top, left = np.floor((size - height * scale) / 2), np.floor((size - width * scale) / 2)
    return top, left, top + np.floor(height * scale), left + np.floor(width * scale)


SUPERSAMPLE = 4  # drawn at 4x the mask's side, then averaged: a cell holds its share inside


def outline_mask(outline: Outline, image_size: int, keep_aspect: bool) -> np.ndarray:
    """uint8 `[m, m]` (m = `mask_side(image_size)`): each cell's share inside the outline's
    polygons (its boxes where a fracture has no polygon), 0-255, as the film lands in the
    model's input frame."""
    side = mask_side(image_size)
    fine = side * SUPERSAMPLE
    width, height = outline.size
    box = content_box(width, height, image_size, keep_aspect)
    y0, x0, y1, x1 = (v * fine / image_size for v in box)
    sx, sy = (x1 - x0) / width, (y1 - y0) / height
    canvas = Image.new("L", (fine, fine), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in outline.polygons:
        draw.polygon([(x0 + x * sx, y0 + y * sy) for x, y in polygon], fill=255)
    if not outline.polygons:
        for bx0, by0, bx1, by1 in outline.boxes:
            draw.rectangle([x0 + bx0 * sx, y0 + by0 * sy, x0 + bx1 * sx, y0 + by1 * sy], fill=255)
    shares = np.asarray(canvas, np.float32).reshape(side, SUPERSAMPLE, side, SUPERSAMPLE)
    return np.round(shares.mean(axis=(1, 3))).astype(np.uint8)


def outline_masks(
    paths: Sequence[str],
    labels: Sequence[int],
    outlines: Mapping[str, Outline],
    image_size: int,
    keep_aspect: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the films `paths` and whether each is known.

    A film without a fracture (label 0) has an empty mask, known; an abnormal film with an
    outline has its outline; an abnormal film without one has an unknown mask (weight 0 in
    the outline loss), since where its fracture is was never drawn.

    Returns:
        masks uint8 `[N, m, m, 1]` (0 or 255), known float32 `[N]` (1 or 0).
    """
    side = mask_side(image_size)
    masks = np.zeros((len(paths), side, side, 1), np.uint8)
    known = np.zeros(len(paths), np.float32)
    for i, (path, label) in enumerate(zip(paths, labels, strict=True)):
        if int(label) == 0:
            known[i] = 1.0
        elif path in outlines:
            masks[i, ..., 0] = outline_mask(outlines[path], image_size, keep_aspect)
            known[i] = 1.0
    return masks, known
