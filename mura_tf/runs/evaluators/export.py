"""The SavedModel of the run (`export/`, `mura_tf.serving.export`), with the outline head's
map beside Grad-CAM where the run learnt the outlines."""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from mura_tf.runs.evaluators.trained import TrainedRun
from mura_tf.serving.export import export_savedmodel

EXPORT_FOLDER = "export"


@dataclass(frozen=True)
class SavedModelExport:
    """Writes `export/`; adds nothing to the metrics."""

    def __call__(self, run: TrainedRun) -> dict:
        exp, model = run.exp, run.model
        export_savedmodel(
            model, run.normalization, exp.image_size, run.run_dir / EXPORT_FOLDER,
            exp.keep_aspect, outline_of(run),
        )  # fmt: skip
        return {}


def outline_of(run: TrainedRun):
    """(the outline-guided model, images -> (probability, outline map)) where the run learnt
    the outlines, else None (`serving.export.export_savedmodel`'s `outline`)."""
    if run.guided is None:
        return None
    guided, model = run.guided, run.model

    def outline_map(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return model(images, training=False), guided.where_map(images)

    return guided, outline_map
