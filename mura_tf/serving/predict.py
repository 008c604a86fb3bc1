"""Predictions on new radiographs: find the films, group them into studies, call the export.

A study is a folder of views, MURA's convention: the images in one folder form one study, and
its probability is the mean of its views' (the MURA paper's rule), decided at a `Threshold`
(0.5, MURA's protocol, unless the caller gives another).
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from mura_tf.data.datasets import dataset_of_parts
from mura_tf.data.dicom import NotAFilm, dicom_info, film_pixels, film_png, is_dicom
from mura_tf.data.fracatlas import Outline
from mura_tf.data.limits import bomb_problem, size_problem
from mura_tf.data.mura import check_decodes
from mura_tf.data.parts import PARTS
from mura_tf.data.pipeline import decode_film, to_film
from mura_tf.errors import ConfigError
from mura_tf.evaluators.thresholds import PROTOCOL, Threshold
from mura_tf.files import write_with
from mura_tf.serving.gradcam import draw_outline, overlay, study_sheet

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Inputs:
    """The readable films to predict on (one row each: path, study, part, label) and the files
    that could not be read, with the reason."""

    films: pd.DataFrame
    unreadable: tuple[tuple[Path, str], ...]


def _part_of(path: Path) -> str:
    """The body part named by a MURA-style folder on the path (`XR_ELBOW`), or ""."""
    for name in reversed(path.parts):
        if name.upper() in PARTS:
            return name.upper()
    return ""


def _label_of(folder: Path) -> float:
    """1 or 0 for MURA's `studyN_positive` / `_negative` folders, NaN otherwise."""
    if folder.name.endswith("_positive"):
        return 1.0
    if folder.name.endswith("_negative"):
        return 0.0
    return float("nan")


def _image_files(folder: Path) -> list[Path]:
    """PNG, JPEG and DICOM files under `folder` (DICOM by suffix or by its preamble)."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".")
        and (p.suffix.lower() in IMAGE_SUFFIXES or is_dicom(p))
    )  # fmt: skip


def film_bytes(path: str | os.PathLike[str]) -> bytes:
    """The encoded film the export's image-bytes signature takes: a PNG or JPEG file as it is,
    a DICOM file as displayed (`mura_tf.data.dicom.film_png`)."""
    path = Path(path)
    return film_png(path) if is_dicom(path) else path.read_bytes()


def readable(path: Path) -> str | None:
    """Why `path` is not a film this command can read (empty, truncated, not an image, a DICOM
    object that is not one greyscale film), or None."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return e.strerror or "cannot be read"
    if not data:
        return "empty file"
    if is_dicom(path):
        try:
            film_pixels(path)
        except NotAFilm as e:
            return f"DICOM: {e}"
        return None
    return image_problem(data)


