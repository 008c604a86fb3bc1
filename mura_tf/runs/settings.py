"""A run's settings: a frozen config whose fields carry their own command-line metadata.

A run is a frozen config (`RunConfig`, extended by `mura_tf.runs.supervised.Experiment` and
`mura_tf.runs.pretrain.PretrainConfig`) and one call. Each field is a `setting`: its default,
its help and how it appears as a flag (`Flag`), from which `mura_tf.runs.command_line` builds
every recipe's flags. Each setting is validated here, once, where its fact lives; what names
the run's folder is `mura_tf.runs.identity`, what it writes `mura_tf.runs.record`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mura_tf.data.datasets import DATASETS, MURA, OWN_PREFIX, DatasetInfo
from mura_tf.data.synthetic import SyntheticConfig, synthetic_dataset
from mura_tf.errors import ConfigError, FieldError
from mura_tf.runs.identity import NOT_SETTINGS, identity, later_settings, run_folder
from mura_tf.training.precision import MODES, parse_mode, uses_mixed_precision

MIXED_PRECISION_HELP = (
    "bfloat16 compute on CPUs with AVX-512 BF16 or AMX, float16 on GPUs with tensor cores, "
    "float32 variables: auto (where that hardware is, for images of 128 px or more), on, "
    "off (mura_tf.training.precision)"
)

# The embedded synthetic set for `--synthetic`: small enough for a 2-core CPU (what a run does
# with it: `mura_tf.runs.presets`).
SYNTHETIC_DATA = SyntheticConfig(
    patients_per_part=60, valid_patients_per_part=20, min_side=96, max_side=192, seed=0
)


@dataclass(frozen=True)
class Alias:
    """A second flag for a setting: `--encoder` for `weights`, or `--mode finetune|linear` for
    `freeze_backbone` (`values` maps each choice to the field's value)."""

    flag: str
    help: str
    values: dict[str, Any] | None = None


@dataclass(frozen=True)
class Flag:
    """How a config field appears on the command line (in the field's `metadata["flag"]`).

    `name` defaults to `--field-name`; `kind` is the argparse type (default: from the field's
    annotation; comma lists stay text and the config parses them); `negatable` bools get
    `--x/--no-x` instead of a switch.
    """

    help: str
    name: str | None = None
    choices: tuple[str, ...] | None = None
    negatable: bool = False
    aliases: tuple[Alias, ...] = ()


_UNSET = object()


def setting(
    default: Any, help: str, since: str | None = None, legacy: Any = _UNSET, **flag: Any
) -> Any:
    """A config field that is also a flag: `lr: float = setting(1e-3, "learning rate",
    name="--lr")`. Keyword arguments are `Flag`'s.

    `since` marks a setting added after runs existed: at its default it is left out of the
    hash that names the run folder (`mura_tf.runs.identity`), so the same command still finds
    the folder of a run started before the setting existed; `legacy` is the value runs of
    that time had, when it is not the default (a setting resolved from `auto`).
    """
    metadata: dict[str, Any] = {"flag": Flag(help=help, **flag)}
    if since is not None:
        metadata["since"] = since
        metadata["legacy"] = default if legacy is _UNSET else legacy
    return field(default=default, metadata=metadata)


def flag_of(config_type: type, name: str) -> str:
    """The flag that sets field `name` (for error messages): `--lr` for `learning_rate`."""
    for f in dataclasses.fields(config_type):
        if f.name == name and "flag" in f.metadata:
            return f.metadata["flag"].name or "--" + name.replace("_", "-")
    return "--" + name.replace("_", "-")


def flags(config_type: type) -> list[tuple[dataclasses.Field, Flag]]:
    """The fields of `config_type` that are flags, in declaration order; a run kind that
    inherits a setting it does not take (`NOT_TAKEN`) has no flag for it."""
    refused = getattr(config_type, "NOT_TAKEN", frozenset())
    return [
        (f, f.metadata["flag"])
        for f in dataclasses.fields(config_type)
        if "flag" in f.metadata and f.name not in refused
    ]


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The settings every run has: where its data and folder are, what it runs on, how it is
    seeded. Each is validated here, once; subclasses validate only their own. Errors name the
    field (`FieldError`); the command line words them as its flags."""

    recipe: str
    backbone: str = setting("resnet18", "backbone: resnet18, resnet50 or densenet169")
    dataset: str = setting(
        "auto",
        "the dataset in --data-dir: auto (recognised from its layout: MURA, FracAtlas, a "
        "folder of classes or a CSV manifest), mura or fracatlas",
        since="0.3",
        legacy="mura",
        choices=("auto", *DATASETS),
    )
    positive: str | None = setting(
        None,
        "your own films: the label or class folder that is positive (default: 1, or the one "
        "named abnormal, fractured or positive)",
        since="0.5",
    )
    part: tuple[str, ...] = setting(
        MURA.parts,
        "body part, a comma list, or all: MURA's elbow, finger, forearm, hand, humerus, "
        "shoulder, wrist; FracAtlas's hand, leg, hip, shoulder, mixed",
        aliases=(Alias("--parts", "the same as --part"),),
    )
    epochs: int = setting(10, "training epochs")
    batch_size: int = setting(32, "training batch size")
    image_size: int = setting(224, "square input side in pixels")
    dev_fraction: float = setting(0.1, "share of train held out (by patient) for model selection")
    seed: int = setting(0, "seed of the split, the initialisation and the batches")
    max_steps: int | None = setting(
        None, "cap steps per epoch (and dev steps) for a quick smoke run"
    )
    cache: str | None = setting(None, "cache decoded images: memory, or a file prefix")
    data_dir: str | None = setting(None, "MURA-v1.1/ or its parent (default: $MURA_DATA_DIR)")
    synthetic: bool = setting(
        False, "generate (once) and use the embedded synthetic MURA; shrinks the run to CPU size"
    )
    out: str = setting("saved_models", "root folder of run outputs")
    run_name: str | None = setting(
        None,
        "run folder name (default: seed and a hash of the settings, so the same command resumes)",
        name="--run",
    )
    overwrite: bool = setting(False, "train again over a finished run folder")
    strict: bool = setting(False, "fail on an unreadable image instead of skipping it")
    strategy: str = setting(
        "auto",
        "tf.distribute strategy; auto is mirrored when several GPUs are visible; "
        "multi_worker reads the cluster from TF_CONFIG (README: Scaling out)",
        choices=("auto", "one_device", "mirrored", "multi_worker"),
    )
    deterministic: bool = setting(
        False, "deterministic ops: the same seed gives the same batches and metrics (slower on GPU)"
    )
    mixed_precision: str = setting("auto", MIXED_PRECISION_HELP, choices=MODES)
    notes: tuple[str, ...] = field(default=(), compare=False)

    # The fields the shared trainer takes, by its names: `TrainConfig` validates them.
    TRAINER_FIELDS: ClassVar[dict[str, str]] = {"epochs": "epochs", "max_steps": "steps_per_epoch"}

    def __post_init__(self) -> None:
        # Imported here: reading finished runs (`mura-tf report`) needs no TensorFlow.
        from mura_tf.data.catalogue import resolve_dataset
        from mura_tf.models.backbones import backbone_spec
        from mura_tf.training.distribute import check_strategy

        spec = backbone_spec(self.backbone)
        data_dir = None if self.synthetic else self.data_dir or os.environ.get("MURA_DATA_DIR")
        info = resolve_dataset(self.dataset, data_dir, self.positive)
        if self.positive is not None and info.prefix != OWN_PREFIX:
            raise FieldError(
                "positive",
                f"is for your own films (a folder of classes or a manifest): {info.title}'s "
                f"positive label is {info.positive}",
            )
        if self.synthetic and info is not MURA:
            raise ConfigError("--synthetic is MURA-shaped: use --dataset mura (or auto) with it")
        # `dataset` stays as given (`auto` follows --data-dir through `dataclasses.replace`).
        object.__setattr__(self, "_data_info", info)
        # Parsed once, in the dataset's order: `--part Hand,elbow` and `--part elbow,hand` are
        # one run.
        object.__setattr__(self, "part", info.parse_parts(self.part))
        self._at_least("batch_size", 1)
        self._check_trainer_settings()
        spec.check_image_size(self.image_size)
        if not 0 < self.dev_fraction < 1:
            raise FieldError("dev_fraction", f"must be in (0, 1), got {self.dev_fraction}")
        check_strategy(self.strategy)
        object.__setattr__(self, "mixed_precision", parse_mode(self.mixed_precision))

    @classmethod
    def flag(cls, name: str) -> str:
        return flag_of(cls, name)

    def synthetic_changes(self, explicit: frozenset[str]) -> dict[str, Any]:
        """What `--synthetic` changes in this kind's settings besides the image size
        (`mura_tf.runs.presets`), before the settings in `explicit` are put back."""
        return {}

    def _at_least(self, name: str, low: float) -> None:
        value = getattr(self, name)
        if value < low:
            raise FieldError(name, f"must be at least {low}, got {value}")

    def _check_trainer_settings(self) -> None:
        """Validate the trainer's settings where their facts live (`TrainConfig`), worded
        with this config's field names."""
        from mura_tf.training.train import TrainConfig  # as above: TensorFlow only in a run

        given = {theirs: getattr(self, mine) for mine, theirs in self.TRAINER_FIELDS.items()}
        try:
            TrainConfig(**given)
        except FieldError as e:
            mine = next(m for m, t in self.TRAINER_FIELDS.items() if t == e.field)
            raise FieldError(mine, e.problem) from None

    @property
    def data_info(self) -> DatasetInfo:
        """The dataset the run reads (`mura_tf.data.datasets`)."""
        return self._data_info

    @property
    def parts_spec(self) -> str:
        """The selection of parts as one string: `all` or short names (`elbow,hand`)."""
        return self.data_info.parts_spec(self.part)

    def table_label(self) -> str:
        """The run's name in tables (`mura-tf report`)."""
        return self.recipe

    def settings(self) -> dict:
        """The settings that define the run (not where or on what it is run), JSON-ready."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_SETTINGS}
        out["part"] = self.parts_spec
        out["dataset"] = self.data_info.name
        # Whether the run computes in mixed precision, as version 0.2 and earlier stored it: a
        # run whose `auto` stays float32 (small images, or no bfloat16 hardware) keeps the name
        # of its folder from before `auto` was the default.
        out["mixed_precision"] = uses_mixed_precision(self.mixed_precision, self.image_size)
        return out

    def identity(self) -> dict:
        """`settings()` without the later settings left at the value runs before them had:
        what the run folder's name hashes (`mura_tf.runs.identity`)."""
        return identity(self.settings(), later_settings(type(self)))

    def run_dir(self) -> Path:
        return run_folder(
            self.out, self.recipe, self.part, self.identity(), self.seed, self.run_name
        )

    def data_folder(self) -> str:
        return data_folder(self.synthetic, self.data_dir, self.part)


def data_folder(synthetic: bool, data_dir: str | None, parts: Sequence[str]) -> str:
    """The MURA folder: the embedded synthetic set of `parts`, `data_dir` or `$MURA_DATA_DIR`."""
    if synthetic:
        return str(synthetic_dataset(dataclasses.replace(SYNTHETIC_DATA, parts=tuple(parts))))
    data_dir = data_dir or os.environ.get("MURA_DATA_DIR")
    if not data_dir:
        raise ConfigError("no data: pass --data-dir (or set MURA_DATA_DIR), or use --synthetic")
    return data_dir
