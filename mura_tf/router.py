"""The body-part router: report 000 §3.3's first stage as a run of its own.

A classifier of the dataset's parts (backbone + head, softmax: MURA's 7) trained on the body
part of each film. A MURA study holds one part, so a study is routed by the majority vote of its
views (`study_votes`; a tie goes to the part with the larger summed probability), and the router is
scored per study as well as per view (`routing_metrics`): accuracy, macro F1, the confusion
matrix, how many studies went to the wrong part and in how many the views disagreed.

The run folder is a supervised run's (`mura_tf.experiment`) without the export (the router is
served inside a cascade, `mura_tf.cascade`): `config.json` (section "router"), `splits.csv`,
`history.csv`, `logs/`, `checkpoints/`, `model.keras`, `predictions.csv` (one row per test
film: its part, the part its view was given and the part its study was routed to, and the
probability of every part), `report.html`, `metrics.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from mura_tf.data.catalogue import load_catalogue
from mura_tf.data.datasets import dataset_of_parts, short_name
from mura_tf.data.splits import make_splits
from mura_tf.errors import ConfigError
from mura_tf.experiment import Experiment, fit_data, split_table, train_config
from mura_tf.io import same_file, write_text
from mura_tf.models.backbones import backbone_spec, build_backbone
from mura_tf.models.heads import build_classifier, classification_head
from mura_tf.precision import precision
from mura_tf.run_report import write_run_report
from mura_tf.runs import opened, write_config, write_metrics
from mura_tf.train import compile_classifier, train


@dataclass(frozen=True, kw_only=True)
class RouterConfig(Experiment):
    """A body-part router run: an `Experiment` whose target is the part, not the label."""

    SECTION: ClassVar[str] = "router"

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.part) < 2:
            raise ConfigError(
                f"--part {self.parts_spec}: a router chooses between parts; give two or more"
            )
        if self.monitor == "val_auc":
            raise ConfigError(
                "--monitor val_auc: a router has no AUC; use val_loss or val_accuracy"
            )
        if self.ensemble > 1 or self.intermediate_epochs or self.label_fraction < 1:
            raise ConfigError("a router takes no --ensemble, --intermediate-epochs or --fraction")
        if self.strategy == "multi_worker":
            raise ConfigError("--strategy multi_worker: train a router on one machine")
        if self.class_weights or self.class_weights_by_part:
            raise ConfigError("a router takes no class weights: they weigh abnormality")


def view_parts(probabilities: tf.Tensor, routable: tf.Tensor) -> tf.Tensor:
    """int32 `[V]`: each view's most likely routable part (index into the dataset's parts,
    `DatasetInfo.parts`).

    Args:
        probabilities: float `[V, P]`, the router's part probabilities.
        routable: bool `[P]`, the parts a view may be routed to (the router's parts).
    """
    probabilities = tf.convert_to_tensor(probabilities, tf.float32)
    masked = tf.where(tf.convert_to_tensor(routable)[tf.newaxis], probabilities, -1.0)
    return tf.cast(tf.argmax(masked, axis=-1), tf.int32)


def study_votes(
    probabilities: tf.Tensor, study_ids: tf.Tensor, n_studies: int | tf.Tensor, routable: tf.Tensor
) -> tf.Tensor:
    """The part of each study: the majority of its views' most likely parts.

    Args:
        probabilities: float `[V, P]`, the router's part probabilities of every view.
        study_ids: int32 `[V]`, each view's study, in `[0, n_studies)`.
        routable: bool `[P]`, the parts a view may be routed to (the router's parts).
    Returns:
        int32 `[n_studies]`, an index into the dataset's parts. Ties between parts with as many
        views go to the one of larger summed probability.
    """
    probabilities = tf.convert_to_tensor(probabilities, tf.float32)
    routable = tf.convert_to_tensor(routable)
    views = tf.one_hot(view_parts(probabilities, routable), tf.shape(probabilities)[-1])
    counts = tf.math.unsorted_segment_sum(views, study_ids, n_studies)
    summed = tf.math.unsorted_segment_sum(probabilities, study_ids, n_studies)
    n_views = tf.reduce_sum(counts, axis=-1, keepdims=True)
    # Summed probability / views is at most 1, so it only breaks ties between equal counts.
    score = counts + 0.5 * summed / tf.maximum(n_views, 1.0)
    score = tf.where(routable[tf.newaxis], score, -1.0)
    return tf.cast(tf.argmax(score, axis=-1), tf.int32)


def routable_mask(parts: tuple[str, ...]) -> np.ndarray:
    """bool `[P]` over the parts of `parts`' dataset: True for the parts in `parts`."""
    return np.array([part in parts for part in dataset_of_parts(parts).parts])


def routed_frame(
    frame: pd.DataFrame, probabilities: np.ndarray, parts: tuple[str, ...]
) -> pd.DataFrame:
    """`frame` (test films with `study`) plus `view_part` (each view's own most likely part),
    `routed_part` (its study's vote) and `p_<part>` (the router's probabilities `[V, P]`)."""
    every = dataset_of_parts(parts).parts
    routable = routable_mask(parts)
    codes, uniques = pd.factorize(frame["study"])
    votes = study_votes(probabilities, codes.astype(np.int32), len(uniques), routable).numpy()
    out = frame.assign(
        view_part=[every[i] for i in view_parts(probabilities, routable).numpy()],
        routed_part=[every[votes[c]] for c in codes],
    )
    for i, part in enumerate(every):
        out[f"p_{short_name(part)}"] = probabilities[:, i]
    return out


def routing_metrics(routed: pd.DataFrame) -> dict:
    """How well views and studies were routed (`routed_frame`'s columns; `part` is the truth).

    `image`: accuracy and macro F1 of each view's own part; `study`: accuracy of the studies'
    votes; `confusion`: study counts, rows the true part, columns the routed one (`parts`
    order); `wrong_part_studies`, `studies`, `views_disagreed_studies` (studies whose views
    were not all given one part).
    """
    from mura_tf.metrics import macro_f1

    studies = routed.groupby("study", sort=False).agg(
        part=("part", "first"), routed_part=("routed_part", "first"), kinds=("view_part", "nunique")
    )
    seen = set(routed["part"]) | set(routed["routed_part"])
    parts = [p for p in dataset_of_parts(seen).parts if p in seen]
    confusion = pd.crosstab(studies["part"], studies["routed_part"]).reindex(
        index=parts, columns=parts, fill_value=0
    )
    wrong = int((studies["part"] != studies["routed_part"]).sum())
    return {
        "image": {
            "accuracy": float((routed["part"] == routed["view_part"]).mean()),
            "macro_f1": macro_f1(routed["part"], routed["view_part"]),
            "n": int(len(routed)),
        },
        "study": {
            "accuracy": float(1 - wrong / max(len(studies), 1)),
            "macro_f1": macro_f1(studies["part"], studies["routed_part"]),
            "n": int(len(studies)),
        },
        "parts": parts,
        "confusion": confusion.to_numpy().tolist(),
        "wrong_part_studies": wrong,
        "studies": int(len(studies)),
        "views_disagreed_studies": int((studies["kinds"] > 1).sum()),
    }


def confusion_frame(routing: dict) -> pd.DataFrame:
    """`routing_metrics`' confusion matrix with short part names (rows true, columns routed)."""
    names = [short_name(p) for p in routing["parts"]]
    return pd.DataFrame(
        routing["confusion"],
        index=pd.Index(names, name="true part"),
        columns=pd.Index(names, name="routed to"),
    )


@dataclass(frozen=True)
class RouterResult:
    run_dir: Path
    metrics: dict
    predictions: pd.DataFrame


def run_router(cfg: RouterConfig) -> RouterResult:
    """Train and test a body-part router; see the module docstring for what it writes."""
    with opened(cfg) as run, precision(cfg.mixed_precision, cfg.image_size) as policy:
        run_dir = run.run_dir
        data_dir = cfg.data_folder()
        splits = make_splits(
            load_catalogue(data_dir, cfg.part, dataset=cfg.data_info, strict=cfg.strict),
            cfg.dev_fraction,
            cfg.seed,
        )
        if splits.test.empty:
            raise ConfigError(f"{data_dir} has no valid split to test the router on")
        spec = backbone_spec(cfg.backbone)
        counts = {name: int(len(getattr(splits, name))) for name in ("train", "dev", "test")}
        write_config(
            run, cfg, data_dir, images=counts, normalization=spec.normalization,
            dtype_policy=policy,
        )  # fmt: skip
        write_text(run_dir / "splits.csv", split_table(splits).to_csv(index=False))

        keras.utils.set_random_seed(cfg.seed)
        data = fit_data(cfg, splits, spec.normalization, run.strategy, target="part")
        config = train_config(cfg, data)
        with run.strategy.scope():
            backbone = build_backbone(cfg.backbone, cfg.image_size, cfg.weights)
            head = classification_head(cfg.head, outputs=len(cfg.data_info.parts), name="part_head")
            model = build_classifier(
                backbone, head, cfg.image_size, cfg.freeze_backbone, name="part_router"
            )
            compile_classifier(model, config, task="part")
        result = train(model, data.train, data.dev, run_dir, config, sample=data.first_pixels)
        same_file(run_dir / "checkpoints" / "best.keras", run_dir / "model.keras")  # as trained

        probabilities = model.predict(data.test, verbose=0)
        frame = splits.test[["path", "part", "patient", "study", "label"]]
        predictions = routed_frame(frame, probabilities, cfg.part)
        metrics = {"router": routing_metrics(predictions), "selected_epoch": result.selection()}
        write_text(
            run_dir / "predictions.csv", predictions.to_csv(index=False, float_format="%.7g")
        )
        write_run_report(run_dir, metrics)
        write_metrics(run_dir, metrics)
    return RouterResult(run_dir, metrics, predictions)
