import numpy as np
import pandas as pd
import pytest

from mura_tf.data.mura import load_mura
from mura_tf.data.parts import PARTS
from mura_tf.data.splits import label_fraction, make_splits, patient_split
from mura_tf.errors import ConfigError, MuraDataError


def fake_catalogue(n_patients: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A MURA-shaped catalogue without images: patients with 1-2 studies of 1-5 views."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        parts = [PARTS[p % 7]] + ([PARTS[(p + 3) % 7]] if rng.random() < 0.1 else [])
        for k, part in enumerate(parts):
            label = int(rng.random() < 0.4)
            study = f"train/{part}/patient{p:05d}/study{k + 1}"
            for v in range(int(rng.integers(1, 6))):
                rows.append(
                    (
                        "train",
                        part,
                        f"patient{p:05d}",
                        study,
                        v + 1,
                        label,
                        f"{study}/image{v + 1}.png",
                    )
                )
    return pd.DataFrame(
        rows, columns=["split", "part", "patient", "study", "view", "label", "path"]
    )


def test_no_patient_is_in_two_splits(synthetic_dir):
    frame = load_mura(synthetic_dir, check_images=False)
    # the data must contain patients imaged at two parts for this to mean anything
    assert (frame.groupby("patient")["part"].nunique() > 1).any()
    s = make_splits(frame, dev_fraction=0.2, seed=3)
    assert not set(s.train["patient"]) & set(s.dev["patient"])
    assert not set(s.train["patient"]) & set(s.test["patient"])
    assert len(s.train) + len(s.dev) == (frame["split"] == "train").sum()


def test_test_split_is_muras_valid_split(synthetic_dir):
    frame = load_mura(synthetic_dir, check_images=False)
    s = make_splits(frame, 0.1)
    assert s.test["path"].tolist() == frame.loc[frame["split"] == "valid", "path"].tolist()
    assert set(s.dev["split"]) == {"train"}


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.15])
def test_dev_split_is_stratified_by_part_and_label(fraction):
    frame = fake_catalogue()
    rest, dev = patient_split(frame, fraction, seed=0)
    assert abs(len(dev) / len(frame) - fraction) < 0.01
    share = dev.groupby(["part", "label"]).size() / frame.groupby(["part", "label"]).size()
    assert share.between(fraction - 0.03, fraction + 0.03).all(), share


def test_split_is_deterministic_for_a_seed_and_changes_with_it():
    frame = fake_catalogue(500)
    a = patient_split(frame, 0.1, seed=1)[1]
    b = patient_split(frame, 0.1, seed=1)[1]
    c = patient_split(frame, 0.1, seed=2)[1]
    assert a["path"].tolist() == b["path"].tolist()
    assert a["path"].tolist() != c["path"].tolist()


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, float("nan")])
def test_impossible_dev_fraction_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="dev fraction"):
        patient_split(fake_catalogue(50), bad)


def test_label_fractions_are_nested_stratified_and_hold_both_labels():
    frame = fake_catalogue(2000)
    subsets = {f: label_fraction(frame, f, seed=5) for f in (0.01, 0.1, 1.0)}
    studies = {f: set(s["study"]) for f, s in subsets.items()}
    assert studies[0.01] <= studies[0.1] <= studies[1.0]
    assert studies[1.0] == set(frame["study"])
    all_studies = frame.drop_duplicates("study")
    for f in (0.01, 0.1):
        chosen = subsets[f].drop_duplicates("study")
        assert (chosen.groupby("part")["label"].nunique() == 2).all()
        # each (part, label) stratum gets its share of studies, to within one study
        got = chosen.groupby(["part", "label"]).size()
        want = f * all_studies.groupby(["part", "label"]).size()
        assert ((got - want).abs() <= 1).all(), pd.concat([got, want], axis=1)
        # whole studies: every view of a chosen study comes along
        assert len(subsets[f]) == frame["study"].isin(studies[f]).sum()


def test_tiny_fraction_still_holds_one_study_of_each_label_per_part(synthetic_dir):
    train = make_splits(load_mura(synthetic_dir, check_images=False), 0.1).train
    subset = label_fraction(train, 0.01).drop_duplicates("study")
    assert (subset.groupby(["part", "label"]).size() == 1).all()
    assert subset["part"].nunique() == train["part"].nunique()


def test_label_fraction_without_both_labels_is_a_clear_error():
    frame = fake_catalogue(200)
    only_normal = frame[(frame["part"] != "XR_HAND") | (frame["label"] == 0)]
    with pytest.raises(MuraDataError, match="XR_HAND: it has no abnormal study"):
        label_fraction(only_normal, 0.1)
