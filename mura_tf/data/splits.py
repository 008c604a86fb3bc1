"""Train / dev / test splits at patient level, and nested label fractions.

Both reports split MURA's train images at random, so one patient's views (often of the same
study) land on both sides and the dev score is optimistic. Here every split is by patient.

scikit-learn's `StratifiedGroupKFold` only gives fractions of the form 1/k and cannot nest label
fractions, so the assignment below is written out: patients are grouped into strata by their
dominant (part, label), shuffled with the seed, and taken until the stratum's image quota is met.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mura_tf.data.datasets import dataset_of_parts
from mura_tf.errors import ConfigError, MuraDataError


@dataclass(frozen=True)
class Splits:
    """Three disjoint DataFrames in the catalogue's columns (see `mura.load_mura`)."""

    train: pd.DataFrame
    dev: pd.DataFrame
    test: pd.DataFrame


def _check_fraction(name: str, value: float, low_open: bool = True) -> None:
    ok = (0.0 < value < 1.0) if low_open else (0.0 < value <= 1.0)
    if not ok or math.isnan(value):
        interval = "(0, 1)" if low_open else "(0, 1]"
        raise ConfigError(f"{name} must be in {interval}, got {value}")


def _stratum_of(frame: pd.DataFrame, group: str) -> pd.Series:
    """Each group's dominant `part/label` by image count (ties broken by name)."""
    counts = (
        frame.assign(stratum=frame["part"] + "/" + frame["label"].astype(str))
        .groupby([group, "stratum"])
        .size()
        .reset_index(name="n")
        .sort_values([group, "n", "stratum"], ascending=[True, False, True], kind="stable")
    )
    return counts.drop_duplicates(group).set_index(group)["stratum"]


def patient_split(
    frame: pd.DataFrame, fraction: float, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split `frame` into (rest, held_out) with about `fraction` of the images held out.

    No patient is on both sides. Patients are stratified by their dominant (part, label), so
    every part and label keeps its share. Deterministic for a given `seed`.
    """
    _check_fraction("dev fraction", fraction)
    sizes = frame.groupby("patient").size()
    strata = _stratum_of(frame, "patient")
    rng = np.random.default_rng(seed)
    held: list[str] = []
    for stratum in sorted(strata.unique()):
        patients = np.array(sorted(strata.index[strata == stratum]))
        patients = patients[rng.permutation(len(patients))]
        counts = sizes.loc[patients].to_numpy()
        quota = fraction * counts.sum()
        cumulative = np.cumsum(counts)
        # The first k patients whose image total is closest to the quota; at least one patient
        # whenever the stratum has two, so small strata are represented on both sides.
        k = int(np.argmin(np.abs(np.concatenate([[0], cumulative]) - quota)))
        if len(patients) >= 2:
            k = min(max(k, 1), len(patients) - 1)
        held.extend(patients[:k])
    mask = frame["patient"].isin(set(held))
    return frame[~mask], frame[mask]


def make_splits(frame: pd.DataFrame, dev_fraction: float = 0.1, seed: int = 0) -> Splits:
    """Train, dev and test from a catalogue, as its dataset splits (`DatasetInfo.split_scheme`).

    MURA: train and dev from MURA's `train` split (by patient), test = MURA's `valid` split.
    FracAtlas: the catalogue's fixed `train`, `valid`, `test` (`mura_tf.data.fracatlas`);
    `dev_fraction` and `seed` do not change it. A user's own films: as MURA (test is their
    `test` split) or, with all three splits given, as FracAtlas (`mura_tf.data.manifest`).

    Args:
        frame: a catalogue from `catalogue.load_catalogue` with every split (or only `train`,
            then test is empty).
        dev_fraction: share of training images held out for model selection (0.10 in report
            000, 0.20 in report 002).
        seed: the split is a pure function of the catalogue and the seed.
    """
    train_all = frame[frame["split"] == "train"]
    if train_all.empty:
        raise MuraDataError("the catalogue has no images of its train split to split")
    dataset = dataset_of_parts(frame["part"].unique())
    if dataset.split_scheme == "fixed":
        train, dev, test = (frame[frame["split"] == s] for s in ("train", "valid", "test"))
        return Splits(*(f.reset_index(drop=True) for f in (train, dev, test)))
    train, dev = patient_split(train_all, dev_fraction, seed)
    test = frame[frame["split"] == dataset.test_split]
    return Splits(
        train.reset_index(drop=True), dev.reset_index(drop=True), test.reset_index(drop=True)
    )


def label_fraction(frame: pd.DataFrame, fraction: float, seed: int = 0) -> pd.DataFrame:
    """The labelled subset for semi-supervised fine-tuning: `fraction` of the studies.

    Studies (labels are per study) are ranked once at random within each (part, label) stratum,
    and a fraction takes the first `max(1, round(fraction * n))` of each stratum. So subsets are
    stratified, nested (the 1% subset lies inside the 10% subset for the same seed) and hold both
    labels of every part they cover.

    Raises:
        MuraDataError: if some part in `frame` lacks normal or abnormal studies altogether.
    """
    _check_fraction("label fraction", fraction, low_open=False)
    studies = frame.drop_duplicates("study")[["study", "part", "label"]]
    for part, labels in studies.groupby("part")["label"]:
        missing = {0, 1} - set(labels)
        if missing:
            kind = "normal" if 0 in missing else "abnormal"
            raise MuraDataError(
                f"cannot take a label fraction of {part}: it has no {kind} study in the "
                "training split, so no subset can hold both labels"
            )
    rng = np.random.default_rng(seed)
    keep: list[str] = []
    for (_, _), group in studies.sort_values("study").groupby(["part", "label"], sort=True):
        order = group["study"].to_numpy()[rng.permutation(len(group))]
        keep.extend(order[: max(1, round(fraction * len(group)))])
    return frame[frame["study"].isin(set(keep))].reset_index(drop=True)
