"""What every run shares: its settings, its folder's name and schema, its opening and closing.

A run is a frozen config (`RunConfig`, extended by `mura_tf.runs.supervised.Experiment` and
`mura_tf.runs.pretrain.PretrainConfig`) and one call. The config's fields carry their own
command-line metadata (`setting`), from which `recipes.common` builds every recipe's flags.

The run folder `OUT/<recipe>/<parts>/<run>/` (`run_dir`) always holds:

    config.json   the settings (under the key of the run's kind, `mura_tf.runs.kinds`), the
                  data folder, the strategy and the notes; written first (`write_config`)
    metrics.json  the results; written last (`write_metrics`), it marks a finished run

and what each kind of run adds (see its module). `read_run` and `finished_runs` are the one
reader of that schema.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mura_tf.data.datasets import (
    DATASETS,
    MURA,
    OWN_PREFIX,
    DatasetInfo,
    dataset_of_parts,
    own_dataset,
    register_own,
    short_name,
)
from mura_tf.data.synthetic import SyntheticConfig, synthetic_dataset
from mura_tf.errors import ConfigError, FieldError
from mura_tf.files import disk_errors, write_json
from mura_tf.runs.folder import finish_run, open_run
from mura_tf.runs.kinds import SECTIONS, kind_of_config
from mura_tf.training.precision import MODES, parse_mode, uses_mixed_precision

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"  # = mura_tf.runs.folder.FINISHED_MARK

# The embedded synthetic set for `--synthetic`: small enough for a 2-core CPU (what a run does
# with it: `mura_tf.runs.presets`).
SYNTHETIC_DATA = SyntheticConfig(
    patients_per_part=60, valid_patients_per_part=20, min_side=96, max_side=192, seed=0
)


# --- Settings and their command-line metadata -------------------------------------------------


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
    hash that names the run folder (`RunConfig.identity`), so the same command still finds
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


# Where and on how many devices a run happens does not change what it computes (so a run
# interrupted on one machine resumes from its folder on another), and neither do its name,
# notes and table label, nor whether it is one of several seeds averaged (`--ensemble`): none
# of them is part of the settings that name the run.
NOT_SETTINGS = frozenset(
    {"out", "run_name", "overwrite", "strict", "notes", "strategy", "label", "ensemble"}
)


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
    mixed_precision: str = setting(
        "auto",
        "bfloat16 compute on CPUs with AVX-512 BF16 or AMX, float16 on GPUs with tensor cores, "
        "float32 variables: auto (where that hardware is, for images of 128 px or more), on, "
        "off (mura_tf.training.precision)",
        choices=MODES,
    )
    notes: tuple[str, ...] = field(default=(), compare=False)

    # The fields the shared trainer takes, by its names: `TrainConfig` validates them.
    TRAINER_FIELDS: ClassVar[dict[str, str]] = {"epochs": "epochs", "max_steps": "steps_per_epoch"}
    # Settings this kind gained after runs of it existed, with the value those runs had: at
    # that value they stay out of the hash that names the run folder (`identity`).
    LATER_SETTINGS: ClassVar[dict[str, Any]] = {}

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
        from mura_tf.training.train import TrainConfig

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
        """`settings()` without the later settings (`setting(since=...)`) left at their
        default: what the run folder's name hashes."""
        later = {
            f.name: f.metadata["legacy"] for f in dataclasses.fields(self) if "since" in f.metadata
        }
        later.update(self.LATER_SETTINGS)
        return {k: v for k, v in self.settings().items() if k not in later or v != later[k]}

    def run_dir(self) -> Path:
        return run_folder(
            self.out, self.recipe, self.part, self.identity(), self.seed, self.run_name
        )

    def data_folder(self) -> str:
        return data_folder(self.synthetic, self.data_dir, self.part)


def run_folder(
    out: str,
    recipe: str,
    parts: Sequence[str],
    settings: dict,
    seed: int,
    run_name: str | None = None,
) -> Path:
    """`out/<recipe>/<parts>/<run>`; the default run name is the seed and a hash of `settings`,
    stable for the same settings, so the same command finds and resumes its run."""
    dataset = dataset_of_parts(parts)
    part_dir = "all" if set(parts) == set(dataset.parts) else "+".join(map(short_name, parts))
    if dataset is not MURA:  # MURA's folders keep the names they had before other datasets
        part_dir = f"{dataset.name}-{part_dir}"
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return Path(out) / recipe / part_dir / (run_name or f"seed{seed}-{digest[:8]}")


def data_folder(synthetic: bool, data_dir: str | None, parts: Sequence[str]) -> str:
    """The MURA folder: the embedded synthetic set of `parts`, `data_dir` or `$MURA_DATA_DIR`."""
    if synthetic:
        return str(synthetic_dataset(dataclasses.replace(SYNTHETIC_DATA, parts=tuple(parts))))
    data_dir = data_dir or os.environ.get("MURA_DATA_DIR")
    if not data_dir:
        raise ConfigError("no data: pass --data-dir (or set MURA_DATA_DIR), or use --synthetic")
    return data_dir


