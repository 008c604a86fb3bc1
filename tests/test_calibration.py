"""Calibration and operating points (`mura_tf.evaluators.calibration`) against hand
computations; thresholds come from the dev studies, never the test ones."""

import numpy as np
import pandas as pd
import pytest

from mura_tf.evaluators.calibration import calibration, dev_thresholds, operating_points


def test_brier_ece_and_bins_by_hand():
    labels = np.array([0, 0, 1, 1, 1])
    p = np.array([0.05, 0.15, 0.12, 0.85, 0.95])
    got = calibration(labels, p, bins=10)
    assert got["brier"] == pytest.approx(np.mean((p - labels) ** 2))
    # bins: [0, .1): {0.05} -> 0 vs 0.05; [.1, .2): {0.15, 0.12} -> 0.5 vs 0.135;
    # [.8, .9): {0.85} -> 1 vs 0.85; [.9, 1]: {0.95} -> 1 vs 0.95
    expected = (1 * 0.05 + 2 * abs(0.5 - 0.135) + 1 * 0.15 + 1 * 0.05) / 5
    assert got["ece"] == pytest.approx(expected)
    assert [b["studies"] for b in got["bins"]] == [1, 2, 1, 1]
    assert calibration([1], [1.0])["bins"][0]["low"] == 0.9  # 1.0 falls in the last bin


def test_dev_thresholds_by_hand():
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9, 0.35, 0.65, 0.8, 0.95])
    got = dev_thresholds(labels, p)
    # t = 0.65: sensitivity 3/4, specificity 8/10 (0.7 and 0.9 are at or above it), Youden
    # 0.55, more than at any other score (t = 0.35: 1 + 5/10 - 1 = 0.5; t = 0.8: 0.4).
    assert got["youden"] == 0.65
    assert got["specificity_90"] == 0.8  # the lowest t with 9 of 10 normals below it
    assert got["specificity_95"] == 0.95  # all 10 below: only 0.95 and up
    assert dev_thresholds([1, 1], [0.2, 0.3]) == {}


def test_operating_points_take_their_thresholds_from_dev():
    rng = np.random.default_rng(0)
    dev = pd.DataFrame({"label": rng.integers(0, 2, 80)})
    dev["probability"] = np.clip(0.3 + 0.3 * dev["label"] + rng.normal(0, 0.15, 80), 0, 1)
    test = pd.DataFrame({"label": rng.integers(0, 2, 120)})
    test["probability"] = np.clip(0.2 + 0.3 * test["label"] + rng.normal(0, 0.2, 120), 0, 1)
    got = operating_points(dev, test, resamples=500)
    chosen = dev_thresholds(dev["label"], dev["probability"])
    assert got["protocol"]["threshold"] == 0.5
    for name, threshold in chosen.items():
        point = got[name]
        assert point["threshold"] == threshold
        y, decided = test["label"] == 1, test["probability"] >= threshold
        assert point["sensitivity"] == pytest.approx(decided[y].mean())
        assert point["specificity"] == pytest.approx((~decided[~y]).mean())
        low, high = point["specificity_ci"]
        assert low <= point["specificity"] <= high
