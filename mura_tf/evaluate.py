"""Evaluate an exported SavedModel on MURA: `python -m mura_tf.evaluate --model RUN/export`.

Only TensorFlow is needed to load the model: `tf.saved_model.load` and its `serve` endpoint
(raw float32 pixels in, abnormality probability out). Writes `metrics.json`,
`predictions.csv`, `roc.png` and `confusion.png` (study level, all parts and per part).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mura_tf.cli import ArgumentParser, positive_int, run
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m mura_tf.evaluate",
        description="Evaluate an exported SavedModel on MURA at image and study level.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="a run's export/ folder (SavedModel)")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("MURA_DATA_DIR"),
        help="MURA-v1.1/ or its parent (default: $MURA_DATA_DIR)",
    )
    parser.add_argument("--part", default="all", help="a part, a comma list, or all")
    parser.add_argument(
        "--split",
        default="valid",
        choices=["valid", "train"],
        help="MURA split to evaluate on (valid is the test set)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument(
        "--out", help="output folder (default: next to the model, evaluation-SPLIT)"
    )
    args = parser.parse_args(argv)
    if not args.data_dir:
        raise ConfigError("no data folder: pass --data-dir or set MURA_DATA_DIR")

    from mura_tf.data.mura import load_mura
    from mura_tf.io import write_json, write_text
    from mura_tf.metrics import metrics_table, study_level_metrics, study_predictions
    from mura_tf.plots import plot_confusion, plot_roc

    serve, image_size = load_serving(args.model)
    frame = load_mura(args.data_dir, args.part, splits=(args.split,))
    predictions = predict_frame(serve, image_size, frame, args.batch_size)
    metrics = study_level_metrics(predictions)
    print(metrics_table(metrics).to_string())
    out = (
        Path(args.out)
        if args.out
        else Path(args.model).resolve().parent / f"evaluation-{args.split}"
    )
    studies = study_predictions(predictions)
    written = [
        write_json(out / "metrics.json", metrics),
        write_text(out / "predictions.csv", predictions.to_csv(index=False, float_format="%.7g")),
        plot_roc(studies, out / "roc.png"),
        plot_confusion(studies, out / "confusion.png"),
    ]
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
