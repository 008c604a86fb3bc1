"""How far the test probabilities can be trusted as probabilities (calibration), and the
operating points whose thresholds are chosen on the dev films, never on the test films."""

from __future__ import annotations

from dataclasses import dataclass

from mura_tf.evaluators.calibration import calibration, operating_points
from mura_tf.evaluators.metrics import study_predictions
from mura_tf.runs.evaluators.trained import TrainedRun


@dataclass(frozen=True)
class OperatingPoints:
    """`calibration` of the test studies, and `operating_points` chosen on dev."""

    def __call__(self, run: TrainedRun) -> dict:
        test = study_predictions(run.predictions)
        dev = study_predictions(
            run.dev_predictions[["study", "label", "probability"]].assign(part="")
        )
        return {
            "calibration": calibration(test["label"], test["probability"]),
            "operating_points": operating_points(dev, test, seed=run.exp.seed),
        }
