"""The trained run every evaluator reads, and the one interface an evaluator has."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import keras
import pandas as pd
import tensorflow as tf

from mura_tf.data.pipeline import make_dataset
from mura_tf.data.splits import Splits
from mura_tf.runs.batches import pipeline_config
from mura_tf.runs.experiment import Experiment
from mura_tf.serving.gradcam import film_cams

PREDICTION_COLUMNS = ["path", "part", "patient", "study", "label"]


@dataclass
class TrainedRun:
    """A supervised run once its best epoch is back in the model.

    `model` is the classifier (`[N, S, S, 3]` images -> `[N, 1]` probabilities); `guided`
    the outline-guided model around it where the run had `--outline-weight`; `test` its test
    batches in `splits.test`'s order; `selection` which epoch was handed over and why;
    `extra` what earlier stages measured (the body-part stage); `first_batch` the first
    training batch as the model saw it. The predictions and the Grad-CAM function are made
    once, when an evaluator first asks.
    """

    exp: Experiment
    run_dir: Path
    model: keras.Model
    guided: keras.Model | None
    normalization: str
    data_dir: str
    splits: Splits
    test: tf.data.Dataset
    first_batch: Any
    selection: dict
    extra: dict = field(default_factory=dict)

    @functools.cached_property
    def predictions(self) -> pd.DataFrame:
        """The test films (`path, part, patient, study, label`) with their `probability`."""
        probabilities = self.model.predict(self.test, verbose=0)[:, 0]
        return self.splits.test[PREDICTION_COLUMNS].assign(probability=probabilities)

    @functools.cached_property
    def dev_predictions(self) -> pd.DataFrame:
        """The dev films, as `predictions`: what settings and thresholds are chosen on."""
        dev = make_dataset(
            self.splits.dev, pipeline_config(self.exp, self.normalization, training=False),
            batch_size=self.exp.eval_batch_size,
        )  # fmt: skip
        probabilities = self.model.predict(dev, verbose=0)[:, 0]
        return self.splits.dev[PREDICTION_COLUMNS].assign(probability=probabilities)

    @functools.cached_property
    def cams(self):
        """Encoded films -> (probability, Grad-CAM, content box): `serving.gradcam.film_cams`."""
        exp = self.exp
        return film_cams(self.model, self.normalization, exp.image_size, exp.keep_aspect)


class RunEvaluator(Protocol):
    """One thing a finished run computes and writes: `evaluator(run)` returns its entries
    of `metrics.json`, in the order they are written, and writes its files in `run.run_dir`."""

    def __call__(self, run: TrainedRun) -> dict: ...
