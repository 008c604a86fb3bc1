"""Published results for the experiments this project reproduces, to set beside a run's own.

All of them come from real MURA (v1.1) with ImageNet weights; a run on the synthetic set is not
comparable to them, and the run report says so.

- The MURA paper (Rajpurkar et al., arXiv 1712.06957, Table 2, the model column): study-level
  Cohen's kappa of DenseNet169 per body part on the paper's 207-study test set (radiologist
  majority as gold standard), not on MURA's public valid split. The paper's text is not
  available offline here: overall 0.705, finger 0.389 and wrist 0.931 agree with the figures
  quoted in this project's issue, and the order agrees with the abstract (the model beats the
  best radiologist on finger, equals them on wrist); elbow, forearm, hand, humerus and shoulder
  are transcribed from Table 2 and were not re-checked against it in this environment.
- Report 000 (ResNet18 transfer learning, `../shared/seeds`): test accuracy per experiment.
- Report 002 (DenseNet169 baseline and SimCLR fine-tuning, Table 4): study accuracy, precision
  and recall per body part and label fraction.

For FracAtlas, what others report on the whole release (`FRACATLAS_ELSEWHERE`, as issue #46
lists them): each on a split of its own, and all but one from ImageNet weights, so a guide to
what the task allows, not a comparison with a run on the release's fixed split.
"""

from __future__ import annotations

from dataclasses import dataclass

from mura_tf.data.datasets import FRACATLAS
from mura_tf.data.parts import PARTS

MURA_PAPER = "MURA paper (Rajpurkar et al. 2017), Table 2"
REPORT_000 = "report 000"
REPORT_002 = "report 002, Table 4"

# Study-level kappa of the paper's model per part; "all" is the paper's overall figure.
MURA_PAPER_KAPPA = {
    "XR_ELBOW": 0.710,
    "XR_FINGER": 0.389,
    "XR_FOREARM": 0.737,
    "XR_HAND": 0.851,
    "XR_HUMERUS": 0.600,
    "XR_SHOULDER": 0.729,
    "XR_WRIST": 0.931,
    "all": 0.705,
}

# The paper's 95% intervals of those kappas (Table 2), as the competition published them. Its
# evaluation script computes an interval as kappa +- 1.96 x the kappa's variance, using the
# variance where the standard error (its square root) belongs; variances well below 1 make
# those intervals too narrow (README, "Confidence intervals"). This project's intervals are a
# bootstrap over studies (`mura_tf.evaluators.intervals`), not that formula.
MURA_PAPER_KAPPA_CI = {
    "XR_ELBOW": (0.674, 0.745),
    "XR_FINGER": (0.332, 0.446),
    "XR_FOREARM": (0.707, 0.766),
    "XR_HAND": (0.830, 0.871),
    "XR_HUMERUS": (0.558, 0.642),
    "XR_SHOULDER": (0.697, 0.760),
    "XR_WRIST": (0.922, 0.940),
    "all": (0.700, 0.710),
}

FRACATLAS_OTHERS = "FracAtlas, elsewhere (own splits)"
# (model, metric, value, 95% interval); "pointing game" is Grad-CAM's, as this project scores it.
FRACATLAS_ELSEWHERE = (
    ("small CNN from scratch, 224 px", "auc", 0.686, None),
    ("ResNet18 from ImageNet weights, 224 px", "auc", 0.912, None),
    ("ResNet18 from ImageNet weights, 224 px", "pointing game", 0.23, None),
    ("ResNet18 from ImageNet weights, 448 px", "auc", 0.944, None),
    ("ResNet18 from ImageNet weights, 448 px", "pointing game", 0.54, None),
    ("the same with localisation losses (github silvergjeka22/bone-fracture-detection)",
     "pointing game", 0.67, None),
    ("DenseNet121 from ImageNet weights", "auc", 0.912, (0.883, 0.939)),
)  # fmt: skip

# recipe -> (parts the report trained on, test accuracy)
REPORT_000_ACCURACY = {
    "resnet18_linear": ("all", 0.6951),
    "resnet18_mlp": ("all", 0.7217),
    "resnet18_bodypart": ("all", 0.591),
    "resnet18_per_part": ("XR_HUMERUS", 0.8892),
}

# (experiment, part) -> (accuracy, precision, recall); experiments as report 002 names them.
REPORT_002_TABLE_4 = {
    ("Baseline", "XR_ELBOW"): (0.822, 0.506, 0.333),
    ("Finetune 1pct", "XR_ELBOW"): (0.475, 0.460, 0.356),
    ("Finetune 10pct", "XR_ELBOW"): (0.606, 0.629, 0.495),
    ("Finetune 100pct", "XR_ELBOW"): (0.621, 0.635, 0.552),
    ("Baseline", "XR_HAND"): (0.784, 0.479, 0.225),
    ("Finetune 1pct", "XR_HAND"): (0.578, 0.472, 0.227),
    ("Finetune 10pct", "XR_HAND"): (0.617, 0.582, 0.243),
    ("Finetune 100pct", "XR_HAND"): (0.608, 0.560, 0.222),
    ("Baseline", "XR_SHOULDER"): (0.778, 0.540, 0.475),
    ("Finetune 1pct", "XR_SHOULDER"): (0.525, 0.514, 0.708),
    ("Finetune 10pct", "XR_SHOULDER"): (0.589, 0.583, 0.593),
    ("Finetune 100pct", "XR_SHOULDER"): (0.628, 0.633, 0.589),
}


@dataclass(frozen=True)
class Published:
    """One published figure: where from, for which part ("all": every part), which metric,
    and its 95% interval where the source gives one."""

    source: str
    experiment: str
    part: str
    metric: str
    value: float
    interval: tuple[float, float] | None = None


def published_for(
    recipe: str, label: str, parts: list[str], every_part: bool = False
) -> list[Published]:
    """The published figures that correspond to a run of `recipe` (named `label` in tables)
    on `parts` (canonical names): the same experiment in its report, and the MURA paper's
    kappa per part (and overall, for a run on every part). For a run on every part of
    FracAtlas (`every_part`: its setting `part` is `all`), what others report on the whole
    release; none for another dataset's parts."""
    if parts and all(part.startswith(FRACATLAS.prefix) for part in parts):
        if not every_part:
            return []
        return [
            Published(FRACATLAS_OTHERS, model, "all", metric, value, interval)
            for model, metric, value, interval in FRACATLAS_ELSEWHERE
        ]
    if not set(parts) <= set(PARTS):
        return []
    every_part = set(parts) == set(PARTS)
    rows = []
    if recipe in REPORT_000_ACCURACY:  # only where the run covers the report's parts
        part, accuracy = REPORT_000_ACCURACY[recipe]
        if (part == "all" and every_part) or part in parts:
            rows.append(Published(REPORT_000, recipe, part, "accuracy", accuracy))
    for (experiment, part), values in REPORT_002_TABLE_4.items():
        if experiment == label and part in parts:
            for metric, value in zip(("accuracy", "precision", "recall"), values, strict=True):
                rows.append(Published(REPORT_002, experiment, part, metric, value))
    for part in [*parts, "all"] if every_part else parts:
        rows.append(
            Published(
                MURA_PAPER,
                "DenseNet169 (paper)",
                part,
                "kappa",
                MURA_PAPER_KAPPA[part],
                MURA_PAPER_KAPPA_CI[part],
            )  # fmt: skip
        )
    return rows