def image_problem(data: bytes) -> str | None:
    """Why the bytes `data` are not a PNG or JPEG film the export can decode (not an image,
    another format, more pixels than `limits.MAX_FILM_PIXELS`, damaged), or None. The size is
    read from the header before a pixel is decoded; damage is found as the catalogues find it
    (`mura.check_decodes`), without a full decode."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in ("PNG", "JPEG"):
                return f"a {image.format} image, not PNG, JPEG or DICOM"
            too_large = size_problem(*image.size)
            if too_large:
                return too_large
            check_decodes(image)
    except UnidentifiedImageError:
        return "not a PNG, JPEG or DICOM film"
    except Image.DecompressionBombError as e:
        return bomb_problem(e)
    except (OSError, SyntaxError, ValueError, zlib.error) as e:  # a damaged PNG or JPEG
        return f"not a readable film ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    return None


def find_inputs(paths: Sequence[str | os.PathLike[str]], per_image: bool = False) -> Inputs:
    """The films under `paths` (PNG, JPEG or DICOM files, or folders searched recursively),
    each with its study: the DICOM Study Instance UID where the file has one, else its folder
    (or, with `per_image`, itself); `description` is a DICOM film's study and series
    descriptions.

    Raises:
        ConfigError: a path does not exist, or no image file is found.
    """
    files: list[Path] = []
    for given in map(Path, paths):
        if not given.exists():
            raise ConfigError(f"{given} does not exist: pass image files or folders of them")
        if given.is_dir():
            found = _image_files(given)
            if not found:
                raise ConfigError(f"{given} holds no PNG, JPEG or DICOM file")
            files += found
        else:
            files.append(given)
    rows, unreadable = [], []
    for path in dict.fromkeys(files):  # once each, in order
        reason = readable(path)
        if reason is not None:
            unreadable.append((path, reason))
            continue
        study, description = str(path if per_image else path.parent), ""
        if is_dicom(path):
            info = dicom_info(path)
            study = info.study_uid if info.study_uid and not per_image else study
            description = " / ".join(
                d for d in (info.study_description, info.series_description) if d
            )
        rows.append(
            {"path": str(path), "study": study, "part": _part_of(path.parent),
             "label": _label_of(path.parent), "description": description}
        )  # fmt: skip
    films = pd.DataFrame(rows, columns=["path", "study", "part", "label", "description"])
    return Inputs(films, tuple(unreadable))


def predict_films(
    predict: Callable[[np.ndarray], np.ndarray] | None,
    films: pd.DataFrame,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    predict_study: Callable[[np.ndarray], tuple[np.ndarray, int]] | None = None,
) -> pd.DataFrame:
    """`films` with a `probability` column (and `routed_part` with `predict_study`).

    Args:
        predict: encoded images, a string array `[N]`, to probabilities `[N, 1]` (the export's
            `serve_images`, see `mura_tf.serving.load.load_image_serving`).
        predict_study: for an export that routes whole studies (a part-router cascade,
            `mura_tf.serving.load.load_study_serving`): the films of one study to their
            probabilities and the part they were routed to; used instead of `predict`.
    """
    out = np.zeros(len(films), np.float32)
    paths = films["path"].tolist()

    def read(rows) -> np.ndarray:
        return np.array([film_bytes(paths[i]) for i in rows], dtype=object)

    if predict_study is not None:
        routed = np.empty(len(films), dtype=object)
        done = 0
        for rows in films.groupby("study", sort=False).indices.values():
            probabilities, part = predict_study(read(rows))
            out[rows] = np.asarray(probabilities).reshape(-1)
            routed[rows] = PARTS[part]
            done += len(rows)
            if progress is not None:
                progress(done, len(paths))
        return films.assign(probability=out, routed_part=routed)
    for start in range(0, len(paths), batch_size):
        rows = range(start, min(start + batch_size, len(paths)))
        out[start : start + len(rows)] = np.asarray(predict(read(rows))).reshape(-1)
        if progress is not None:
            progress(start + len(rows), len(paths))
    return films.assign(probability=out)


def study_table(predictions: pd.DataFrame, threshold: Threshold = PROTOCOL) -> pd.DataFrame:
    """One row per study, in the order first seen: `study`, `part`, `views`, `probability` (the
    mean of its views', the MURA paper's rule), `abnormal` (probability >= threshold.value),
    `label` (when the folders say it), `view_probabilities` (space-separated, in file order),
    `threshold` and `threshold_rule` (which threshold made the decision), from a
    part-router cascade `routed_part` (the part whose model scored it) and, for DICOM films,
    `description` (the study's and series' descriptions)."""
    groups = predictions.groupby("study", sort=False)
    routed = {"routed_part": ("routed_part", "first")} if "routed_part" in predictions else {}
    described = "description" in predictions and predictions["description"].fillna("").any()
    if described:
        routed["description"] = ("description", lambda d: " | ".join(dict.fromkeys(d)))
    table = groups.agg(
        part=("part", "first"),
        **routed,
        views=("path", "size"),
        probability=("probability", "mean"),
        label=("label", "first"),
        view_probabilities=("probability", lambda p: " ".join(f"{v:.3f}" for v in p)),
    ).reset_index()
    table.insert(4 + len(routed), "abnormal", table["probability"] >= threshold.value)
    return table.assign(threshold=threshold.value, threshold_rule=threshold.rule)


def study_slug(study: str, taken: set[str]) -> str:
    """A file name for a study: its last folders joined (`valid_XR_ELBOW_patient1_study1_...`),
    made unique among `taken` (which it joins)."""
    parts = [p for p in Path(study).parts if p not in ("/", "\\")][-4:]
    base = "_".join(parts).replace(" ", "_").lstrip("._") or "study"
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    taken.add(slug)
    return slug


def write_cams(
    cams: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
    predictions: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 32,
    outlines: Mapping[str, Outline] | None = None,
    threshold: Threshold = PROTOCOL,
) -> list[Path]:
    """Grad-CAM overlays for every view, at the film's own size and aspect ratio
    (`OUT/<study>/<view>.png`), and one contact sheet per study (`OUT/<study>.png`), in the
    order the studies first appear. The maps are computed `batch_size` films at a time.

    Args:
        cams: the export's Grad-CAM (`mura_tf.serving.load.load_cam_serving`).
        predictions: `predict_films` rows (path, study, probability).
        outlines: radiologists' outlines by path (`mura_tf.data.catalogue.outlines_of_films`),
            drawn on the films that have one.
        threshold: the decision written in each contact sheet's title.
    Returns:
        The contact sheets written, one per study.
    """
    import tensorflow as tf

    out = Path(out_dir)
    encoded = [film_bytes(p) for p in predictions["path"]]
    maps, contents = [], []
    for start in range(0, len(encoded), batch_size):
        _, m, c = cams(np.array(encoded[start : start + batch_size], dtype=object))
        maps.append(m)
        contents.append(c)
    maps, contents = np.concatenate(maps), np.concatenate(contents)
    sheets, taken, done = [], set(), 0
    for study, rows_of in predictions.groupby("study", sort=False).indices.items():
        views = predictions.iloc[rows_of]
        slug = study_slug(str(study), taken)
        pictures, titles = [], []
        data = [encoded[i] for i in rows_of]
        rows = zip(views.itertuples(), data, maps[rows_of], contents[rows_of], strict=True)
        for row, one, cam, content in rows:
            film = decode_film(tf.constant(one)).numpy()
            picture = overlay(film, to_film(cam, content, film.shape[:2]))
            if outlines and row.path in outlines:
                picture = draw_outline(picture, outlines[row.path])
            name = Path(row.path).stem
            write_with(out / slug / f"{name}.png", lambda tmp, p=picture: _save_png(p, tmp))
            pictures.append(picture)
            titles.append(f"{name}: {row.probability:.2f}")
            done += 1
            if progress is not None:
                progress(done, len(predictions))
        mean = views["probability"].mean()
        info = dataset_of_parts(views["part"].unique() if "part" in views else ())
        verdict = info.positive if mean >= threshold.value else info.negative
        title = f"{study}\nstudy probability {mean:.2f}: {verdict}"
        sheets.append(study_sheet(pictures, titles, out / f"{slug}.png", title))
    return sheets


def _save_png(picture: np.ndarray, path: Path) -> None:
    Image.fromarray(picture).save(path, format="PNG")
