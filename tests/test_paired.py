"""Paired comparisons (`mura_tf.evaluators.paired`): DeLong's test against the 1988 paper's
definitions written out pair by pair, and the paired bootstrap's sign and coverage of zero."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from mura_tf.evaluators.paired import delong, paired_difference


def delong_by_definition(y, a, b):
    """DeLong et al. (1988): structural components V10 (per positive) and V01 (per negative)
    from the kernel psi (1 if the positive scores higher, 1/2 on ties), their covariances
    S10 and S01, Var(AUC_a - AUC_b) = [1, -1] (S10 / m + S01 / n) [1, -1]'."""
    y = np.asarray(y).astype(bool)
    comps10, comps01 = [], []
    for s in (a, b):
        x, z = s[y], s[~y]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        comps10.append(psi.mean(axis=1))
        comps01.append(psi.mean(axis=0))
    m, n = y.sum(), (~y).sum()
    s10, s01 = np.cov(np.vstack(comps10)), np.cov(np.vstack(comps01))
    auc = [c.mean() for c in comps10]
    var = np.array([1, -1]) @ (s10 / m + s01 / n) @ np.array([1, -1])
    z = (auc[0] - auc[1]) / np.sqrt(var)
    return auc, 2 * norm.sf(abs(z))


def test_delong_equals_the_papers_definition_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    a = np.round(y * 0.8 + rng.normal(0, 1, 120), 1)  # rounded: many ties
    b = np.round(y * 0.3 + 0.5 * a + rng.normal(0, 1, 120), 1)  # correlated with a
    got = delong(y, a, b)
    auc, p = delong_by_definition(y, a, b)
    np.testing.assert_allclose(got["auc"], auc, atol=1e-12)
    assert got["p"] == pytest.approx(p, rel=1e-9)
    assert delong(y, a, a)["p"] == 1.0  # no difference, no variance


def studies(labels, probabilities, views=2):
    return pd.DataFrame(
        {
            "study": np.repeat([f"s{i}" for i in range(len(labels))], views),
            "label": np.repeat(labels, views),
            "probability": np.repeat(probabilities, views),
        }
    )


def test_a_better_system_differs_by_more_than_noise_and_a_copy_does_not():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(60), np.zeros(90)].astype(int)
    good = norm.cdf(rng.normal(2.0 * y, 1))
    poor = norm.cdf(rng.normal(0.3 * y, 1))
    found = paired_difference(studies(y, good), studies(y, poor), resamples=2000)
    assert found["studies"] == 150
    low, high = found["auc"]["interval"]
    assert 0 < low < found["auc"]["difference"] < high
    assert found["delong"]["p"] < 0.001
    same = paired_difference(studies(y, good), studies(y, good), resamples=500)
    assert same["auc"]["interval"] == [0.0, 0.0] and same["kappa"]["difference"] == 0.0
    # Only the studies both scored count.
    both = studies(y, good)
    some = both[both["study"].isin([f"s{i}" for i in range(30, 90)])]  # 30 of each label
    fewer = paired_difference(some, studies(y, poor), resamples=200)
    assert fewer["studies"] == 60
    one_label = paired_difference(both.iloc[:40], studies(y, poor), resamples=200)
    assert one_label["delong"] is None and one_label["auc"]["interval"] is None
