"""The reader page of `mura-tf serve`: drop the films of one study, see each view's
probability and Grad-CAM, the study's decision and the run that decided.

`GET /` is one static page; it posts the films (multipart, in memory: nothing a client sends
is written to disk, no path it names is read) to `POST /reader/study`, which answers JSON:

    {"views": [{"name", "probability", "image": PNG data URL of the film under its Grad-CAM}],
     "study": {"probability", "abnormal", "decision", "threshold", "rule"},
     "run": {"label", "recipe", "part", "dataset", "epoch", "metrics": [[name, text], ...]},
     "skipped": [[name, reason], ...]}
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from mura_tf.data.dicom import NotAFilm, film_png, has_preamble
from mura_tf.evaluators.intervals import value_with_interval
from mura_tf.evaluators.thresholds import Threshold, run_folder_of
from mura_tf.runs.config import read_run
from mura_tf.runs.result import describe_selection
from mura_tf.serving.gradcam import overlay, to_film
from mura_tf.serving.predict import image_problem

MAX_FILMS = 16
SHOWN_METRICS = (("auc", "study AUROC"), ("kappa", "Cohen's kappa"), ("accuracy", "accuracy"))


@dataclass(frozen=True)
class Upload:
    """One file a client sent: its name (shown, never opened) and its bytes."""

    name: str
    data: bytes


def encoded_film(data: bytes) -> bytes:
    """The PNG or JPEG bytes the export reads: a DICOM film as displayed, a PNG or JPEG as it
    is. Raises `ValueError` with the reason for anything else (`image_problem`)."""
    if has_preamble(data):
        try:
            return film_png(io.BytesIO(data))
        except NotAFilm as e:
            raise ValueError(f"DICOM: {e}") from None
    problem = image_problem(data)
    if problem is not None:
        raise ValueError(problem)
    return data


def run_summary(model: str | os.PathLike[str]) -> dict:
    """What the page says about the model: the run's name, recipe, parts, dataset, the epoch
    handed over and its test metrics with their intervals (a bare export: its path only)."""
    run = read_run(run_folder_of(model))
    if run is None:
        return {"label": str(model), "metrics": []}
    study = run.metrics.get("study", {})
    shown = [
        [name, value_with_interval(study[key], study.get(f"{key}_ci"))]
        for key, name in SHOWN_METRICS
        if key in study
    ]
    selected = run.metrics.get("selected_epoch")
    synthetic = bool(run.settings.get("synthetic"))
    dataset = run.settings.get("dataset", "mura")
    summary = {
        "label": run.label,
        "recipe": run.settings.get("recipe", run.section),
        "part": run.settings.get("part", ""),
        "dataset": f"the synthetic {dataset.upper()} (generated films)" if synthetic else dataset,
        "epoch": describe_selection(selected) if selected else "",
        "metrics": shown,
    }
    if synthetic:
        summary["warning"] = (
            "This model was trained on the synthetic set: drawn shapes, not radiographs. Its "
            "probabilities on real films mean nothing; train on real films (--data-dir) to use it."
        )
    return summary


def read_study(uploads: list[Upload], cams, threshold: Threshold) -> dict:
    """Score the films of one study (module docstring's JSON, without `run`).

    Args:
        cams: the export's Grad-CAM (`mura_tf.serving.load.load_cam_serving`).
    """
    from mura_tf.data.pipeline import decode_film

    films, skipped = [], []
    for upload in uploads[:MAX_FILMS]:
        try:
            films.append((upload.name, encoded_film(upload.data)))
        except ValueError as e:
            skipped.append([upload.name, str(e)])
    skipped += [[u.name, f"more than {MAX_FILMS} films"] for u in uploads[MAX_FILMS:]]
    if not films:
        return {"views": [], "study": None, "skipped": skipped}
    probabilities, maps, contents = cams(np.array([data for _, data in films], dtype=object))
    views = []
    for (name, data), p, cam, content in zip(films, probabilities, maps, contents, strict=True):
        film = decode_film(tf.constant(data)).numpy()
        picture = overlay(film, to_film(cam, content, film.shape[:2]))
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        views.append({"name": name, "probability": float(p), "image": image})
    mean = float(np.mean(probabilities))
    abnormal = mean >= threshold.value
    study = {
        "probability": mean,
        "abnormal": bool(abnormal),
        "decision": "abnormal" if abnormal else "normal",
        "threshold": threshold.value,
        "rule": threshold.rule,
    }
    return {"views": views, "study": study, "skipped": skipped}


PAGE = Path(__file__).with_name("reader.html")
