"""An experiment is a config (a row of the reports' tables) and one call that runs it.

`run_experiment` loads the data, splits it by patient, builds the model, trains it with the
shared trainer, evaluates on MURA's valid split (image and study level), and writes the run
folder `OUT/<recipe>/<part>/<run>/`:

    config.json        every resolved setting, the data counts and the strategy
    splits.csv         every image used and its split (train, dev, test)
    history.csv        one row per epoch
    logs/              TensorBoard
    checkpoints/best.keras   the best dev epoch by `monitor` (best.json: which epoch)
    model.keras        the model handed over: the best dev epoch, however training ended
    export/            SavedModel: serve(float32 [N, S, S, 3] raw 0-255) -> probability [N, 1]
    predictions.csv    one row per test image
    localisation.csv   where the dataset has fracture outlines (FracAtlas): each fractured
                       test film's Grad-CAM scored against them (`evaluators.localisation`)
    localisation_outline_head.csv   the same for the outline head's own map, in a run
                       trained with `--outline-weight` (`models.outline_guided`)
    report.html        the run on one page (`mura_tf.report.run`)
    metrics.json       image/study/per-part metrics, the selected epoch and a fingerprint
                       of the first training batch; written last, so it marks a finished run

`backup/` (the resume point, `mura_tf.runs.resume`) stays until all of the above is written, so a
run killed at any point after its last epoch redoes only the outputs.
"""

from __future__ import annotations

import hashlib
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from mura_tf.compat.fused_batch_norm import follow_training_steps
from mura_tf.data.augment import AugmentConfig, parse_augmentations
from mura_tf.data.catalogue import load_catalogue, load_outlines
from mura_tf.data.masks import outline_masks
from mura_tf.data.pipeline import PipelineConfig, make_dataset
from mura_tf.data.splits import Splits, label_fraction, make_splits
from mura_tf.errors import ConfigError, FieldError
from mura_tf.evaluators.calibration import calibration, operating_points
from mura_tf.evaluators.intervals import metric_intervals, with_intervals
from mura_tf.evaluators.localisation import localisation_metrics, score_films
from mura_tf.evaluators.metrics import (
    interval_table,
    macro_f1,
    metrics_table,
    study_level_metrics,
    study_predictions,
)
from mura_tf.files import same_file, write_json, write_text
from mura_tf.models.backbones import backbone_spec, build_backbone
from mura_tf.models.heads import HEADS, build_classifier, classification_head
from mura_tf.models.outline_guided import OutlineGuided, guided_part
from mura_tf.runs.config import (
    Alias,
    OpenRun,
    RunConfig,
    opened,
    setting,
    write_config,
)
from mura_tf.runs.folder import finish_run
from mura_tf.runs.presets import supervised_changes
from mura_tf.runs.result import RunResult, describe_selection, where_lines, write_results
from mura_tf.serving.export import export_savedmodel
from mura_tf.serving.gradcam import film_cams
from mura_tf.training.distribute import distribute_batches, local_copy, num_workers
from mura_tf.training.precision import precision
from mura_tf.training.train import (
    OPTIMIZERS,
    TrainConfig,
    TrainResult,
    compile_classifier,
    mura_class_weights,
    mura_part_class_weights,
    train,
)

LOCALISATION_FILE = "localisation.csv"
OUTLINE_HEAD_FILE = "localisation_outline_head.csv"


