"""Paired comparisons (`mura_tf.evaluators.paired`): DeLong's test against the 1988 paper's
definitions written out pair by pair, and the paired bootstrap's sign and coverage of zero."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from mura_tf.evaluators.paired import delong, paired_difference

# The module fixture trains three runs: these tests stay on one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("paired")


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


# Two seeds on one part, and a run on another part: `mura-tf report --compare`.
@pytest.fixture(scope="module")
def three_runs(tiny_runs) -> dict[str, str]:
    runs = (("elbow0", "elbow", 0), ("elbow1", "elbow", 1), ("hand0", "hand", 0))
    return {name: str(tiny_runs(part, seed)) for name, part, seed in runs}


def hand_paired_bootstrap(labels, a, b, resamples, seed, level=0.95):
    """The paired, label-stratified bootstrap of AUROC(a) - AUROC(b) written out from the
    definitions: each resample draws the normal and the abnormal studies with replacement (the
    same draws for both systems), and its AUROC is the Mann-Whitney share of (abnormal,
    normal) pairs the system ranks right, ties counting one half."""
    rng = np.random.default_rng(seed)
    negatives, positives = (np.flatnonzero(labels == value) for value in (0, 1))
    drawn_neg = negatives[rng.integers(0, len(negatives), (resamples, len(negatives)))]
    drawn_pos = positives[rng.integers(0, len(positives), (resamples, len(positives)))]

    def auroc(scores):
        pos, neg = scores[drawn_pos][:, :, None], scores[drawn_neg][:, None, :]
        return ((pos > neg) + 0.5 * (pos == neg)).mean(axis=(1, 2))

    differences = auroc(a) - auroc(b)
    tail = (1 - level) / 2 * 100
    return np.percentile(differences, [tail, 100 - tail])


def test_two_seeds_on_one_part_are_two_rows_and_one_paired_line(three_runs, tmp_path, capsys):
    import json

    from mura_tf.cli import run as run_cli
    from mura_tf.commands.report import main as report

    first, second = three_runs["elbow0"], three_runs["elbow1"]
    assert run_cli(report, ["--compare", first, second, "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "comparison.csv")
    systems = list(dict.fromkeys(table["system"]))
    runs = [f"resnet18_mlp (per part) ({Path(run).name})" for run in (first, second)]
    assert systems == [*runs, "MURA paper (its test set)"], systems
    pairs = pd.read_csv(tmp_path / "paired.csv")
    assert len(pairs) == 1 and "Paired differences" in text
    pair = pairs.iloc[0]
    metrics = [
        json.loads(Path(run, "metrics.json").read_text())["study"] for run in (first, second)
    ]
    assert pair["auc_difference"] == pytest.approx(metrics[0]["auc"] - metrics[1]["auc"], abs=1e-9)
    assert pair["kappa_difference"] == pytest.approx(
        metrics[0]["kappa"] - metrics[1]["kappa"], abs=1e-9
    )

    a, b = (
        pd.read_csv(f"{run}/predictions.csv")
        .groupby("study")
        .agg(label=("label", "first"), probability=("probability", "mean"))
        for run in (first, second)
    )
    labels = a["label"].to_numpy()
    low, high = hand_paired_bootstrap(labels, a["probability"].to_numpy(),
                                      b["probability"].to_numpy(), 10_000, seed=0)  # fmt: skip
    assert (pair["auc_low"], pair["auc_high"]) == pytest.approx((low, high), abs=1e-12)
    with np.errstate(invalid="ignore", divide="ignore"):
        _, p = delong_by_definition(
            labels, a["probability"].to_numpy(), b["probability"].to_numpy()
        )
    # a difference without variance (few test studies ranked alike) is p = 1 by convention
    assert pair["delong_p"] == pytest.approx(1.0 if np.isnan(p) else p, rel=1e-9)


def test_per_part_runs_on_disjoint_parts_still_merge(three_runs):
    from mura_tf.report.comparison import comparison_rows, paired_table

    elbow0, elbow1, hand0 = (three_runs[k] for k in ("elbow0", "elbow1", "hand0"))
    (merged,) = comparison_rows([elbow0, hand0])
    assert merged.name == "resnet18_mlp (per part)" and merged.runs == (elbow0, hand0)
    assert set(merged.predictions["part"]) == {"XR_ELBOW", "XR_HAND"}
    # a second seed on the elbow is a row of its own, paired on the elbow studies
    rows = comparison_rows([elbow0, hand0, elbow1])
    assert [r.runs for r in rows] == [(elbow0, hand0), (elbow1,)]
    assert rows[1].name == f"resnet18_mlp (per part) ({Path(elbow1).name})"
    (pair,) = paired_table(rows).itertuples()
    elbow_studies = pd.read_csv(f"{elbow1}/predictions.csv")["study"].nunique()
    assert pair.studies == elbow_studies and pair.note == ""


def test_a_pair_with_one_label_in_common_is_shown_with_its_reason():
    from mura_tf.report.comparison import Row, paired_markdown, paired_table

    y = np.r_[np.ones(20), np.zeros(30)].astype(int)
    rng = np.random.default_rng(1)
    everything = studies(y, rng.random(50))
    normals = everything[everything["label"] == 0]
    pairs = paired_table([Row("a", everything, ("a",)), Row("b", normals, ("b",))])
    (pair,) = pairs.itertuples()
    assert pair.studies == 30 and np.isnan(pair.auc_difference) and np.isnan(pair.delong_p)
    assert "one label only" in pair.note
    assert "| a - b | 30 | undefined | undefined | undefined |" in paired_markdown(pairs)
