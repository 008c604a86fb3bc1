"""Report 000 §3.3's body-part stage: before the binary task, the unfrozen backbone and an
MLP learn which body part a film shows; the binary head keeps the stage's hidden layer.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mura_tf.data.splits import Splits
from mura_tf.evaluators.metrics import macro_f1
from mura_tf.files import write_json, write_text
from mura_tf.models.heads import build_classifier, classification_head
from mura_tf.runs.batches import fit_data, train_config
from mura_tf.runs.experiment import Experiment
from mura_tf.training.train import compile_classifier, train


def body_part_stage(
    exp: Experiment,
    splits: Splits,
    backbone: keras.Model,
    normalization: str,
    run_dir: Path,
    strategy: tf.distribute.Strategy,
) -> tuple[keras.layers.Layer, dict]:
    """Report 000 §3.3, first stage: the unfrozen backbone + MLP learns the body part.

    Writes `run_dir/body_part/` (the stage's run folder, with `predictions.csv`: each test
    film's part and the part predicted, and `metrics.json`). Returns the trained hidden layer
    of the best dev epoch (kept for the binary stage) and the stage's metrics.
    """
    data = fit_data(exp, splits, normalization, strategy, target="part")
    config = train_config(exp, data, exp.intermediate_epochs, task="part")
    with strategy.scope():
        head = classification_head("mlp", outputs=len(exp.data_info.parts), name="part_head")
        model = build_classifier(
            backbone, head, exp.image_size, freeze_backbone=False, name="body_part"
        )
        compile_classifier(model, config, task="part")
    result = train(
        model, data.train, data.dev, run_dir / "body_part", config, sample=data.first_pixels
    )
    predicted = model.predict(data.test, verbose=0).argmax(axis=1)
    truth = splits.test["part"].map(exp.data_info.parts.index).to_numpy()
    stage = {
        "macro_f1": macro_f1(truth, predicted),
        "accuracy": float(np.mean(truth == predicted)),
        "n_images": int(len(truth)),
        "selected_epoch": result.selection(),
    }
    parts = np.asarray(exp.data_info.parts)
    films = splits.test[["path", "part"]].assign(predicted=parts[predicted])
    write_text(run_dir / "body_part" / "predictions.csv", films.to_csv(index=False))
    write_json(run_dir / "body_part" / "metrics.json", stage)
    return head.get_layer("hidden"), stage