@dataclass(frozen=True, kw_only=True)
class Experiment(RunConfig):
    """Every setting of one supervised run; recipes fill in the reports' values."""

    head: str = setting("linear", "classification head", choices=HEADS)
    freeze_backbone: bool = setting(
        False,
        "freeze the backbone",
        name="--freeze",
        negatable=True,
        aliases=(
            Alias(
                "--mode",
                "finetune trains the whole network, linear a head on the frozen backbone",
                values={"finetune": False, "linear": True},
            ),
        ),
    )
    optimizer: str = setting("adam", "optimizer", choices=OPTIMIZERS)
    learning_rate: float = setting(1e-3, "learning rate (the first one of a schedule)", name="--lr")
    lr_boundaries: tuple[int, ...] = ()
    lr_values: tuple[float, ...] = ()
    eval_batch_size: int = setting(16, "batch size of dev and test passes")
    keep_aspect: bool = setting(False, "pad to square instead of stretching")
    augment: tuple[str, ...] = setting(
        ("autocontrast", "hflip"),
        "comma list of autocontrast, hflip, rotate, translate, scale; or none",
    )
    weights: str = setting(
        "imagenet",
        "imagenet, none, or a path to a weights file",
        aliases=(Alias("--encoder", "a simclr_pretrain run folder (or its encoder.keras)"),),
    )
    patience: int = setting(4, "early-stopping patience in epochs (0: off)")
    monitor: str = setting(
        "val_accuracy",
        "dev metric for early stopping and the best checkpoint",
        choices=("val_accuracy", "val_auc", "val_loss"),
    )
    class_weights: bool = setting(False, "weight the loss by the MURA paper's |N|/(|A|+|N|)")
    class_weights_by_part: bool = setting(
        False,
        "weight the loss per body part, each by its own training studies' |N|/(|A|+|N|) "
        "(the MURA paper)",
        since="0.2",
    )
    rotation_degrees: float = setting(
        10.0, "largest random rotation in degrees (with --augment rotate)", since="0.2"
    )
    reduce_lr_on_plateau: bool = setting(
        False, "divide the learning rate by 10 when the dev metric stalls"
    )
    intermediate_epochs: int = setting(
        0, "epochs of the body-part task before the binary one (report 000 §3.3)"
    )
    label_fraction: float = setting(
        1.0, "share of labelled training studies to use (0.01, 0.1, 1.0)", name="--fraction"
    )
    jit_compile: str = setting(
        "auto", "XLA compilation of the train step", choices=("auto", "true", "false")
    )
    outline_weight: float = setting(
        0.0,
        "weight of the outline loss: an auxiliary head learns where the radiologists outlined "
        "the fracture (datasets with outlines: FracAtlas; mura_tf.models.outline_guided); "
        "0: off",
        since="0.4",
    )
    ensemble: int = setting(
        1,
        "train K seeds (--seed to --seed + K - 1), each a run of its own, then average them into "
        "one model (mura_tf.runs.ensemble), as the MURA paper did",
        name="--ensemble",
    )
    # The run's name in tables: "" is the recipe; "{mode}" is Finetune or Linear and "{pct}"
    # the label fraction in percent, which is otherwise appended when below 100%.
    label: str = field(default="", compare=False)

    TRAINER_FIELDS: ClassVar[dict[str, str]] = {
        **RunConfig.TRAINER_FIELDS,
        "learning_rate": "learning_rate",
        "patience": "patience",
        "optimizer": "optimizer",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head not in HEADS:
            raise FieldError("head", f"must be one of {', '.join(HEADS)}, got {self.head!r}")
        object.__setattr__(self, "augment", parse_augmentations(self.augment))
        self._at_least("eval_batch_size", 1)
        self._at_least("intermediate_epochs", 0)
        self._at_least("ensemble", 1)
        if not 0 <= self.outline_weight < float("inf"):
            raise FieldError("outline_weight", f"must be 0 or more, got {self.outline_weight}")
        if self.outline_weight and self.freeze_backbone:
            raise ConfigError(
                "--outline-weight trains the backbone where to look: it needs --no-freeze"
            )
        if self.ensemble > 1 and self.strategy == "multi_worker":
            raise ConfigError("--ensemble with --strategy multi_worker: train the seeds one by one")
        if not 0 < self.label_fraction <= 1:
            raise FieldError("label_fraction", f"must be in (0, 1], got {self.label_fraction}")

    def synthetic_changes(self, explicit: frozenset[str]) -> dict[str, Any]:
        return supervised_changes(self, explicit)

    def table_label(self) -> str:
        pct = f"{self.label_fraction * 100:g}"
        label = (self.label or self.recipe).format(
            mode="Linear" if self.freeze_backbone else "Finetune", pct=pct
        )
        if "{pct}" not in self.label and self.label_fraction < 1:
            label = f"{label} {pct}pct"
        return label


def pipeline_config(exp: Experiment, normalization: str, training: bool) -> PipelineConfig:
    """How `exp` prepares its images: with its augmentations for training, without them for
    evaluation (the dev and test passes, and any other scoring of the run's films)."""
    return PipelineConfig(
        image_size=exp.image_size,
        keep_aspect=exp.keep_aspect,
        normalization=normalization,
        augment=AugmentConfig(
            ops=tuple(exp.augment) if training else (), rotation_degrees=exp.rotation_degrees
        ),
        cache=exp.cache,
    )


def train_config(
    exp: Experiment, data: FitData, epochs: int | None = None, task: str = "binary"
) -> TrainConfig:
    """The trainer's settings for `exp` on `data`; for the body-part `task`, which has no AUC,
    a run that selects by dev AUROC selects by dev accuracy (report 000's rule)."""
    monitor = exp.monitor
    if task == "part" and monitor == "val_auc":
        monitor = "val_accuracy"
    return TrainConfig(
        epochs=epochs or exp.epochs,
        optimizer=exp.optimizer,
        learning_rate=exp.learning_rate,
        lr_boundaries=tuple(exp.lr_boundaries),
        lr_values=tuple(exp.lr_values),
        monitor=monitor,
        patience=exp.patience,
        reduce_lr_on_plateau=exp.reduce_lr_on_plateau,
        steps_per_epoch=data.steps_per_epoch,
        validation_steps=data.validation_steps,
        jit_compile=exp.jit_compile if exp.jit_compile == "auto" else exp.jit_compile == "true",
    )


@dataclass
class FitData:
    """What `fit` reads: training and dev batches (distributed under a multi-replica strategy),
    their step counts (None: one pass), an undistributed first training batch (its
    fingerprint), the same batch's pixels before normalisation (TensorBoard), and the
    undistributed test batches."""

    train: object
    dev: object
    test: tf.data.Dataset
    steps_per_epoch: int | None
    validation_steps: int | None
    first_batch: np.ndarray
    first_pixels: np.ndarray


def fit_data(
    exp: Experiment,
    splits: Splits,
    normalization: str,
    strategy: tf.distribute.Strategy,
    target: str = "label",
    class_weight: np.ndarray | None = None,
    masks: tuple[np.ndarray, np.ndarray] | None = None,
) -> FitData:
    train_cfg = pipeline_config(exp, normalization, training=True)
    eval_cfg = pipeline_config(exp, normalization, training=False)

    def train_batches(batch_size: int, shard: int = 0, shards: int = 1) -> tf.data.Dataset:
        ds = make_dataset(
            splits.train, train_cfg, batch_size=batch_size, training=True, target=target,
            seed=exp.seed, shard=(shard, shards), with_meta=class_weight is not None, masks=masks,
        )  # fmt: skip
        if class_weight is not None:  # fit cannot weight classes of distributed batches
            table = tf.constant(class_weight, tf.float32)  # [parts, 2]: (w_normal, w_abnormal)

            def weigh(x, y, meta):
                index = tf.stack([meta["part"], tf.cast(y[:, 0], tf.int32)], axis=-1)
                return x, y, tf.gather_nd(table, index)

            ds = ds.map(weigh)
        return ds

    def dev_batches(batch_size: int, shard: int = 0, shards: int = 1) -> tf.data.Dataset:
        return make_dataset(
            splits.dev, eval_cfg, batch_size=batch_size, target=target, shard=(shard, shards)
        )

    test = make_dataset(splits.test, eval_cfg, batch_size=exp.eval_batch_size, target=target)
    first_batch = next(iter(train_batches(exp.batch_size).take(1)))[0]
    first_batch = (first_batch["image"] if masks is not None else first_batch).numpy()
    # The same draws without normalisation: what a person sees of the augmented films.
    pixels = make_dataset(
        splits.train, pipeline_config(exp, "raw", training=True), batch_size=exp.batch_size,
        training=True, target=target, seed=exp.seed,
    )  # fmt: skip
    first_pixels = next(iter(pixels.take(1)))[0].numpy()
    if strategy.num_replicas_in_sync == 1:
        return FitData(
            train_batches(exp.batch_size), dev_batches(exp.eval_batch_size), test,
            exp.max_steps, exp.max_steps, first_batch, first_pixels,
        )  # fmt: skip
    # Every replica must run the same number of steps: each worker repeats its shard and all
    # stop after the same count (about one pass over the data per epoch).
    steps = exp.max_steps or max(1, len(splits.train) // exp.batch_size)
    validation_steps = exp.max_steps or math.ceil(len(splits.dev) / exp.eval_batch_size)
    train = distribute_batches(
        strategy, lambda b, i, n: train_batches(b, i, n).repeat(), exp.batch_size
    )
    dev = distribute_batches(
        strategy, lambda b, i, n: dev_batches(b, i, n).repeat(), exp.eval_batch_size,
        "--eval-batch-size",
    )  # fmt: skip
    return FitData(train, dev, test, steps, validation_steps, first_batch, first_pixels)


def _body_part_stage(
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


def run_experiment(exp: Experiment) -> RunResult:
    """Train and evaluate one experiment; see the module docstring for what it writes.

    Under `--strategy multi_worker` every worker trains; worker 0 (the chief) writes the run
    folder, the others keep their checkpoints and backups in `RUN/worker<i>/` and return
    without evaluating (`RunResult.metrics` is empty for them). The result keeps the
    body-part stage's metrics, where there is one, as `extra["body_part"]`.
    """
    with opened(exp) as run, precision(exp.mixed_precision, exp.image_size) as policy:
        prepared = prepare_data(exp)
        spec = backbone_spec(exp.backbone)
        write_opening(run, exp, prepared, normalization=spec.normalization, dtype_policy=policy)
        built = build_model(exp, prepared, run.strategy, run.run_dir)
        trained = train(
            built.model, built.data.train, built.data.dev, run.run_dir, built.train_config,
            sample=built.data.first_pixels,
        )  # fmt: skip
        # The model now holds what best.keras holds (train read it back from there).
        same_file(run.run_dir / "checkpoints" / "best.keras", run.run_dir / "model.keras")
        return hand_over(exp, run, prepared, built, trained)


# --- The seams of a supervised run: prepare the data, build the model, (train), hand over.
# The router, the benchmarks that train as a recipe does, and `run_experiment` call them in
# this order, so that they draw the same random numbers.


@dataclass(frozen=True)
class PreparedData:
    """A run's films: where they are and how they split (`splits.csv`)."""

    data_dir: str
    splits: Splits

    @property
    def counts(self) -> dict[str, int]:
        return {name: int(len(getattr(self.splits, name))) for name in ("train", "dev", "test")}


def prepare_data(exp: Experiment) -> PreparedData:
    """The catalogue of `exp`'s parts, split by patient (seeded), the training split cut to
    `exp.label_fraction`.

    Raises:
        ConfigError: the data has no test split for these parts.
    """
    data_dir = exp.data_folder()
    frame = load_catalogue(
        data_dir, exp.part, dataset=exp.data_info, positive=exp.positive, strict=exp.strict
    )
    splits = make_splits(frame, exp.dev_fraction, exp.seed)
    if exp.label_fraction < 1:
        splits = Splits(
            label_fraction(splits.train, exp.label_fraction, exp.seed), splits.dev, splits.test
        )
    if splits.test.empty:
        raise ConfigError(
            f"{data_dir} has no test split: MURA's valid/ folder (or its valid_*.csv "
            f"files), or FracAtlas's test films, hold none of --part {exp.parts_spec}"
        )
    return PreparedData(data_dir, splits)


def write_opening(run: OpenRun, exp: Experiment, prepared: PreparedData, **facts) -> None:
    """`config.json` (with the split's counts and `facts`) and `splits.csv`."""
    write_config(run, exp, prepared.data_dir, images=prepared.counts, **facts)
    write_text(run.run_dir / "splits.csv", split_table(prepared.splits).to_csv(index=False))


@dataclass
class BuiltModel:
    """A compiled classifier ready for `train`, the batches it trains on and the trainer's
    settings; `extra` holds the body-part stage's metrics where there is one."""

    model: keras.Model
    data: FitData
    train_config: TrainConfig
    normalization: str
    extra: dict = field(default_factory=dict)


def build_model(
    exp: Experiment,
    prepared: PreparedData,
    strategy: tf.distribute.Strategy,
    run_dir: Path | None = None,
) -> BuiltModel:
    """Seed, build the backbone, run the body-part stage where `exp` has one (in
    `run_dir/body_part`), make the batches and compile the classifier, in the recipe's order
    of random draws. Its batch norms' moving statistics follow the training steps
    (`mura_tf.compat.fused_batch_norm`), as `train` would make them."""
    splits = prepared.splits
    spec = backbone_spec(exp.backbone)
    keras.utils.set_random_seed(exp.seed)
    with strategy.scope():
        backbone = build_backbone(exp.backbone, exp.image_size, exp.weights)
    extra: dict = {}
    hidden = None
    if exp.intermediate_epochs:
        if run_dir is None:
            raise ConfigError("intermediate_epochs trains a body-part stage: give a run_dir")
        hidden, extra["body_part"] = _body_part_stage(
            exp, splits, backbone, spec.normalization, run_dir, strategy
        )

    weights = None
    if exp.class_weights_by_part:
        weights = mura_part_class_weights(splits.train)
    elif exp.class_weights:  # one weighting for every part
        overall = mura_class_weights(splits.train["label"])
        weights = np.tile([[overall[0], overall[1]]], (len(exp.data_info.parts), 1))
    masks = None
    if exp.outline_weight:
        outlines = load_outlines(prepared.data_dir, exp.data_info)
        if not outlines:
            raise ConfigError(
                f"--outline-weight: {prepared.data_dir} has no fracture outlines to learn from "
                "(FracAtlas has them; MURA has none)"
            )
        masks = outline_masks(
            splits.train["path"].tolist(), splits.train["label"].tolist(), outlines,
            exp.image_size, exp.keep_aspect,
        )  # fmt: skip
    data = fit_data(exp, splits, spec.normalization, strategy, class_weight=weights, masks=masks)
    fit_config = train_config(exp, data)
    with strategy.scope():
        head = classification_head(exp.head)
        if hidden is not None:  # keep the body-part stage's hidden layer, replace the output
            head = keras.Sequential(
                [hidden, keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="out")],
                name="head",
            )
        model = build_classifier(backbone, head, exp.image_size, exp.freeze_backbone)
        if exp.outline_weight:
            model = OutlineGuided(model, backbone, exp.image_size, exp.outline_weight)
        compile_classifier(model, fit_config)
    follow_training_steps(model, model.optimizer.iterations)
    return BuiltModel(model, data, fit_config, spec.normalization, extra)


def hand_over(
    exp: Experiment, run: OpenRun, prepared: PreparedData, built: BuiltModel, trained: TrainResult
) -> RunResult:
    """Test the trained model, export it and write the run's results (module docstring)."""
    run_dir, splits, model = run.run_dir, prepared.splits, guided_part(built.model)
    if num_workers(run.strategy) > 1:
        if run.worker:
            finish_run(run_dir)
            return RunResult(run_dir, {}, None, exp, built.extra)
        model = local_copy(model)

    probabilities = model.predict(built.data.test, verbose=0)[:, 0]
    predictions = splits.test[["path", "part", "patient", "study", "label"]].assign(
        probability=probabilities
    )
    metrics = study_level_metrics(predictions)
    metrics = with_intervals(metrics, metric_intervals(predictions, seed=exp.seed))
    # Calibration, and operating points whose thresholds are chosen on dev, never on test.
    dev_data = make_dataset(
        splits.dev, pipeline_config(exp, built.normalization, training=False),
        batch_size=exp.eval_batch_size,
    )  # fmt: skip
    dev_predictions = splits.dev[["study", "label"]].assign(
        probability=model.predict(dev_data, verbose=0)[:, 0]
    )
    test_studies = study_predictions(predictions)
    metrics["calibration"] = calibration(test_studies["label"], test_studies["probability"])
    metrics["operating_points"] = operating_points(
        study_predictions(dev_predictions.assign(part="")), test_studies, seed=exp.seed
    )
    metrics.update(built.extra)
    metrics["selected_epoch"] = trained.selection()
    metrics["first_batch_sha1"] = hashlib.sha1(built.data.first_batch.tobytes()).hexdigest()
    outline = None
    if isinstance(built.model, OutlineGuided):  # the outline head's map goes with the export
        guided = built.model

        def outline_map(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return model(images, training=False), guided.where_map(images)

        outline = (guided, outline_map)
    export_savedmodel(
        model, built.normalization, exp.image_size, run_dir / "export", exp.keep_aspect, outline
    )
    cams = film_cams(model, built.normalization, exp.image_size, exp.keep_aspect)
    outlines = load_outlines(prepared.data_dir, exp.data_info)
    if outlines:  # where the model looked, against the radiologists' outlines
        maps = {LOCALISATION_FILE: ("localisation", cams)}
        if outline is not None:
            maps[OUTLINE_HEAD_FILE] = ("localisation_outline_head", film_cams(
                model, built.normalization, exp.image_size, exp.keep_aspect, outline[1]
            ))  # fmt: skip
        # Dev films are scored too: a setting is chosen by where it looks on dev, never test.
        dev_films = splits.dev[["path", "part", "label"]].assign(
            probability=dev_predictions["probability"].to_numpy()
        )
        for file, (key, fn) in maps.items():
            scores = score_films(predictions, outlines, fn)
            metrics[key] = localisation_metrics(scores)
            dev = localisation_metrics(score_films(dev_films, outlines, fn))
            if dev and metrics[key]:
                dev.pop("per_part")
                dev.pop("method")
                metrics[key]["dev"] = dev
            write_text(run_dir / file, scores.to_csv(index=False, float_format="%.7g"))
    write_results(run_dir, metrics, predictions, cams)
    return RunResult(run_dir, metrics, predictions, exp, built.extra)


def closing(result: RunResult) -> list[str]:
    """What a supervised run prints when it is done: its test metrics with their intervals,
    the epoch handed over, where everything went and the commands that use it."""
    exp, metrics, run_dir = result.config, result.metrics, result.run_dir
    info = exp.data_info
    lines = [
        "",
        f"Test metrics ({info.title} {info.test_split} split; study = mean of the views' "
        "probabilities)",
        metrics_table(metrics).to_string(),
    ]
    intervals = interval_table(metrics)
    if not intervals.empty:
        lines += ["", f"95% intervals ({metrics['intervals']['method']})", intervals.to_string()]
    if "body_part" in result.extra:
        stage = result.extra["body_part"]
        lines += [
            "",
            f"body-part task: macro F1 {stage['macro_f1']:.3f} "
            f"({describe_selection(stage['selected_epoch'])})",
        ]
    lines += ["", f"model handed over: {describe_selection(metrics['selected_epoch'])}"]
    lines += where_lines(run_dir, ("SavedModel:", run_dir / "export"))
    if exp.synthetic:
        data = shlex.quote(exp.data_folder())
    else:  # $MURA_DATA_DIR stays a variable for the shell to expand
        data = shlex.quote(exp.data_dir) if exp.data_dir else '"$MURA_DATA_DIR"'
    model = shlex.quote(str(run_dir / "export"))
    return [
        *lines,
        f"evaluate:     python -m mura_tf evaluate --model {model} --data-dir {data}",
        f"predict:      python -m mura_tf predict --model {shlex.quote(str(run_dir))} FILMS...",
    ]


def split_table(splits: Splits) -> pd.DataFrame:
    """`path, split` for every image used: which images trained, selected and tested."""
    return pd.concat(
        [getattr(splits, name)[["path"]].assign(split=name) for name in ("train", "dev", "test")],
        ignore_index=True,
    )
