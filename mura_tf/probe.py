"""Linear probes: how much of the abnormality label a frozen encoder's features carry."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mura_tf.data.pipeline import PipelineConfig, make_dataset
from mura_tf.metrics import study_level_metrics


def pooled_features(
    backbone: keras.Model, frame: pd.DataFrame, config: PipelineConfig, batch_size: int = 64
) -> np.ndarray:
    """Globally average-pooled backbone features, `[len(frame), C]`, in the frame's order."""
    inputs = keras.Input(backbone.input_shape[1:])
    encoder = keras.Model(
        inputs, keras.layers.GlobalAveragePooling2D()(backbone(inputs, training=False))
    )
    features = encoder.predict(make_dataset(frame, config, batch_size=batch_size), verbose=0)
    return np.asarray(features, np.float32)  # bfloat16 under mixed precision


def linear_probe(
    backbone: keras.Model, train: pd.DataFrame, test: pd.DataFrame, config: PipelineConfig
) -> dict:
    """Fit a logistic regression on frozen features of `train`, evaluate on `test`.

    Returns:
        The `metrics.json` document of `study_level_metrics` for the probe's test predictions.
    """
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
    probe.fit(pooled_features(backbone, train, config), train["label"].to_numpy())
    probability = probe.predict_proba(pooled_features(backbone, test, config))[:, 1]
    predictions = test[["path", "part", "patient", "study", "label"]].assign(
        probability=probability
    )
    return study_level_metrics(predictions)
