"""The FracAtlas catalogue and fracture outlines, read from the release's published layout.

FracAtlas (Abedeen et al., Scientific Data 2023; CC BY 4.0; `datasets.FRACATLAS`) unpacks as::

    images/Fractured/IMG0000019.jpg        717 films
    images/Non_fractured/IMG0000000.jpg    3,366 films
    dataset.csv                            image_id, hand, leg, hip, shoulder, mixed, hardware,
                                           multiscan, fractured, fracture_count, frontal, ...
    Annotations/COCO JSON/COCO_fracture_masks.json    fracture polygons and boxes
    Utilities/Fracture Split/{train,valid,test}.csv   the published split of the fractured films

The catalogue has MURA's columns (`mura.COLUMNS`). The release has no patient or study ids, so
every film is its own study and its own "patient": two films of one person can land on both
sides of the split, which MURA's patient split rules out (say so where the split matters).

The split (`split` column) is fixed, so every run, `evaluate` and `tfds-build` see the same
test films: fractured films keep the published split; the others are assigned per part (so
the split is stratified by part and label), in image-id order shuffled with `SPLIT_SEED`, in
the published split's proportions (574 : 82 : 61 of the 717 fractured films).

The release contradicts itself in places; each case is one `MuraDataWarning` line naming the
film and the choice made (README, "FracAtlas"):
- the folder wins over `dataset.csv`'s `fractured` flag (the folder agrees with the outlines);
- a film flagged `mixed`, or with several part flags, is part `mixed`;
- an outline drawn at another size than the film's is scaled to the film. Outlines are drawn
  on the film as displayed: the EXIF-rotated films' annotations give the displayed size,
  which is the stored size turned, and need no change.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mura_tf.data.datasets import FRACATLAS
from mura_tf.data.mura import check_decodes, film_problem, find_unreadable
from mura_tf.errors import MuraDataError, MuraDataWarning

SPLIT_SEED = 0
FOLDERS = {"Fractured": 1, "Non_fractured": 0}
FLAG_COLUMNS = ("image_id", "hand", "leg", "hip", "shoulder", "mixed", "fractured")
SPLIT_DIR = Path("Utilities") / "Fracture Split"
COCO_FILE = Path("Annotations") / "COCO JSON" / "COCO_fracture_masks.json"
JPEG_SIGNATURE = b"\xff\xd8"
DOWNLOAD_HINT = (
    "download FracAtlas from figshare (doi:10.6084/m9.figshare.22363012), unzip it and pass "
    "the folder that holds images/ and dataset.csv with --data-dir"
)
_ORIENTATION_TAG = 0x0112


def is_fracatlas(path: str | os.PathLike[str]) -> bool:
    """True for a folder in FracAtlas's layout (`dataset.csv` beside `images/`), or the folder
    that holds one as `FracAtlas/`."""
    path = Path(path)
    return any(
        (p / "dataset.csv").is_file() and (p / "images").is_dir()
        for p in (path, path / "FracAtlas")
    )


def find_fracatlas_root(data_dir: str | os.PathLike[str]) -> Path:
    """The folder holding `dataset.csv` and `images/`, given it or its parent."""
    path = Path(data_dir).expanduser()
    for candidate in (path, path / "FracAtlas"):
        if (candidate / "dataset.csv").is_file() and (candidate / "images").is_dir():
            return candidate
    raise MuraDataError(
        f"{path} is not a FracAtlas folder (no dataset.csv beside images/): " + DOWNLOAD_HINT
    )


def jpeg_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` is not a readable JPEG (`'missing'`, `'empty file'`, `'corrupt (image file
    is truncated ...)'` ...), or None. Decodes the whole entropy-coded stream at 1/8 scale
    (libjpeg's DCT scaling through Pillow's `draft`), which finds a cut-off file for a fraction
    of a full decode; bytes after the image (20 FracAtlas films have them) are no fault."""
    return film_problem(path, JPEG_SIGNATURE, "JPEG", check_decodes)


def _warn(message: str) -> None:
    warnings.warn(message, MuraDataWarning, stacklevel=3)


def _read_table(root: Path) -> pd.DataFrame:
    path = root / "dataset.csv"
    try:
        table = pd.read_csv(path, dtype={"image_id": str})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise MuraDataError(f"cannot read {path}: {e}") from None
    missing = [c for c in FLAG_COLUMNS if c not in table.columns]
    if missing:
        raise MuraDataError(
            f"{path} lacks the column(s) {', '.join(missing)}: is it FracAtlas's dataset.csv?"
        )
    return table


def _part_of(row: pd.Series) -> str:
    flagged = [s for s in FRACATLAS.short_names[:4] if int(row[s]) == 1]
    if int(row["mixed"]) == 1 or len(flagged) != 1:
        if int(row["mixed"]) != 1:
            regions = ", ".join(flagged) or "none"
            _warn(
                f"{row['image_id']}: dataset.csv flags {regions} but not mixed; taken as part mixed"
            )
        return FRACATLAS.canonical_part("mixed")
    return FRACATLAS.canonical_part(flagged[0])


