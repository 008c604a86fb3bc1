"""A supervised run's films: the catalogue of its parts, split by patient (seeded), the
training split cut to its label fraction (`prepare_data`), and the record of that split,
`splits.csv`, written with `config.json` (`write_config_and_splits`). The part router prepares its
films the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from mura_tf.data.catalogue import load_catalogue, load_outlines
from mura_tf.data.fracatlas import Outline
from mura_tf.data.splits import Splits, label_fraction, make_splits
from mura_tf.errors import ConfigError
from mura_tf.files import write_text
from mura_tf.runs.experiment import Experiment
from mura_tf.runs.folder import OpenRun
from mura_tf.runs.record import write_config


@dataclass(frozen=True)
class PreparedData:
    """A run's films: where they are, how they split (`splits.csv`) and, for a run that learns
    from them (`--outline-weight`), the radiologists' outlines keyed by path."""

    data_dir: str
    splits: Splits
    outlines: dict[str, Outline] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {name: int(len(getattr(self.splits, name))) for name in ("train", "dev", "test")}


def prepare_data(exp: Experiment) -> PreparedData:
    """The catalogue of `exp`'s parts, split by patient (seeded), the training split cut to
    `exp.label_fraction`.

    Raises:
        ConfigError: the data has no test split for these parts, or no outlines for a run that
            learns from them.
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
    # Before config.json: a run that cannot start leaves no run behind.
    outlines = load_outlines(data_dir, exp.data_info) if exp.outline_weight else {}
    if exp.outline_weight and not outlines:
        raise ConfigError(
            f"--outline-weight: {data_dir} has no fracture outlines to learn from "
            "(FracAtlas has them; MURA has none)"
        )
    return PreparedData(data_dir, splits, outlines)


def write_config_and_splits(run: OpenRun, exp: Experiment, prepared: PreparedData, **facts) -> None:
    """`config.json` (with the split's counts and `facts`) and `splits.csv`."""
    write_config(run, exp, prepared.data_dir, images=prepared.counts, **facts)
    write_text(run.run_dir / "splits.csv", split_table(prepared.splits).to_csv(index=False))


def split_table(splits: Splits) -> pd.DataFrame:
    """`path, split` for every image used: which images trained, selected and tested."""
    return pd.concat(
        [getattr(splits, name)[["path"]].assign(split=name) for name in ("train", "dev", "test")],
        ignore_index=True,
    )
