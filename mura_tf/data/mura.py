"""The MURA catalogue: one pandas row per radiograph, read from the official layout.

MURA-v1.1 ships four header-less CSVs that are the source of truth::

    train_image_paths.csv      MURA-v1.1/train/XR_SHOULDER/patient00001/study1_positive/image1.png
    train_labeled_studies.csv  MURA-v1.1/train/XR_SHOULDER/patient00001/study1_positive/,1
    valid_image_paths.csv      (same, for the valid split)
    valid_labeled_studies.csv

When a split's CSVs are absent the folders are walked instead
(``{split}/XR_{PART}/patientNNNNN/studyK_{positive|negative}/imageJ.png``).
"""

from __future__ import annotations

import csv
import os
import re
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image

from mura_tf.data.datasets import MURA
from mura_tf.data.limits import bomb_problem, size_problem
from mura_tf.errors import MuraDataError, MuraDataWarning

SPLITS: tuple[str, ...] = ("train", "valid")
COLUMNS: tuple[str, ...] = ("split", "part", "patient", "study", "view", "label", "path")
DOWNLOAD_HINT = (
    "MURA needs registration: get MURA-v1.1 from "
    "https://stanfordmlgroup.github.io/competitions/mura/, unzip it and pass the folder that "
    "contains MURA-v1.1/ with --data-dir (or set MURA_DATA_DIR), or use --synthetic"
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_STUDY_RE = re.compile(r"^study(\d+)_(positive|negative)$")
# MURA's films are PNGs; a department's own films in MURA's layout may be DICOM (`.dcm`), for
# `evaluate` and `predict` (training reads PNG and JPEG only: `mura_tf.data.pipeline`).
_IMAGE_RE = re.compile(r"^image(\d+)\.(png|dcm)$", re.IGNORECASE)
_PATIENT_RE = re.compile(r"^patient\d+$")

Progress = Callable[[int, int], None]


def find_mura_root(data_dir: str | os.PathLike[str]) -> Path:
    """Return the `MURA-v1.1` folder given it or the folder that contains it.

    Any folder holding `train/` or `valid/` (or their CSVs) is accepted, so a renamed copy works.
    """
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise MuraDataError(f"MURA data folder not found: {path}. {DOWNLOAD_HINT}")
    if not path.is_dir():
        raise MuraDataError(f"--data-dir must be a folder, got the file {path}. {DOWNLOAD_HINT}")
    if (path / "MURA-v1.1").is_dir():
        return path / "MURA-v1.1"
    if any((path / s).is_dir() or (path / f"{s}_image_paths.csv").is_file() for s in SPLITS):
        return path
    if path.name in SPLITS:  # MURA-v1.1/train
        raise MuraDataError(
            f"{path} is MURA's {path.name} split, not the data folder: pass --data-dir "
            f"{path.parent} (it holds train/ and valid/)"
        )
    if path.name.upper().startswith("XR_") and path.parent.name in SPLITS:  # train/XR_FOREARM
        raise MuraDataError(
            f"{path} is one body part of MURA's {path.parent.name} split: pass --data-dir "
            f"{path.parent.parent} --part {path.name[3:].lower()}"
        )
    raise MuraDataError(
        f"{path} holds neither MURA-v1.1/ nor train/ or valid/ folders (nor two class folders "
        f"of films, docs/own-films.md). {DOWNLOAD_HINT}"
    )


def is_image_name(name: str) -> bool:
    """True for `imageJ.png`-like files (or `.dcm`); never for macOS `._*` forks or other
    hidden files."""
    return not name.startswith(".") and name.lower().endswith((".png", ".dcm"))


def _parse_image_path(rel: str, root: Path, where: str) -> dict[str, object]:
    """Split `[MURA-v1.1/]split/XR_PART/patientN/studyK_suffix/imageJ.png` into fields."""
    parts = [p for p in rel.replace("\\", "/").split("/") if p]
    if len(parts) >= 5 and parts[0] not in SPLITS:
        parts = parts[1:]  # the leading MURA-v1.1/ (or whatever the folder is called)
    if len(parts) != 5 or parts[0] not in SPLITS or parts[1] not in MURA.parts:
        raise MuraDataError(
            f"{where}: {rel!r} is not a MURA image path "
            "(expected split/XR_PART/patientNNNNN/studyK_positive|negative/imageJ.png)"
        )
    split, part, patient, study, image = parts
    study_match = _STUDY_RE.match(study)
    image_match = _IMAGE_RE.match(image)
    if not (_PATIENT_RE.match(patient) and study_match and image_match):
        raise MuraDataError(
            f"{where}: {rel!r} is not a MURA image path "
            "(expected split/XR_PART/patientNNNNN/studyK_positive|negative/imageJ.png)"
        )
    return {
        "split": split,
        "part": part,
        "patient": patient,
        "study": f"{split}/{part}/{patient}/{study}",
        "view": int(image_match.group(1)),
        "suffix_label": int(study_match.group(2) == "positive"),
        "path": str(root.joinpath(split, part, patient, study, image)),
    }


def _read_csv_rows(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="") as f:
            return [row for row in csv.reader(f) if row and row[0].strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise MuraDataError(f"cannot read {path}: {e}") from None


def _study_key(rel: str) -> str:
    """`MURA-v1.1/train/XR_ELBOW/patient1/study1_positive/` -> `train/.../study1_positive`."""
    parts = [p for p in rel.replace("\\", "/").split("/") if p]
    if len(parts) >= 4 and parts[0] not in SPLITS:
        parts = parts[1:]
    return "/".join(parts)


def _rows_from_csv(root: Path, split: str) -> list[dict[str, object]]:
    images_csv = root / f"{split}_image_paths.csv"
    studies_csv = root / f"{split}_labeled_studies.csv"
    labels: dict[str, int] = {}
    for n, row in enumerate(_read_csv_rows(studies_csv), start=1):
        if len(row) < 2 or row[1].strip() not in ("0", "1"):
            raise MuraDataError(f"{studies_csv}:{n}: expected 'study_path/,0|1', got {row!r}")
        labels[_study_key(row[0].strip())] = int(row[1])
    records = []
    for n, row in enumerate(_read_csv_rows(images_csv), start=1):
        rel = row[0].strip()
        if not is_image_name(rel.rsplit("/", 1)[-1]):
            continue
        rec = _parse_image_path(rel, root, f"{images_csv}:{n}")
        if rec["split"] != split:
            raise MuraDataError(f"{images_csv}:{n}: {rel!r} is not in the {split} split")
        if rec["study"] not in labels:
            raise MuraDataError(
                f"{images_csv}:{n}: study {rec['study']} has no label in {studies_csv.name}"
            )
        rec["label"] = labels[rec["study"]]
        records.append(rec)
    return records


def _rows_from_folders(root: Path, split: str, parts: Sequence[str]) -> list[dict[str, object]]:
    records = []
    for part in parts:
        part_dir = root / split / part
        if not part_dir.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(part_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not is_image_name(name):
                    continue
                full = Path(dirpath) / name
                rel = full.relative_to(root).as_posix()
                rec = _parse_image_path(rel, root, str(full))
                rec["label"] = rec["suffix_label"]
                records.append(rec)
    return records


def film_problem(
    path: str | os.PathLike[str], signature: bytes, kind: str, check: Callable[[Image.Image], None]
) -> str | None:
    """Why `path` is not a readable `kind` film (`'missing'`, `'empty file'`, `'not a PNG'`,
    `'corrupt (...)'`, too many pixels for `limits.MAX_FILM_PIXELS`), or None: its first bytes
    must be `signature`, its header's size within the limit, then `check` (given the opened
    Pillow image) must not raise."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(signature))
        if not head:
            return "empty file"
        if head != signature:
            return f"not a {kind}"
        with Image.open(path) as im:
            too_large = size_problem(*im.size)
            if too_large:
                return too_large
            check(im)
    except FileNotFoundError:
        return "missing"
    except Image.DecompressionBombError as e:
        return bomb_problem(e)
    except (OSError, SyntaxError, ValueError, zlib.error) as e:
        return f"corrupt ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    return None


def check_decodes(image: Image.Image) -> None:
    """Raise (OSError, SyntaxError, ValueError, zlib.error) if an opened PNG or JPEG film is
    damaged, without the cost of decoding its pixels in full: a JPEG's entropy-coded stream is
    decoded at 1/8 scale (libjpeg's DCT scaling through Pillow's `draft`), which finds a file
    cut off before its end; a PNG's chunks are read to IEND with their CRCs (`verify`)."""
    if image.format == "JPEG":
        image.draft(image.mode, (max(1, image.size[0] // 8), max(1, image.size[1] // 8)))
        image.load()
    else:
        image.verify()


def png_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` is not a readable PNG (`'missing'`, `'empty file'`, ...), or None if it is.

    Checks the signature and every chunk's CRC with Pillow's `verify` (which reads to IEND), so
    truncated and bit-flipped files are caught without the cost of decoding pixels. A `.dcm`
    film is read as displayed instead (`mura_tf.data.dicom`).
    """
    if str(path).lower().endswith(".dcm"):
        from mura_tf.data.dicom import NotAFilm, film_pixels  # pydicom only where DICOM is

        try:
            film_pixels(Path(path))
        except FileNotFoundError:
            return "missing"
        except NotAFilm as e:
            return f"DICOM: {e}"
        return None
    return film_problem(path, PNG_SIGNATURE, "PNG", lambda im: im.verify())


def find_unreadable(
    paths: Sequence[str],
    progress: Progress | None = None,
    workers: int = 8,
    problem: Callable[[str], str | None] = png_problem,
) -> dict[str, str]:
    """Map each unreadable film in `paths` to the reason `problem` gives (`png_problem`)."""
    bad: dict[str, str] = {}
    with ThreadPoolExecutor(workers) as pool:
        for i, (path, why) in enumerate(zip(paths, pool.map(problem, paths), strict=True), 1):
            if why:
                bad[path] = why
            if progress and (i % 256 == 0 or i == len(paths)):
                progress(i, len(paths))
    return bad


def _describe(bad: dict[str, str], root: Path, limit: int = 20) -> str:
    names = [f"{Path(p).relative_to(root).as_posix()} ({why})" for p, why in bad.items()]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_mura(
    data_dir: str | os.PathLike[str],
    parts: str | Iterable[str] | None = None,
    splits: Sequence[str] = SPLITS,
    *,
    check_images: bool = True,
    strict: bool = False,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Read MURA into one DataFrame, one row per image.

    Args:
        data_dir: the `MURA-v1.1` folder or the folder that contains it.
        parts: `None`/`'all'`, a name (`'elbow'`, `'XR_ELBOW'`), `'elbow,hand'` or a list.
        splits: which official splits to read (`train`, `valid`).
        check_images: verify every PNG (signature and CRCs) and skip unreadable ones with a
            `MuraDataWarning` that counts and names them.
        strict: raise `MuraDataError` on the first unreadable PNG instead of skipping.
        progress: called as `progress(done, total)` while images are checked.

    Returns:
        Columns `split` (`train`/`valid`), `part` (`XR_ELBOW` ...), `patient` (`patient00011`),
        `study` (`train/XR_ELBOW/patient00011/study1_negative`, unique), `view` (int, from
        `imageJ.png`), `label` (0 normal, 1 abnormal; the study's label), `path` (absolute).
        Sorted by split, part, patient, study, view.
    """
    root = find_mura_root(data_dir)
    wanted = MURA.parse_parts(parts)
    for split in splits:
        if split not in SPLITS:
            raise MuraDataError(f"unknown split {split!r}: use train or valid")
    records: list[dict[str, object]] = []
    for split in splits:
        have = [(root / f"{split}_{k}.csv").is_file() for k in ("image_paths", "labeled_studies")]
        if all(have):
            rows = [r for r in _rows_from_csv(root, split) if r["part"] in wanted]
        elif any(have):
            missing = "labeled_studies" if have[0] else "image_paths"
            raise MuraDataError(
                f"{root / f'{split}_{missing}.csv'} is missing while its partner CSV exists: "
                "restore it or remove both CSVs to read the folders instead"
            )
        else:
            rows = _rows_from_folders(root, split, wanted)
        records.extend(rows)

    frame = pd.DataFrame.from_records(records, columns=[*COLUMNS, "suffix_label"])
    disagree = frame[frame["label"] != frame["suffix_label"]]
    if len(disagree):
        study = disagree["study"].iloc[0]
        raise MuraDataError(
            f"label of study {study} in {study.split('/')[0]}_labeled_studies.csv "
            f"({disagree['label'].iloc[0]}) disagrees with its folder name"
        )
    frame = frame.drop(columns="suffix_label")

    missing = frame[~frame["path"].map(os.path.isfile)]
    if len(missing):
        raise MuraDataError(
            f"{len(missing)} image(s) listed in the CSVs are missing on disk, first "
            f"{missing['path'].iloc[0]}: re-extract MURA-v1.1 or remove the CSVs to use the folders"
        )

    if check_images and len(frame):
        bad = find_unreadable(frame["path"].tolist(), progress)
        if bad and strict:
            raise MuraDataError(f"unreadable PNG: {_describe(bad, root, limit=1)} (--strict)")
        if bad:
            warnings.warn(
                f"skipped {len(bad)} unreadable PNG file(s): {_describe(bad, root)}",
                MuraDataWarning,
                stacklevel=2,
            )
            frame = frame[~frame["path"].isin(bad)]

    present = set(frame["part"])
    absent = [p for p in wanted if p not in present]
    if parts is not None and not (isinstance(parts, str) and parts.lower() == "all") and absent:
        raise MuraDataError(
            f"no images of {', '.join(absent)} in {root} ({'/'.join(splits)}): "
            "check --part and --data-dir"
        )
    if frame.empty:
        raise MuraDataError(f"no MURA images found in {root}. {DOWNLOAD_HINT}")

    frame = frame.astype({"view": "int32", "label": "int32"})
    frame = frame.sort_values(["split", "part", "patient", "study", "view"], kind="stable")
    return frame.reset_index(drop=True)