def _published_split(root: Path) -> dict[str, str]:
    split: dict[str, str] = {}
    for name in FRACATLAS.catalogue_splits:
        path = root / SPLIT_DIR / f"{name}.csv"
        if not path.is_file():
            raise MuraDataError(f"{path} is missing: restore FracAtlas's {SPLIT_DIR} folder")
        for image_id in pd.read_csv(path, dtype=str)["image_id"].dropna():
            split.setdefault(image_id.strip(), name)
    return split


def assign_splits(frame: pd.DataFrame, published: dict[str, str], seed: int = SPLIT_SEED) -> list:
    """The `split` of each film of `frame` (columns `image_id`, `part`, `label`): fractured
    films keep `published`; the rest, per (part, label), are shuffled with `seed` and cut in
    the published proportions of train : valid : test."""
    names = FRACATLAS.catalogue_splits
    counts = np.array([sum(1 for v in published.values() if v == n) for n in names], float)
    shares = counts / counts.sum() if counts.sum() else np.array([0.8, 0.1, 0.1])
    out = pd.Series("", index=frame.index, dtype=object)
    keep = (frame["label"] == 1) & frame["image_id"].isin(published)
    out[keep] = frame.loc[keep, "image_id"].map(published)
    rng = np.random.default_rng(seed)
    rest = frame[~keep].sort_values("image_id")
    for _, group in rest.groupby(["part", "label"], sort=True):
        order = group.index.to_numpy()[rng.permutation(len(group))]
        cuts = np.round(np.cumsum(shares)[:-1] * len(order)).astype(int)
        for name, chunk in zip(names, np.split(order, cuts), strict=True):
            out[chunk] = name
    return out.tolist()


def load_fracatlas(
    data_dir: str | os.PathLike[str],
    parts: str | Iterable[str] | None = None,
    splits: Sequence[str] = FRACATLAS.catalogue_splits,
    *,
    check_images: bool = True,
    strict: bool = False,
    progress=None,
) -> pd.DataFrame:
    """Read FracAtlas into one DataFrame, one row per film, in the catalogue's columns.

    Args:
        data_dir: the FracAtlas folder (or the folder holding `FracAtlas/`).
        parts: `None`/`'all'`, a name (`'leg'`), a comma list or a list.
        splits: which of `train`, `valid`, `test` to keep.
        check_images: check every JPEG (`jpeg_problem`) and skip unreadable ones with one
            `MuraDataWarning` that counts and names them.
        strict: raise on the first unreadable film instead.
        progress: called as `progress(done, total)` while films are checked.

    Returns:
        Columns `split` (train/valid/test), `part` (`FA_LEG` ...), `patient` and `study` (the
        image id: one film a study), `view` (1), `label` (1 fractured), `path` (absolute),
        sorted by split, part, study.
    """
    root = find_fracatlas_root(data_dir).resolve()
    wanted = FRACATLAS.parse_parts(parts)
    for split in splits:
        if split not in FRACATLAS.catalogue_splits:
            raise MuraDataError(
                f"unknown FracAtlas split {split!r}: use " + ", ".join(FRACATLAS.catalogue_splits)
            )
    table = _read_table(root)
    on_disk: dict[str, tuple[Path, int]] = {}
    for folder, label in FOLDERS.items():
        directory = root / "images" / folder
        if not directory.is_dir():
            raise MuraDataError(f"{directory} is missing: " + DOWNLOAD_HINT)
        for path in sorted(directory.iterdir()):
            if path.name.startswith(".") or path.suffix.lower() not in (".jpg", ".jpeg"):
                continue
            if path.name in on_disk:  # Fractured/ is read first
                _warn(f"{path.name}: in both Fractured/ and Non_fractured/; taken as fractured")
                continue
            on_disk[path.name] = (path, label)

    listed = set(table["image_id"])
    unlisted = sorted(set(on_disk) - listed)
    if unlisted:
        _warn(
            f"{len(unlisted)} film(s) in images/ but not in dataset.csv, skipped (their part "
            f"is unknown): {', '.join(unlisted[:10])}"
        )
    records = []
    for _, row in table.iterrows():
        image_id = row["image_id"]
        if image_id not in on_disk:
            _warn(f"{image_id}: listed in dataset.csv but not in images/, skipped")
            continue
        path, label = on_disk[image_id]
        if int(row["fractured"]) != label:
            folder = "Fractured" if label else "Non_fractured"
            _warn(
                f"{image_id}: in images/{folder}/ but dataset.csv says fractured="
                f"{int(row['fractured'])}; taken as {'fractured' if label else 'not fractured'}"
                " (its folder)"
            )
        records.append(
            {"image_id": image_id, "part": _part_of(row), "label": label, "path": str(path)}
        )
    frame = pd.DataFrame.from_records(records, columns=["image_id", "part", "label", "path"])
    published = _published_split(root)
    stray = sorted(i for i in published if i in set(frame["image_id"]) and on_disk[i][1] == 0)
    if stray:
        _warn(
            f"{len(stray)} film(s) in the published fracture split are not fractured, split "
            f"as the other unfractured films: {', '.join(stray[:10])}"
        )
    frame["split"] = assign_splits(frame, published)
    frame["study"] = frame["image_id"].str.rsplit(".", n=1).str[0].astype(str)
    frame["patient"] = frame["study"]
    frame["view"] = 1
    frame = frame[frame["part"].isin(wanted) & frame["split"].isin(splits)]

    if check_images and len(frame):
        bad = find_unreadable(frame["path"].tolist(), progress, problem=jpeg_problem)
        if bad and strict:
            path, why = next(iter(bad.items()))
            raise MuraDataError(f"unreadable JPEG: {path} ({why}) (--strict)")
        if bad:
            names = [f"{Path(p).name} ({why})" for p, why in bad.items()]
            _warn(f"skipped {len(bad)} unreadable JPEG file(s): {', '.join(names[:20])}")
            frame = frame[~frame["path"].isin(bad)]
    if frame.empty:
        raise MuraDataError(
            f"no FracAtlas films of {FRACATLAS.parts_spec(wanted)} in {root} "
            f"({'/'.join(splits)}): check --part and --data-dir"
        )
    frame = frame.astype({"view": "int32", "label": "int32"})
    order = {s: i for i, s in enumerate(FRACATLAS.catalogue_splits)}
    frame = frame.sort_values(
        ["split", "part", "study"], key=lambda c: c.map(order) if c.name == "split" else c
    )
    return frame[["split", "part", "patient", "study", "view", "label", "path"]].reset_index(
        drop=True
    )


