"""Grad-CAM against the radiologists' fracture outlines (FracAtlas): did the model look at the
fracture?

Two scores per fractured film, both on the film as displayed at its own size (the map is cut
to the film's part of the model's input frame and resized, `pipeline.to_film`):

- the pointing game (Zhang et al., "Top-down neural attention by excitation backprop", ECCV
  2016): a hit when the map's maximum lies inside a fracture box grown by `TOLERANCE` pixels
  on every side (their 15 px). Its chance level is the share of the film those grown boxes
  cover: where a uniformly random point lands.
- the map's mass inside the fracture polygons (the "energy-based pointing game" of
  Score-CAM, Wang et al. 2020), against the polygons' share of the film: a map that ignores
  the fracture puts about the share there; one that finds it puts several times more.

A map that is zero everywhere (Grad-CAM's ReLU can zero it) points nowhere: a miss, with its
mass spread evenly (mass = share). `localisation_metrics` summarises overall and per part.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from mura_tf.data.fracatlas import Outline

TOLERANCE = 15  # pixels of the film as displayed, as in Zhang et al.'s pointing game


def polygon_mask(outline: Outline) -> np.ndarray:
    """bool `[H, W]`: the film's pixels inside any fracture polygon (boxes where a fracture
    has no polygon)."""
    width, height = outline.size
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in outline.polygons:
        draw.polygon([tuple(p) for p in polygon], fill=1)
    if not outline.polygons:
        for x0, y0, x1, y1 in outline.boxes:
            draw.rectangle([x0, y0, x1, y1], fill=1)
    return np.asarray(canvas, bool)


def box_mask(outline: Outline, tolerance: float = TOLERANCE) -> np.ndarray:
    """bool `[H, W]`: pixels inside any fracture box grown by `tolerance` pixels, both ends
    included as Pillow fills the polygons (`polygon_mask`)."""
    width, height = outline.size
    ys, xs = np.arange(height)[:, None], np.arange(width)[None, :]
    mask = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in outline.boxes:
        mask |= (
            (xs >= x0 - tolerance) & (xs <= x1 + tolerance)
            & (ys >= y0 - tolerance) & (ys <= y1 + tolerance)
        )  # fmt: skip
    return mask


def score_map(heat: np.ndarray, outline: Outline, tolerance: float = TOLERANCE) -> dict:
    """The scores of one map over one film.

    Args:
        heat: float `[H, W]`, non-negative, the film's size (`outline.size` is (W, H)).
        outline: the film's fracture outlines.
    Returns:
        `hit` (bool), `pointing_chance`, `mass` (share of the map inside the polygons) and
        `share` (the polygons' share of the film).
    """
    width, height = outline.size
    if heat.shape != (height, width):
        raise ValueError(f"a map of {heat.shape} for a film of {(height, width)}")
    inside, near = polygon_mask(outline), box_mask(outline, tolerance)
    share = float(inside.mean())
    total = float(heat.sum())
    if total <= 0:
        return {"hit": False, "pointing_chance": float(near.mean()), "mass": share, "share": share}
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return {
        "hit": bool(near[peak]),
        "pointing_chance": float(near.mean()),
        "mass": float(heat[inside].sum() / total),
        "share": share,
    }


def score_films(
    predictions: pd.DataFrame,
    outlines: Mapping[str, Outline],
    cams: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
    batch_size: int = 16,
) -> pd.DataFrame:
    """One row of `score_map` per film of `predictions` (its `path`, `part`, `label`,
    `probability`) that is fractured and has an outline, with those columns kept.

    Args:
        cams: encoded films (object `[N]`) -> (probability `[N]`, cam `[N, S, S]`, content
            `[N, 4]`), the export's `grad_cam_images` (`mura_tf.serving.gradcam.film_cams`).
    """
    # TensorFlow only where films are scored; the scores' summary stays free of it.
    from mura_tf.data.pipeline import to_film

    keep = predictions[(predictions["label"] == 1) & predictions["path"].isin(outlines)]
    rows = []
    for start in range(0, len(keep), batch_size):
        chunk = keep.iloc[start : start + batch_size]
        data = np.array([Path(p).read_bytes() for p in chunk["path"]], dtype=object)
        _, maps, contents = cams(data)
        for row, cam, content in zip(chunk.itertuples(), maps, contents, strict=True):
            outline = outlines[row.path]
            width, height = outline.size
            heat = to_film(cam, content, (height, width))
            rows.append(
                {
                    "path": row.path,
                    "part": row.part,
                    "probability": row.probability,
                    **score_map(heat, outline),
                }
            )
    columns = ["path", "part", "probability", "hit", "pointing_chance", "mass", "share"]
    return pd.DataFrame(rows, columns=columns)


def _summary(rows: pd.DataFrame) -> dict:
    return {
        "films": int(len(rows)),
        "pointing_hit_rate": float(rows["hit"].mean()),
        "pointing_chance": float(rows["pointing_chance"].mean()),
        "mass_in_outline": float(rows["mass"].mean()),
        "outline_share": float(rows["share"].mean()),
    }


def localisation_metrics(scores: pd.DataFrame) -> dict:
    """Mean scores of `score_films` rows overall and per part, with how they were measured."""
    if scores.empty:
        return {}
    out = _summary(scores)
    out["per_part"] = {part: _summary(g) for part, g in scores.groupby("part")}
    out["method"] = (
        f"fractured test films with outlines; pointing game: the map's maximum within "
        f"{TOLERANCE} px of a fracture box; mass: the map's share inside the fracture "
        "polygons, against the polygons' share of the film"
    )
    return out
