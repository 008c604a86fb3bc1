"""A user's own films made from the synthetic MURA for the tests of `mura_tf.data.manifest`:
the same films as PNG, JPEG and DICOM mixed, in a folder of classes or beside a manifest."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from tests.dicom_writer import write_dicom

KINDS = ("png", "jpeg", "dicom")


def write_film(source: str, path: Path, kind: str) -> Path:
    """`source` (a PNG) as a film of `kind` at `path` (its suffix added)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "png":
        return Path(shutil.copyfile(source, path.with_suffix(".png")))
    with Image.open(source) as image:
        grey = image.convert("L")
    if kind == "jpeg":
        grey.save(path.with_suffix(".jpg"), quality=95)
        return path.with_suffix(".jpg")
    return write_dicom(np.asarray(grey), path.with_suffix(".dcm"), "monochrome2")


def own_films(catalogue: pd.DataFrame, folder: Path, names=("normal", "abnormal")) -> pd.DataFrame:
    """Write each film of `catalogue` under `folder/<class>/` as PNG, JPEG or DICOM in turn
    (one film in three each); returns the catalogue with `file` (the written film) and `kind`."""
    files, kinds = [], []
    for i, row in enumerate(catalogue.itertuples()):
        kind = KINDS[i % len(KINDS)]
        name = row.study.replace("/", "_") + f"_view{row.view}"
        files.append(str(write_film(row.path, folder / names[row.label] / name, kind)))
        kinds.append(kind)
    return catalogue.assign(file=files, kind=kinds)


def manifest_of(written: pd.DataFrame, path: Path, **columns) -> Path:
    """A manifest of the written films (paths relative to it) with extra `columns`."""
    table = pd.DataFrame(
        {
            "path": [Path(os.path.relpath(f, path.parent)).as_posix() for f in written["file"]],
            "label": np.where(written["label"] == 1, "abnormal", "normal"),
            **columns,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path
