"""Where the model looked, against the radiologists' fracture outlines (datasets that have
them: FracAtlas): each fractured test film's Grad-CAM scored (`evaluators.localisation`),
and the outline head's own map where the run learnt the outlines; dev films are scored too,
since a setting is chosen by where it looks on dev, never on test."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mura_tf.data.catalogue import load_outlines
from mura_tf.data.fracatlas import Outline
from mura_tf.evaluators.localisation import localisation_metrics, score_films
from mura_tf.files import write_text
from mura_tf.runs.evaluators.export import outline_of
from mura_tf.runs.evaluators.trained import TrainedRun
from mura_tf.serving.gradcam import film_cams

LOCALISATION_FILE = "localisation.csv"
OUTLINE_HEAD_FILE = "localisation_outline_head.csv"


@dataclass(frozen=True)
class Localisation:
    """`localisation` (and `localisation_outline_head`), each with its `dev` summary; the
    films' scores in `localisation.csv` (and `localisation_outline_head.csv`)."""

    def __call__(self, run: TrainedRun) -> dict:
        exp = run.exp
        outlines = load_outlines(run.data_dir, exp.data_info)
        if not outlines:
            return {}
        maps = {LOCALISATION_FILE: ("localisation", run.cams)}
        outline = outline_of(run)
        if outline is not None:
            maps[OUTLINE_HEAD_FILE] = ("localisation_outline_head", film_cams(
                run.model, run.normalization, exp.image_size, exp.keep_aspect, outline[1]
            ))  # fmt: skip
        dev_films = run.dev_predictions[["path", "part", "label", "probability"]]
        return score_and_write(run.run_dir, run.predictions, dev_films, outlines, maps)


def score_and_write(
    run_dir: Path,
    test: pd.DataFrame,
    dev: pd.DataFrame,
    outlines: Mapping[str, Outline],
    maps: Mapping[str, tuple[str, Callable]],
) -> dict:
    """Score each map on the fractured, outlined films of `test` and `dev` (`path`, `part`,
    `label`, `probability`), write each map's test scores to `run_dir / FILE` and return
    `{key: test summary with its "dev" summary}`; `maps` is `{FILE: (key, encoded films ->
    (probability, map, content))}`. Shared by single runs and ensembles."""
    metrics = {}
    for file, (key, fn) in maps.items():
        scores = score_films(test, outlines, fn)
        metrics[key] = localisation_metrics(scores)
        dev_summary = localisation_metrics(score_films(dev, outlines, fn))
        if dev_summary and metrics[key]:
            dev_summary.pop("per_part")
            dev_summary.pop("method")
            metrics[key]["dev"] = dev_summary
        write_text(run_dir / file, scores.to_csv(index=False, float_format="%.7g"))
    return metrics
