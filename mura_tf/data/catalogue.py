"""One reader for every dataset: a data folder in, the catalogue (one row per film) out.

The layout is recognised (`detect_dataset`) or named (`dataset=`); the frame has the same
columns whatever the dataset (`mura.COLUMNS`), and its `part` values name their dataset
(`datasets.dataset_of_parts`), so nothing downstream needs to be told which one it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from mura_tf.data.datasets import FRACATLAS, MURA, DatasetInfo, dataset_named
from mura_tf.data.fracatlas import (
    Outline,
    find_fracatlas_root,
    is_fracatlas,
    load_fracatlas,
    outline_root,
)
from mura_tf.data.fracatlas import load_outlines as load_fracatlas_outlines
from mura_tf.data.mura import find_mura_root, load_mura


def detect_dataset(data_dir: str | os.PathLike[str] | None) -> DatasetInfo:
    """FracAtlas for a folder in its layout (`dataset.csv` beside `images/`), else MURA (whose
    reader then says what is missing)."""
    return FRACATLAS if data_dir is not None and is_fracatlas(data_dir) else MURA


def resolve_dataset(name: str | None, data_dir: str | os.PathLike[str] | None) -> DatasetInfo:
    """The dataset `name` (`mura`, `fracatlas`), or for None/`auto` the one `data_dir` holds."""
    if name is None or name == "auto":
        return detect_dataset(data_dir)
    return dataset_named(name)


def find_root(data_dir: str | os.PathLike[str], dataset: DatasetInfo | None = None):
    """The dataset's own folder inside `data_dir` (`MURA-v1.1/`, FracAtlas's root)."""
    dataset = dataset or detect_dataset(data_dir)
    return find_fracatlas_root(data_dir) if dataset is FRACATLAS else find_mura_root(data_dir)


def load_catalogue(
    data_dir: str | os.PathLike[str],
    parts: str | Iterable[str] | None = None,
    splits: Sequence[str] | None = None,
    *,
    dataset: DatasetInfo | None = None,
    check_images: bool = True,
    strict: bool = False,
    progress=None,
) -> pd.DataFrame:
    """The catalogue of `data_dir`: `mura.load_mura` or `fracatlas.load_fracatlas` (see them
    for the columns), `splits` defaulting to all of the dataset's."""
    dataset = dataset or detect_dataset(data_dir)
    load = load_fracatlas if dataset is FRACATLAS else load_mura
    return load(
        data_dir,
        parts,
        splits or dataset.catalogue_splits,
        check_images=check_images,
        strict=strict,
        progress=progress,
    )


def load_outlines(
    data_dir: str | os.PathLike[str], dataset: DatasetInfo | None = None
) -> dict[str, Outline]:
    """The radiologists' outlines of the dataset's films, keyed by path (`fracatlas.Outline`);
    empty for a dataset without them (MURA)."""
    dataset = dataset or detect_dataset(data_dir)
    return load_fracatlas_outlines(data_dir) if dataset is FRACATLAS else {}


def outlines_of_films(paths: Iterable[str]) -> dict[str, Outline]:
    """The outlines of whichever of `paths` lie in a dataset folder that has them (a user's
    `predict` on films of a FracAtlas folder), keyed by the path as given."""
    by_root: dict[str, dict[str, Outline]] = {}
    out = {}
    for path in paths:
        root = outline_root(path)
        if root is None:
            continue
        if str(root) not in by_root:
            by_root[str(root)] = load_fracatlas_outlines(root)
        found = by_root[str(root)].get(str(Path(path).resolve()))
        if found is not None:
            out[path] = found
    return out
