"""The reader page of `mura-tf serve`: drop the films of one study, see each view's
probability and Grad-CAM, the study's decision and the run that decided.

`GET /` is one static page; it posts the films (multipart, in memory: nothing a client sends
is written to disk, no path it names is read) to `POST /reader/study`, which answers JSON:

    {"views": [{"name", "probability", "image": PNG data URL of the film under its Grad-CAM,
                "outline_image": the same under the model's own fracture map, for an export
                of an outline-guided run (`--outline-weight`)}],
     "study": {"probability", "abnormal", "decision", "threshold", "rule"},
     "run": {"label", "recipe", "part", "dataset", "epoch", "metrics": [[name, text], ...]},
     "skipped": [[name, reason], ...]}
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from mura_tf.data.dicom import NotAFilm, film_png, has_preamble
from mura_tf.data.pipeline import decode_film, to_film
from mura_tf.evaluators.thresholds import Threshold
from mura_tf.serving.gradcam import overlay
from mura_tf.serving.predict import image_problem

MAX_FILMS = 16


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


def read_study(uploads: list[Upload], cams, threshold: Threshold, outline_maps=None) -> dict:
    """Score the films of one study (module docstring's JSON, without `run`).

    Args:
        cams: the export's Grad-CAM (`mura_tf.serving.load.load_cam_serving`).
        outline_maps: an outline-guided export's own map, called as `cams`
            (`load_outline_serving`); each view then also has `outline_image`.
    """

    films, skipped = [], []
    for upload in uploads[:MAX_FILMS]:
        try:
            films.append((upload.name, encoded_film(upload.data)))
        except ValueError as e:
            skipped.append([upload.name, str(e)])
    skipped += [[u.name, f"more than {MAX_FILMS} films"] for u in uploads[MAX_FILMS:]]
    if not films:
        return {"views": [], "study": None, "skipped": skipped}
    encoded = np.array([data for _, data in films], dtype=object)
    probabilities, maps, contents = cams(encoded)
    own = outline_maps(encoded) if outline_maps is not None else None
    views = []
    for i, ((name, data), p) in enumerate(zip(films, probabilities, strict=True)):
        film = decode_film(tf.constant(data)).numpy()
        view = {
            "name": name,
            "probability": float(p),
            "image": _overlaid(film, maps[i], contents[i]),
        }
        if own is not None:
            view["outline_image"] = _overlaid(film, own[1][i], own[2][i])
        views.append(view)
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


def _overlaid(film: np.ndarray, heat: np.ndarray, content: np.ndarray) -> str:
    """`film` under `heat` (a map over the model's input frame) as a PNG data URL."""
    picture = overlay(film, to_film(heat, content, film.shape[:2]))
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


PAGE = Path(__file__).with_name("reader.html")
