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
    report.html        the run on one page (`mura_tf.runs.page`)
    metrics.json       image/study/per-part metrics, the selected epoch and a fingerprint
                       of the first training batch; written last, so it marks a finished run

`backup/` (the resume point, `mura_tf.training.resume`) stays until all of the above is
written, so a run killed at any point after its last epoch redoes only the outputs.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from mura_tf.compat.fused_batch_norm import follow_training_steps
from mura_tf.errors import ConfigError
from mura_tf.files import same_file
from mura_tf.models.backbones import backbone_spec, build_backbone
from mura_tf.models.heads import build_classifier, classification_head
from mura_tf.models.outline_guided import OutlineGuided, guided_part
from mura_tf.runs.batches import (
    FitData,
    class_weight_table,
    fit_data,
    train_config,
    training_masks,
)
from mura_tf.runs.body_part import body_part_stage
from mura_tf.runs.evaluators.export import SavedModelExport
from mura_tf.runs.evaluators.localisation import Localisation
from mura_tf.runs.evaluators.operating_points import OperatingPoints
from mura_tf.runs.evaluators.study_metrics import StudyMetrics
from mura_tf.runs.evaluators.trained import RunEvaluator, TrainedRun
from mura_tf.runs.evaluators.training_record import TrainingRecord
from mura_tf.runs.experiment import Experiment
from mura_tf.runs.folder import OpenRun, finish_run, run_context
from mura_tf.runs.prepared import PreparedData, prepare_data, write_config_and_splits
from mura_tf.runs.result import (
    RunResult,
    describe_selection,
    location_lines,
    test_metric_lines,
    write_results,
)
from mura_tf.training.distribute import local_copy, num_workers
from mura_tf.training.precision import precision
from mura_tf.training.train import (
    TrainConfig,
    TrainResult,
    compile_classifier,
    train,
)

# What a finished supervised run computes and writes, in order (`mura_tf.runs.evaluators`).
EVALUATORS: tuple[RunEvaluator, ...] = (
    StudyMetrics(),
    OperatingPoints(),
    TrainingRecord(),
    SavedModelExport(),
    Localisation(),
)


def run_experiment(exp: Experiment) -> RunResult:
    """Train and evaluate one experiment; see the module docstring for what it writes.

    Under `--strategy multi_worker` every worker trains; worker 0 (the chief) writes the run
    folder, the others keep their checkpoints and backups in `RUN/worker<i>/` and return
    without evaluating (`RunResult.metrics` is empty for them). The result keeps the
    body-part stage's metrics, where there is one, as `extra["body_part"]`.
    """
    with run_context(exp) as run, precision(exp.mixed_precision, exp.image_size) as policy:
        prepared = prepare_data(exp)
        spec = backbone_spec(exp.backbone)
        write_config_and_splits(
            run, exp, prepared, normalization=spec.normalization, dtype_policy=policy
        )
        built = build_model(exp, prepared, run.strategy, run.run_dir)
        trained = train(
            built.model, built.data.train, built.data.dev, run.run_dir, built.train_config,
            sample=built.data.first_pixels,
        )  # fmt: skip
        # The model now holds what best.keras holds (train read it back from there).
        same_file(run.run_dir / "checkpoints" / "best.keras", run.run_dir / "model.keras")
        return evaluate_and_write(exp, run, prepared, built, trained)


# --- The seams of a supervised run: prepare the data, build the model, (train), hand over.
# The router, the benchmarks that train as a recipe does, and `run_experiment` call them in
# this order, so that they draw the same random numbers.


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
        hidden, extra["body_part"] = body_part_stage(
            exp, splits, backbone, spec.normalization, run_dir, strategy
        )

    weights = class_weight_table(exp, splits.train)
    masks = training_masks(exp, prepared.outlines, splits.train)
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


def evaluate_and_write(
    exp: Experiment, run: OpenRun, prepared: PreparedData, built: BuiltModel, trained: TrainResult
) -> RunResult:
    """Call the run's evaluators (`EVALUATORS`) on the trained model in turn, then
    write the run's results (`predictions.csv`, `report.html`, `metrics.json` last)."""
    run_dir, model = run.run_dir, guided_part(built.model)
    if num_workers(run.strategy) > 1:
        if run.worker:
            finish_run(run_dir)
            return RunResult(run_dir, {}, None, exp, built.extra)
        model = local_copy(model)
    finished = TrainedRun(
        exp=exp, run_dir=run_dir, model=model,
        guided=built.model if isinstance(built.model, OutlineGuided) else None,
        normalization=built.normalization, data_dir=prepared.data_dir, splits=prepared.splits,
        test=built.data.test, first_batch=built.data.first_batch, selection=trained.selection(),
        extra=built.extra,
    )  # fmt: skip
    metrics: dict = {}
    for evaluate in EVALUATORS:
        metrics.update(evaluate(finished))
    write_results(run_dir, metrics, finished.predictions, finished.cams)
    return RunResult(run_dir, metrics, finished.predictions, exp, built.extra)


def summary_lines(result: RunResult) -> list[str]:
    """What a supervised run prints when it is done: its test metrics with their intervals,
    the epoch handed over, where everything went and the commands that use it."""
    exp, metrics, run_dir = result.config, result.metrics, result.run_dir
    info = exp.data_info
    lines = test_metric_lines(
        f"Test metrics ({info.title} {info.test_split} split; study = mean of the views' "
        "probabilities)",
        metrics,
    )
    if "body_part" in result.extra:
        stage = result.extra["body_part"]
        lines += [
            "",
            f"body-part task: macro F1 {stage['macro_f1']:.3f} "
            f"({describe_selection(stage['selected_epoch'])})",
        ]
    lines += ["", f"model handed over: {describe_selection(metrics['selected_epoch'])}"]
    lines += location_lines(run_dir, ("SavedModel:", run_dir / "export"))
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
