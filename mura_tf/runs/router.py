"""The body-part router: report 000 §3.3's first stage as a run of its own.

A classifier of the dataset's parts (backbone + head, softmax: MURA's 7) trained on the body
part of each film. A MURA study holds one part, so a study is routed by the majority vote of its
views (`study_votes`; a tie goes to the part with the larger summed probability), and the router is
scored per study as well as per view (`routing_metrics`): accuracy, macro F1, the confusion
matrix, how many studies went to the wrong part and in how many the views disagreed.

The run folder is a supervised run's (`mura_tf.runs.supervised`) without the export (the router is
served inside a cascade, `mura_tf.runs.cascade`): `config.json` (section "router"), `splits.csv`,
`history.csv`, `logs/`, `checkpoints/`, `model.keras`, `predictions.csv` (one row per test
film: its part, the part its view was given and the part its study was routed to, and the
probability of every part), `report.html`, `metrics.json`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import ClassVar

import keras

from mura_tf.errors import ConfigError
from mura_tf.evaluators.routing import confusion_frame, routed_frame, routing_metrics
from mura_tf.files import same_file
from mura_tf.models.backbones import backbone_spec, build_backbone
from mura_tf.models.heads import build_classifier, classification_head
from mura_tf.runs.batches import fit_data, train_config
from mura_tf.runs.folder import run_context
from mura_tf.runs.prepared import prepare_data, write_config_and_splits
from mura_tf.runs.result import RunResult, describe_selection, location_lines, write_results
from mura_tf.runs.supervised import Experiment
from mura_tf.training.precision import precision
from mura_tf.training.train import compile_classifier, train


@dataclass(frozen=True, kw_only=True)
class RouterConfig(Experiment):
    """A body-part router run: an `Experiment` whose target is the part, not the label."""

    # Settings of `Experiment` a router does not take: no flags for them (`runs.settings.flags`).
    NOT_TAKEN: ClassVar[frozenset[str]] = frozenset(
        {"ensemble", "intermediate_epochs", "label_fraction", "class_weights",
         "class_weights_by_part"}
    )  # fmt: skip

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
        if self.strategy == "multi_worker":
            raise ConfigError("--strategy multi_worker: train a router on one machine")
        # No flag sets these (NOT_TAKEN); a library caller is told in the fields' names.
        given = [
            name for name in sorted(self.NOT_TAKEN)
            if getattr(self, name) != Experiment.__dataclass_fields__[name].default
        ]  # fmt: skip
        if given:
            raise ConfigError(f"RouterConfig takes no {', '.join(given)}: leave them unset")


def run_router(cfg: RouterConfig) -> RunResult:
    """Train and test a body-part router; see the module docstring for what it writes."""
    with run_context(cfg) as run, precision(cfg.mixed_precision, cfg.image_size) as policy:
        run_dir = run.run_dir
        prepared = prepare_data(cfg)
        spec = backbone_spec(cfg.backbone)
        write_config_and_splits(
            run, cfg, prepared, normalization=spec.normalization, dtype_policy=policy
        )

        keras.utils.set_random_seed(cfg.seed)
        data = fit_data(cfg, prepared.splits, spec.normalization, run.strategy, target="part")
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
        frame = prepared.splits.test[["path", "part", "patient", "study", "label"]]
        predictions = routed_frame(frame, probabilities, cfg.part)
        metrics = {"router": routing_metrics(predictions), "selected_epoch": result.selection()}
        write_results(run_dir, metrics, predictions)
    return RunResult(run_dir, metrics, predictions, cfg)


def summary_lines(result: RunResult) -> list[str]:
    """What a router run prints when it is done: how well it routes views and studies, its
    confusion matrix, where everything went and how to build a cascade on it."""
    routing = result.metrics["router"]
    views, studies = routing["image"], routing["study"]
    return [
        "",
        f"Body-part routing of the test films ({result.config.data_info.title} "
        f"{result.config.data_info.test_split} split)",
        f"views:   accuracy {views['accuracy']:.3f}, macro F1 {views['macro_f1']:.3f} "
        f"({views['n']} films)",
        f"studies: accuracy {studies['accuracy']:.3f} by majority vote of the views "
        f"({routing['wrong_part_studies']} of {routing['studies']} to the wrong part; views "
        f"disagreed in {routing['views_disagreed_studies']})",
        confusion_frame(routing).to_string(),
        "",
        f"model handed over: {describe_selection(result.metrics['selected_epoch'])}",
        *location_lines(result.run_dir),
        f"cascade:      python -m mura_tf cascade --router {shlex.quote(str(result.run_dir))} "
        "--experts PART_RUN... [--fallback ALL_PARTS_RUN] --out DIR",
    ]