# --- Fracture outlines --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outline:
    """A film's fracture outlines in the pixels of the film as displayed (EXIF applied):
    `polygons` float `[K, 2]` (x, y) each, `boxes` (x0, y0, x1, y1) each, `size` (W, H)."""

    polygons: tuple[np.ndarray, ...]
    boxes: tuple[tuple[float, float, float, float], ...]
    size: tuple[int, int]


def displayed_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(W, H) of a film as a viewer shows it: the stored size, turned for EXIF 5-8."""
    with Image.open(path) as im:
        w, h = im.size
        return (h, w) if (im.getexif().get(_ORIENTATION_TAG) or 1) >= 5 else (w, h)


def outline_root(path: str | os.PathLike[str]) -> Path | None:
    """The FracAtlas folder a film lies in (`ROOT/images/<class>/film.jpg`), or None."""
    root = Path(path).resolve().parent.parent.parent
    return root if (root / COCO_FILE).is_file() and (root / "dataset.csv").is_file() else None


def load_outlines(data_dir: str | os.PathLike[str]) -> dict[str, Outline]:
    """Every annotated film's outlines from the COCO file, keyed by the film's absolute path
    (as the catalogue's `path`). An annotation drawn at another size than the film's
    displayed size is scaled to it, with one `MuraDataWarning` line naming the film."""
    root = find_fracatlas_root(data_dir).resolve()
    path = root / COCO_FILE
    try:
        coco = json.loads(path.read_text())
        images = {i["id"]: i for i in coco["images"]}
        annotations = coco["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MuraDataError(f"cannot read the fracture outlines {path}: {e}") from None
    files = {}
    for folder in FOLDERS:
        directory = root / "images" / folder
        if directory.is_dir():
            files.update({p.name: p for p in directory.iterdir()})
    by_image: dict[int, list[dict]] = {}
    for a in annotations:
        by_image.setdefault(a["image_id"], []).append(a)
    out: dict[str, Outline] = {}
    for image_id, notes in sorted(by_image.items()):
        image = images.get(image_id)
        if image is None or image["file_name"] not in files:
            name = image["file_name"] if image else f"image id {image_id}"
            _warn(f"{name}: has fracture outlines but no film in images/, outlines skipped")
            continue
        film = files[image["file_name"]]
        width, height = displayed_size(film)
        sx, sy = width / image["width"], height / image["height"]
        if (image["width"], image["height"]) != (width, height):
            _warn(
                f"{film.name}: outlines drawn at {image['width']}x{image['height']}, the film "
                f"shows {width}x{height}; outlines scaled to the film"
            )
        polygons, boxes = [], []
        for a in notes:
            for flat in a.get("segmentation") or []:
                points = np.asarray(flat, float).reshape(-1, 2) * (sx, sy)
                if len(points) >= 3:
                    polygons.append(points)
            x, y, w, h = a["bbox"]
            boxes.append((x * sx, y * sy, (x + w) * sx, (y + h) * sy))
        out[str(film)] = Outline(tuple(polygons), tuple(boxes), (width, height))
    return out
