"""One reader for every dataset: a data folder in, the catalogue (one row per film) out.

`--data-dir` is MURA's layout, FracAtlas's, a folder of classes or a CSV manifest (a user's
own films, `mura_tf.data.manifest`). The layout is recognised (`detect_dataset`) or named
(`dataset=`); the frame has the same columns whatever the dataset (`mura.COLUMNS`), and its
`part` values name their dataset (`datasets.dataset_of_parts`), so nothing downstream needs to
be told which one it is.
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
from mura_tf.data.manifest import (
    is_class_folder,
    is_manifest,
    list_films,
    listing_dataset,
    load_own,
)
from mura_tf.data.mura import SPLITS as MURA_SPLITS
from mura_tf.data.mura import find_mura_root, load_mura


def is_own_films(data_dir: str | os.PathLike[str] | None) -> bool:
    """A manifest, or a folder of classes that is not MURA's or FracAtlas's layout."""
    if data_dir is None:
        return False
    if is_manifest(data_dir):
        return True
    path = Path(data_dir)
    mura = any((path / n).is_dir() for n in ("MURA-v1.1", *MURA_SPLITS)) or any(
        (path / f"{s}_image_paths.csv").is_file() for s in MURA_SPLITS
    )
    return not mura and not is_fracatlas(path) and is_class_folder(path)


def detect_dataset(
    data_dir: str | os.PathLike[str] | None, positive: str | None = None
) -> DatasetInfo:
    """FracAtlas for a folder in its layout (`dataset.csv` beside `images/`); a user's own
    films for a manifest or a folder of classes (`manifest.listing_dataset`, which reads the
    listing and `positive`); else MURA (whose reader then says what is missing)."""
    if is_own_films(data_dir):
        return listing_dataset(list_films(data_dir), positive)
    return FRACATLAS if data_dir is not None and is_fracatlas(data_dir) else MURA


def resolve_dataset(
    name: str | None, data_dir: str | os.PathLike[str] | None, positive: str | None = None
) -> DatasetInfo:
    """The dataset `name` (`mura`, `fracatlas`), or for None/`auto` the one `data_dir` holds."""
    if name is None or name == "auto":
        return detect_dataset(data_dir, positive)
    return dataset_named(name)


def find_root(data_dir: str | os.PathLike[str], dataset: DatasetInfo | None = None):
    """The dataset's own folder inside `data_dir` (`MURA-v1.1/`, FracAtlas's root; a
    manifest's or class folder's own path)."""
    if is_own_films(data_dir):
        return Path(data_dir)
    dataset = dataset or detect_dataset(data_dir)
    return find_fracatlas_root(data_dir) if dataset is FRACATLAS else find_mura_root(data_dir)


def load_catalogue(
    data_dir: str | os.PathLike[str],
    parts: str | Iterable[str] | None = None,
    splits: Sequence[str] | None = None,
    *,
    dataset: DatasetInfo | None = None,
    positive: str | None = None,
    check_images: bool = True,
    strict: bool = False,
    progress=None,
) -> pd.DataFrame:
    """The catalogue of `data_dir`: `mura.load_mura`, `fracatlas.load_fracatlas` or, for a
    manifest or folder of classes, `manifest.load_own` (see them for the columns), `splits`
    defaulting to all of the dataset's; `positive` names a user's positive label."""
    if is_own_films(data_dir):
        return load_own(
            data_dir,
            parts,
            splits,
            positive=positive,
            check_images=check_images,
            strict=strict,
            progress=progress,
        )
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
    empty for a dataset without them (MURA). A manifest's films that lie in a FracAtlas
    folder keep their outlines."""
    if is_own_films(data_dir):
        return outlines_of_films(list_films(data_dir).rows["path"])
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
