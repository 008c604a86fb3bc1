"""Localisation scoring (`mura_tf.evaluators.localisation`) against hand computations; whether it
tells a trained network from an untrained one is `test_gradcam`'s trained-model test."""

import numpy as np
import pandas as pd
import pytest

from mura_tf.data.fracatlas import Outline
from mura_tf.evaluators.localisation import (
    box_mask,
    localisation_metrics,
    polygon_mask,
    score_map,
)

# A 40 x 20 film (W x H) with one fracture: a 10 x 4 rectangle drawn as a polygon at x 10-19,
# y 5-8 (pixel centres), and its box.
SQUARE = np.array([[10, 5], [19, 5], [19, 8], [10, 8]], float)
OUTLINE = Outline(polygons=(SQUARE,), boxes=((10.0, 5.0, 19.0, 8.0),), size=(40, 20))


def test_masks_are_the_outlines_pixels():
    inside = polygon_mask(OUTLINE)
    assert inside.shape == (20, 40)
    assert inside.sum() == 10 * 4 and inside[5:9, 10:20].all()  # Pillow fills the edges too
    near = box_mask(OUTLINE, tolerance=2)
    assert near.sum() == 14 * 8 and near[3:11, 8:22].all()  # x 8..21, y 3..10


def test_scores_of_a_made_up_map_are_the_hand_computed_ones():
    heat = np.zeros((20, 40))
    heat[6, 12] = 3.0  # the peak, inside the fracture
    heat[0, 0] = 1.0  # some mass outside
    scores = score_map(heat, OUTLINE, tolerance=0)
    assert scores == {
        "hit": True,
        "pointing_chance": 40 / 800,  # the box (10 x 4 pixels) over the film
        "mass": 3 / 4,
        "share": 40 / 800,
    }
    heat[15, 35] = 5.0  # a higher peak far from it
    assert score_map(heat, OUTLINE, tolerance=0)["hit"] is False
    assert score_map(heat, OUTLINE, tolerance=0)["mass"] == pytest.approx(3 / 9)
    heat[:] = 0.0
    heat[4, 30] = 1.0  # one pixel right of the box by 11, above it by 1
    assert score_map(heat, OUTLINE, tolerance=10)["hit"] is False
    assert score_map(heat, OUTLINE, tolerance=11)["hit"] is True


def test_a_uniform_map_scores_the_share_and_a_zero_map_points_nowhere():
    uniform = score_map(np.ones((20, 40)), OUTLINE)
    assert uniform["mass"] == pytest.approx(uniform["share"])
    zero = score_map(np.zeros((20, 40)), OUTLINE)
    assert zero["hit"] is False and zero["mass"] == zero["share"]
    with pytest.raises(ValueError, match="a map of"):
        score_map(np.ones((40, 20)), OUTLINE)


def test_the_summary_is_the_mean_overall_and_per_part():
    scores = pd.DataFrame(
        {
            "part": ["FA_HAND", "FA_HAND", "FA_LEG"],
            "hit": [True, False, True],
            "pointing_chance": [0.1, 0.2, 0.3],
            "mass": [0.5, 0.1, 0.6],
            "share": [0.05, 0.05, 0.2],
        }
    )
    summary = localisation_metrics(scores)
    assert summary["films"] == 3 and summary["pointing_hit_rate"] == pytest.approx(2 / 3)
    assert summary["mass_in_outline"] == pytest.approx(0.4)
    assert summary["per_part"]["FA_HAND"]["pointing_hit_rate"] == 0.5
    assert summary["per_part"]["FA_LEG"]["outline_share"] == pytest.approx(0.2)
    assert localisation_metrics(scores.iloc[:0]) == {}
