"""Ensembles of finished runs: one model whose probability is the mean of its members'.

The MURA paper's final model averaged five DenseNet169s (the five of lowest dev loss among
those it trained). Here the members are given (`mura-tf ensemble RUN ...`) or are the K seeds
of a recipe, trained first (`mura-tf ensemble --recipe NAME --members K`, or the recipe's
`--ensemble K`: `train_ensemble`), all kept, equally weighted. An ensemble is a run folder like any
other: `config.json` (section "ensemble": the members and the rule), `predictions.csv` (the
mean of the members' test probabilities), `metrics.json`, `report.html`, and `export/` with a
single run's signatures (`mura_tf.serving.export`), so `evaluate` and `predict` treat it as one run.
On data with fracture outlines the ensemble's maps are scored as a single run's are
(`localisation.csv`); an ensemble of outline-guided runs exports and scores the mean of their
outline maps too.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mura_tf.data.catalogue import load_catalogue, load_outlines
from mura_tf.errors import ConfigError
from mura_tf.evaluators.metrics import binary_metrics, study_predictions
from mura_tf.files import disk_errors, load_for_inference
from mura_tf.runs.evaluators.localisation import (
    LOCALISATION_FILE,
    OUTLINE_HEAD_FILE,
    score_and_write,
)
from mura_tf.runs.evaluators.study_metrics import metrics_with_intervals
from mura_tf.runs.folder import open_run
from mura_tf.runs.kinds import ABNORMALITY_SECTIONS
from mura_tf.runs.record import FinishedRun, read_run, write_run_config
from mura_tf.runs.result import RunResult, location_lines, test_metric_lines, write_results
from mura_tf.runs.supervised import Experiment, run_experiment
from mura_tf.serving.export import export_ensemble
from mura_tf.serving.load import load_cam_serving, load_image_serving, load_outline_serving

RULE = "mean of the members' probabilities; every member kept, equally weighted"
# Dev films scored per call of the export: many at once, few enough to keep memory small.
DEV_BATCH = 32


def finished_members(run_dirs: Sequence[str | os.PathLike[str]]) -> list[FinishedRun]:
    """The runs to combine, checked: finished supervised runs of one input size and framing,
    tested on the same films.

    Raises:
        ConfigError: naming the run that does not fit.
    """
    if len(run_dirs) < 2:
        raise ConfigError("an ensemble needs at least two runs")
    runs = []
    for run_dir in run_dirs:
        run = read_run(run_dir)
        if run is None or run.section not in ABNORMALITY_SECTIONS:
            raise ConfigError(f"{run_dir} is not a finished supervised run (no metrics.json)")
        runs.append(run)
    first = runs[0]
    for run in runs[1:]:
        mismatch = run.input_mismatch(first)
        if mismatch:
            raise ConfigError(f"{mismatch}: the members of an ensemble take the same input")
        if _test_paths(run) != _test_paths(first):
            raise ConfigError(
                f"{run.run_dir} was tested on other films than {first.run_dir}: combine runs "
                "of the same parts and data"
            )
    return runs


def _test_paths(run: FinishedRun) -> set[str]:
    return set(pd.read_csv(run.run_dir / "predictions.csv", usecols=["path"])["path"])


def mean_predictions(runs: Sequence[FinishedRun]) -> pd.DataFrame:
    """The first member's test rows with `probability` the mean of every member's."""
    frames = [pd.read_csv(run.run_dir / "predictions.csv") for run in runs]
    mean = pd.concat([f.set_index("path")["probability"] for f in frames], axis=1).mean(axis=1)
    return frames[0].assign(probability=frames[0]["path"].map(mean).to_numpy())


def build_ensemble(
    run_dirs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    overwrite: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Combine finished runs into the ensemble run folder `out_dir` (see the module docstring).
    `data_dir` is where the members' data is now, if not where their `config.json` says (a
    folder given relative to the one they were trained from).

    Raises:
        ConfigError: the runs do not fit together, their data is needed and not found, or
            `out_dir` holds a finished run and `overwrite` is false.
    """

    runs = finished_members(run_dirs)
    first = runs[0]
    outline_data = _outline_data(runs, data_dir)
    recipes = sorted({run.settings.get("recipe", "?") for run in runs})
    out = Path(out_dir)
    with open_run(out, overwrite), disk_errors(out):
        settings = {
            "recipe": recipes[0] if len(recipes) == 1 else "+".join(recipes),
            "members": [str(run.run_dir) for run in runs],
            "rule": RULE,
            "part": first.settings.get("part"),
            **first.input_frame,
            "synthetic": any(run.settings.get("synthetic") for run in runs),
        }
        write_run_config(
            out, "ensemble", settings, first.config.get("data_dir"), f"{first.label} x{len(runs)}"
        )
        predictions = mean_predictions(runs)
        metrics = metrics_with_intervals(predictions, first.settings.get("seed", 0))
        metrics["members"] = [
            {"run": str(run.run_dir), "selected_epoch": run.metrics.get("selected_epoch")}
            for run in runs
        ]
        members = [
            (load_for_inference(run.run_dir / "model.keras"), run.config["normalization"])
            for run in runs
        ]
        # Where every member learnt the outlines, the ensemble's map is the mean of theirs.
        outlined = all("localisation_outline_head" in run.metrics for run in runs)
        exports = [run.run_dir / "export" for run in runs] if outlined else []
        export_ensemble(
            members, settings["image_size"], out / "export", settings["keep_aspect"], exports
        )
        if outline_data is not None:
            metrics.update(ensemble_localisation(runs, outline_data, out, predictions, outlined))
        write_results(out, metrics, predictions)
    return RunResult(out, metrics, predictions, settings)