# --- Opening and closing a run ------------------------------------------------------------------


@dataclass(frozen=True)
class OpenRun:
    """A run in progress: its tf.distribute strategy, its folder (a worker's own under
    multi-worker), and this process's worker index (0: the chief, which writes the results)."""

    strategy: Any
    run_dir: Path
    worker: int


@contextlib.contextmanager
def opened(config: RunConfig) -> Iterator[OpenRun]:
    """Create the strategy, hold the run folder and turn disk errors into one line.

    Raises:
        InUseError: another process runs in the same folder.
        ConfigError: the folder holds a finished run and `config.overwrite` is false.
        DiskError: the disk filled up or turned read-only while the run wrote.
    """
    import tensorflow as tf

    from mura_tf.training.distribute import make_strategy, worker_index, worker_run_dir

    # First: a multi-worker strategy must exist before TensorFlow runs any op.
    strategy = make_strategy(config.strategy)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    run_dir = worker_run_dir(config.run_dir(), strategy)
    with open_run(run_dir, config.overwrite), disk_errors(run_dir):
        yield OpenRun(strategy, run_dir, worker_index(strategy))


def write_config(run: OpenRun, config: RunConfig, data_dir: str, **facts: Any) -> Path:
    """Write `config.json` of a run that trains: `write_run_config` with the config's settings
    and the strategy among `facts` (counts, normalisation ...)."""
    from mura_tf.training.distribute import describe

    info = config.data_info
    if info.prefix == OWN_PREFIX:  # its names, for reports read in another process
        facts["own_dataset"] = {
            "title": info.title,
            "short_names": list(info.short_names),
            "positive": info.positive,
            "negative": info.negative,
            "splits": list(info.catalogue_splits),
        }
    return write_run_config(
        run.run_dir, kind_of_config(type(config)).section, config.settings(), data_dir,
        config.table_label(), config.notes,
        **facts, strategy=describe(config.strategy, run.strategy),
    )  # fmt: skip


def write_run_config(
    run_dir: Path,
    section: str,
    settings: dict,
    data_dir: str | None,
    label: str,
    notes: Sequence[str] = (),
    **facts: Any,
) -> Path:
    """Write `config.json`: `settings` under the kind's `section`, then the data folder,
    `facts`, the notes and the run's name in tables (`label`)."""

    document = {
        section: settings,
        "data_dir": None if data_dir is None else str(data_dir),
        **facts,
        "notes": list(notes),
        "label": label,
    }
    return write_json(run_dir / CONFIG_FILE, document)


def write_metrics(run_dir: Path, metrics: dict) -> None:
    """Write `metrics.json`, which marks the run finished, then drop its resume points."""

    write_json(run_dir / METRICS_FILE, metrics)
    finish_run(run_dir)


# --- Reading finished runs ----------------------------------------------------------------------


@dataclass(frozen=True)
class FinishedRun:
    """A finished run as written by `write_config` and `write_metrics`."""

    run_dir: Path
    section: str  # one of SECTIONS
    settings: dict
    config: dict
    metrics: dict

    @property
    def label(self) -> str:
        """The run's name in tables: the recipe's label, or the recipe."""
        return self.config.get("label") or self.settings.get("recipe", self.section)

    @property
    def input_frame(self) -> dict:
        """What the run's models take: `image_size` and `keep_aspect` (pad instead of stretch).
        Runs combined into one model (ensemble, cascade) must agree on it."""
        return {
            "image_size": self.settings["image_size"],
            "keep_aspect": bool(self.settings.get("keep_aspect", False)),
        }

    def input_mismatch(self, other: FinishedRun) -> str | None:
        """How this run's input differs from `other`'s ("RUN has image_size 64, OTHER has
        32"), or None where they agree."""
        mine, theirs = self.input_frame, other.input_frame
        for key, value in mine.items():
            if value != theirs[key]:
                return f"{self.run_dir} has {key} {value}, {other.run_dir} has {theirs[key]}"
        return None


def read_run(run_dir: str | os.PathLike[str]) -> FinishedRun | None:
    """The finished run in `run_dir`, or None (unfinished, or not a run folder)."""
    run_dir = Path(run_dir)
    config_path, metrics_path = run_dir / CONFIG_FILE, run_dir / METRICS_FILE
    if not (config_path.is_file() and metrics_path.is_file()):
        return None
    config = json.loads(config_path.read_text())
    section = next((k for k in SECTIONS if k in config), None)
    if section is None:
        return None
    if isinstance(config.get("own_dataset"), dict):  # its classes' names, not generic ones
        register_own(own_dataset(**config["own_dataset"]))
    return FinishedRun(
        run_dir, section, config[section], config, json.loads(metrics_path.read_text())
    )


def finished_runs(root: str | os.PathLike[str]) -> Iterator[FinishedRun]:
    """Every finished run under `root`, in path order."""
    for metrics_path in sorted(Path(root).rglob(METRICS_FILE)):
        run = read_run(metrics_path.parent)
        if run is not None:
            yield run
