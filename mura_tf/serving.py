"""A run's exported SavedModel, loaded and called with TensorFlow alone (no Keras model code).

The export's `serve` signature maps raw float32 pixels `[N, S, S, 3]` (0-255, resized as in
training) to abnormality probabilities `[N, 1]`; see `mura_tf.export`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from mura_tf.errors import ConfigError


def load_serving(path: str | os.PathLike[str]):
    """Load a SavedModel; returns `(serve, image_size)`.

    `serve` maps float32 `[N, S, S, 3]` raw pixels to probabilities `[N, 1]`.
    """
    import tensorflow as tf

    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise ConfigError(
            f"{path} is not a SavedModel (no saved_model.pb): pass a run's export/ folder"
        )
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as e:  # noqa: BLE001 - TensorFlow raises many types for a broken model
        raise ConfigError(f"cannot load the SavedModel {path}: {str(e).splitlines()[0]}") from None
    serve = getattr(loaded, "serve", None)
    if serve is None:
        raise ConfigError(f"{path} has no 'serve' endpoint: export it with mura_tf (model.export)")
    spec = serve.input_signature[0]
    spec = spec[0] if isinstance(spec, (list, tuple)) else spec

    def predict(images):
        # `loaded` owns the variables: the closure keeps it alive as long as `predict` is used.
        return loaded.serve(images)

    return predict, int(spec.shape[1])


def predict_frame(
    serve, image_size: int, frame: pd.DataFrame, batch_size: int = 32
) -> pd.DataFrame:
    """Per-image probabilities for catalogue rows; columns path, part, patient, study, label,
    probability."""
    from mura_tf.data.pipeline import PipelineConfig, make_dataset

    dataset = make_dataset(
        frame, PipelineConfig(image_size=image_size, normalization="raw"), batch_size=batch_size
    )
    probabilities = np.concatenate([np.asarray(serve(images)).reshape(-1) for images, _ in dataset])
    return frame[["path", "part", "patient", "study", "label"]].assign(probability=probabilities)