def _outline_data(runs: Sequence[FinishedRun], data_dir: str | os.PathLike[str] | None):
    """The members' data folder if their maps were scored on its outlines, else None.

    Raises:
        ConfigError: the members were scored on outlines and their data is not found.
    """
    if not all("localisation" in run.metrics for run in runs):
        return None  # data without outlines (MURA): nothing to score the maps on
    where = data_dir or runs[0].config.get("data_dir")
    if not where or not Path(where).is_dir():
        raise ConfigError(
            f"{runs[0].run_dir}: its data {where!r} is not found from {os.getcwd()}; give "
            "--data-dir, so that the ensemble's maps are scored on its outlines as its "
            "members' were"
        )
    return Path(where)


def ensemble_localisation(
    runs: Sequence[FinishedRun],
    data_dir: Path,
    out: Path,
    predictions: pd.DataFrame,
    outlined: bool,
) -> dict:
    """Where the ensemble in `out` looked, scored as a single run's (`Localisation`): its
    Grad-CAM (the mean of its members') and, where every member learnt the outlines, the mean
    of their outline maps, on the test films and on the dev films none of them trained on
    (the outlines and catalogue read from `data_dir`). Those dev films are all scored, so the
    result has the ensemble's dev AUROC too (`"dev"`), the measure its members were chosen by."""
    outlines = load_outlines(data_dir)
    if not outlines:
        return {}
    held_out = set.intersection(*(_dev_paths(run) for run in runs))
    catalogue = load_catalogue(data_dir, check_images=False)
    dev = catalogue[catalogue["path"].isin(held_out)][["path", "study", "part", "label"]]
    predict = load_image_serving(out)
    paths = list(dev["path"])
    dev = dev.assign(probability=[
        float(p)
        for start in range(0, len(paths), DEV_BATCH)
        for p in predict(
            np.array([Path(f).read_bytes() for f in paths[start : start + DEV_BATCH]], dtype=object)
        )[:, 0]
    ])  # fmt: skip
    maps = {LOCALISATION_FILE: ("localisation", load_cam_serving(out))}
    if outlined:
        maps[OUTLINE_HEAD_FILE] = ("localisation_outline_head", load_outline_serving(out))
    fractured = dev[dev["path"].isin(outlines) & (dev["label"] == 1)]
    scores = score_and_write(out, predictions, fractured, outlines, maps)
    return {"dev": dev_summary(dev), **scores}


def dev_summary(dev: pd.DataFrame) -> dict:
    """`{"study_auc", "n_images", "n_studies"}` of films with `study`, `label` and
    `probability`: the study AUROC (the mean of its views' probabilities, as on test); None
    where dev has one class only."""
    studies = study_predictions(dev)
    auc = binary_metrics(studies["label"], studies["probability"])["auc"]
    return {"study_auc": auc, "n_images": len(dev), "n_studies": len(studies)}


def _dev_paths(run: FinishedRun) -> set[str]:
    splits = pd.read_csv(run.run_dir / "splits.csv")
    return set(splits.loc[splits["split"] == "dev", "path"])


def train_ensemble(exp: Experiment, say: Callable[[str], None] = lambda line: None) -> RunResult:
    """The `exp.ensemble` seeds from `exp.seed` on, each trained as a run of its own and
    resumable (a finished one is not trained again), then their ensemble beside the first
    (`ensembleK-<first run's name>`). `say` is told each member's progress in one line."""
    members = [dataclasses.replace(exp, seed=exp.seed + k, ensemble=1) for k in range(exp.ensemble)]
    for k, member in enumerate(members, 1):
        if read_run(member.run_dir()) is not None and not exp.overwrite:
            say(f"member {k}/{exp.ensemble}: seed {member.seed} already finished")
            continue
        say(f"member {k}/{exp.ensemble}: seed {member.seed}")
        run_experiment(member)
    first = members[0].run_dir()
    out = first.with_name(f"ensemble{exp.ensemble}-{first.name}")
    finished = read_run(out)
    if finished is not None and not exp.overwrite:  # as a recipe's finished run: not redone
        say(f"ensemble {out.name} already finished")
        return RunResult(out, finished.metrics, None, finished.settings)
    return build_ensemble([m.run_dir() for m in members], out, exp.overwrite)


def summary_lines(result: RunResult) -> list[str]:
    """What building an ensemble prints: its test metrics and where everything went."""
    members = len(result.config["members"])
    dev = result.metrics.get("dev") or {}
    dev_line = (
        [f"dev AUROC {dev['study_auc']:.4f} ({dev['n_studies']} studies no member trained on)"]
        if dev.get("study_auc") is not None
        else []
    )
    return [
        *test_metric_lines(
            f"Ensemble of {members} runs (mean of their probabilities), test metrics",
            result.metrics,
        ),
        *dev_line,
        *location_lines(result.run_dir, ("SavedModel:", result.run_dir / "export")),
    ]
