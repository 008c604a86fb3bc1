import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from mura_tf.evaluators.metrics import (
    METRICS,
    binary_metrics,
    macro_f1,
    metrics_table,
    study_level_metrics,
)


def test_binary_metrics_match_a_hand_computation():
    labels = [1, 1, 1, 0, 0, 0, 0, 1]
    probs = [0.9, 0.6, 0.2, 0.1, 0.7, 0.3, 0.4, 0.8]
    # predictions at 0.5: 1 1 0 0 1 0 0 1 -> TP 3, FN 1, FP 1, TN 3
    m = binary_metrics(labels, probs)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    # kappa = (p_o - p_e) / (1 - p_e), p_e = 0.5*0.5 + 0.5*0.5
    assert m["kappa"] == pytest.approx((0.75 - 0.5) / 0.5)
    # AUC: share of (abnormal, normal) pairs ranked correctly; 0.9 and 0.8 beat all four
    # normals, 0.6 beats three, 0.2 beats one: 12 of 16
    assert m["auc"] == pytest.approx(12 / 16)


def test_undefined_metrics_are_none_not_nan():
    m = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9])
    assert m["auc"] is None
    assert m["accuracy"] == pytest.approx(2 / 3)


def random_predictions(seed=0, studies=60):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(studies):
        part = ["XR_ELBOW", "XR_HAND", "XR_WRIST"][s % 3]
        label = int(rng.random() < 0.4)
        for _ in range(int(rng.integers(1, 6))):
            p = float(np.clip(rng.normal(0.35 + 0.3 * label, 0.25), 0, 1))
            rows.append((f"{part}/study{s}", part, label, p))
    return pd.DataFrame(rows, columns=["study", "part", "label", "probability"])


def test_study_level_metrics_follow_muras_protocol_and_match_sklearn():
    frame = random_predictions()
    doc = study_level_metrics(frame)
    # independent aggregation: plain dict of lists, mean per study
    per_study: dict[str, list[float]] = {}
    label, part = {}, {}
    for row in frame.itertuples():
        per_study.setdefault(row.study, []).append(row.probability)
        label[row.study], part[row.study] = row.label, row.part
    ids = sorted(per_study)
    y = np.array([label[i] for i in ids])
    p = np.array([sum(per_study[i]) / len(per_study[i]) for i in ids])
    reference = {
        "accuracy": sk.accuracy_score(y, p >= 0.5),
        "precision": sk.precision_score(y, p >= 0.5),
        "recall": sk.recall_score(y, p >= 0.5),
        "f1": sk.f1_score(y, p >= 0.5),
        "auc": sk.roc_auc_score(y, p),
        "kappa": sk.cohen_kappa_score(y, p >= 0.5),
    }
    for key in METRICS:
        assert doc["study"][key] == pytest.approx(reference[key]), key
    assert doc["image"]["auc"] == pytest.approx(
        sk.roc_auc_score(frame["label"], frame["probability"])
    )
    assert doc["n_images"] == len(frame) and doc["n_studies"] == len(ids)
    hand = [i for i in ids if part[i] == "XR_HAND"]
    yh = np.array([label[i] for i in hand])
    ph = np.array([np.mean(per_study[i]) for i in hand])
    assert doc["per_part"]["XR_HAND"]["study"]["auc"] == pytest.approx(sk.roc_auc_score(yh, ph))
    assert set(doc["per_part"]) == {"XR_ELBOW", "XR_HAND", "XR_WRIST"}
    assert set(doc) == {"image", "study", "per_part", "n_images", "n_studies"}


def test_macro_f1_matches_a_hand_computation():
    # class 0: tp 1 fp 0 fn 1 -> f1 2/3; class 1: tp 1 fp 1 fn 0 -> 2/3; class 2: tp 1 -> 1
    assert macro_f1([0, 0, 1, 2], [0, 1, 1, 2]) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_metrics_table_has_a_row_per_part_and_all():
    table = metrics_table(study_level_metrics(random_predictions()))
    assert list(table.index) == ["all", "XR_ELBOW", "XR_HAND", "XR_WRIST"]
    assert "study_auc" in table.columns and "image_auc" in table.columns
