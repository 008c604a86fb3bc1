"""Linear probes: how much of the abnormality label a frozen encoder's features carry."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mura_tf.data.pipeline import PipelineConfig, make_dataset
from mura_tf.evaluators.metrics import study_level_metrics


def pooled_encoder(backbone: keras.Model) -> keras.Model:
    """`backbone` (frozen, `training=False`) then global average pooling: images
    `[B, S, S, 3]` to features `[B, C]`, sharing the backbone's weights."""
    inputs = keras.Input(backbone.input_shape[1:])
    return keras.Model(
        inputs, keras.layers.GlobalAveragePooling2D()(backbone(inputs, training=False))
    )


def pooled_features(
    backbone: keras.Model, frame: pd.DataFrame, config: PipelineConfig, batch_size: int = 64
) -> np.ndarray:
    """Globally average-pooled backbone features, `[len(frame), C]`, in the frame's order."""
    batches = make_dataset(frame, config, batch_size=batch_size)
    return _predicted(pooled_encoder(backbone), batches)


def _predicted(encoder: keras.Model, batches) -> np.ndarray:
    features = encoder.predict(batches, verbose=0)
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


def knn_scores(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    features: np.ndarray,
    k: int = 20,
    temperature: float = 0.07,
) -> np.ndarray:
    """Weighted k-nearest-neighbour scores (solo-learn's and lightly's kNN probe): each film's
    `k` most cosine-similar training films vote for their label with weight
    `exp(similarity / temperature)`.

    Args:
        train_features: float `[N, C]`; train_labels: 0/1 `[N]`; features: float `[M, C]`.
    Returns:
        float `[M]`: the weighted share of positive neighbours.
    """

    def unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    similarity = unit(features) @ unit(train_features).T  # [M, N]
    k = min(k, similarity.shape[1])
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    weights = np.exp(np.take_along_axis(similarity, nearest, axis=1) / temperature)
    votes = np.asarray(train_labels, np.float64)[nearest]
    return (weights * votes).sum(axis=1) / weights.sum(axis=1)


class KnnProbe(keras.callbacks.Callback):
    """After every epoch, a kNN probe (`knn_scores`) of the dev films on the frozen encoder's
    pooled features of (at most `limit`) training films: the dev AUROC goes into the epoch's
    logs as `val_knn_auc`, so history.csv and TensorBoard show while pre-training runs whether
    it still helps. Labels are read, never trained on.

    Args:
        backbone: returns the encoder to probe (the SimCLR model's backbone).
        train, dev: catalogue frames (`label` read); config: their evaluation pipeline.
    """

    def __init__(
        self,
        backbone,
        train: pd.DataFrame,
        dev: pd.DataFrame,
        config: PipelineConfig,
        limit: int = 2048,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        if len(train) > limit:
            train = train.sample(limit, random_state=seed).sort_index()
        self.train, self.dev, self.config = train, dev, config
        # Made once and read every epoch: a new encoder and pipelines each epoch traced their
        # graphs again, most of the probe's time on small data.
        self._encoder: tuple[keras.Model, keras.Model] | None = None
        self._batches = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None or self.dev["label"].nunique() < 2:
            return
        from sklearn.metrics import roc_auc_score

        backbone = self.backbone()
        if self._encoder is None or self._encoder[0] is not backbone:
            self._encoder = (backbone, pooled_encoder(backbone))
        if self._batches is None:
            self._batches = tuple(
                make_dataset(frame, self.config, batch_size=64) for frame in (self.train, self.dev)
            )
        train, dev = (_predicted(self._encoder[1], batches) for batches in self._batches)
        scores = knn_scores(train, self.train["label"].to_numpy(), dev)
        logs["val_knn_auc"] = float(roc_auc_score(self.dev["label"], scores))
