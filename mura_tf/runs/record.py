"""A run folder's record: `config.json` written first, `metrics.json` last, read back.

The run folder `OUT/<recipe>/<parts>/<run>/` (`mura_tf.runs.identity`) always holds:

    config.json   the settings (under the key of the run's kind, `mura_tf.runs.kinds`), the
                  data folder, the strategy and the notes; written first (`write_config`)
    metrics.json  the results; written last (`write_metrics`), it marks a finished run

and what each kind of run adds (see its module). `read_run` and `finished_runs` are the one
reader of that schema.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mura_tf.data.datasets import OWN_PREFIX, own_dataset, register_own
from mura_tf.files import write_json
from mura_tf.runs.folder import OpenRun, finish_run
from mura_tf.runs.kinds import SECTIONS, kind_of_config
from mura_tf.runs.settings import RunConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"  # = mura_tf.runs.folder.FINISHED_MARK


def write_config(run: OpenRun, config: RunConfig, data_dir: str, **facts: Any) -> Path:
    """Write `config.json` of a run that trains: `write_run_config` with the config's settings
    and the strategy among `facts` (counts, normalisation ...)."""
    # TensorFlow only when a run writes: reading records (`mura-tf report`) stays free of it.
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
