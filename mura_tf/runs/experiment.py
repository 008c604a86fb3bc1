"""The settings of a supervised run (`Experiment`): a row of the reports' tables. Recipes fill
in the reports' values; `mura_tf.runs.supervised` runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from mura_tf.data.augment_settings import parse_augmentations
from mura_tf.errors import ConfigError, FieldError
from mura_tf.models.heads import HEADS
from mura_tf.runs.presets import supervised_changes
from mura_tf.runs.settings import Alias, RunConfig, setting
from mura_tf.training.train import OPTIMIZERS


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
    ema: float = setting(
        0.0,
        "momentum of a moving average of the weights (Polyak averaging, e.g. 0.99): dev scores, "
        "the epoch handed over and the export use the average; 0: off",
        since="0.6",
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
        "ema": "ema_momentum",
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
