"""A user's own films, from a CSV manifest or a folder of classes, read into the catalogue.

Two ways in, through the same `--data-dir` as MURA and FracAtlas (`mura_tf.data.catalogue`):

- a **manifest**, a CSV file with the columns `path,label` and optionally `patient`, `study`,
  `part`, `split` (`train`, `valid`, `test`) and `view`; paths are relative to the CSV's
  folder (or absolute). Labels are `0`/`1` or two names (`fractured`, `normal` ...);
- a **folder of classes**, as `keras.utils.image_dataset_from_directory` reads one: one
  subfolder per class, films anywhere below it; each film is its own study and patient.

Films are PNG, JPEG or DICOM (rendered as displayed, `mura_tf.data.film_cache`). The two
labels' positive one is `positive=` (`--positive`), else `1`, else the class named
`abnormal`, `fractured` or `positive`. Studies group views (all of a study's films share its
label, part, patient and split). Without a `split` column, the test split is drawn once by
patient (`datasets.OWN_TEST_FRACTION`, seed `OWN_SPLIT_SEED`) and the run's seed draws dev
from the rest, as from MURA's train split; a given split is honoured.

A manifest whose parts are all one dataset's (`XR_ELBOW` ..., as `write_manifest` writes
MURA) is that dataset, with its names and splits: a manifest of MURA trains as MURA does.

Every problem is named and counted, never silently dropped: one `MuraDataWarning` line per
kind of problem (a missing file, a label that is not one of the two, a duplicate path, a film
that does not decode ...), naming the rows; a catalogue that would lose more than
`MAX_DROPPED_SHARE` of its films, a study or patient that contradicts itself, a missing
column or an empty class is a `MuraDataError` instead.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mura_tf.data.datasets import (
    DATASETS,
    OWN_SPLIT_SEED,
    OWN_TEST_FRACTION,
    DatasetInfo,
    own_dataset,
    register_own,
)
from mura_tf.data.dicom import DICOM_SUFFIXES, NotAFilm, film_pixels, has_preamble
from mura_tf.data.mura import PNG_SIGNATURE, check_decodes, film_problem, find_unreadable
from mura_tf.errors import ConfigError, MuraDataError, MuraDataWarning
from mura_tf.files import write_text

REQUIRED = ("path", "label")
OPTIONAL = ("patient", "study", "part", "split", "view")
SPLIT_NAMES = ("train", "valid", "test")
POSITIVE_NAMES = ("abnormal", "fractured", "positive")
FILM_SUFFIXES = (".png", ".jpg", ".jpeg", *DICOM_SUFFIXES)
# A run does not start on a catalogue whose problems remove more than this share of its films.
MAX_DROPPED_SHARE = 0.05
DEFAULT_PART = "films"
JPEG_SIGNATURE = b"\xff\xd8"
GUIDE = "docs/own-films.md"
_PART_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")


@dataclass(frozen=True)
class Listing:
    """Own films as listed, before any film is opened.

    `rows` has `path` (absolute), `label` (as written), `patient`, `study`, `part`, `split`,
    `view` ("" where not given) and `where` (how a message names the row: `list.csv:12` or
    the film's path under the class folder); `given` names the optional columns present.
    """

    source: Path
    kind: str  # "manifest" or "classes"
    rows: pd.DataFrame
    given: frozenset[str]


# --- Recognising and listing ----------------------------------------------------------------


def is_manifest(path: str | os.PathLike[str]) -> bool:
    """A CSV file (`--data-dir list.csv`)."""
    path = Path(path)
    return path.suffix.lower() == ".csv" and path.is_file()


def is_class_folder(path: str | os.PathLike[str]) -> bool:
    """A folder of two or more subfolders with a film somewhere below one of them (checked
    after MURA's and FracAtlas's layouts, which are folders of folders too)."""
    path = Path(path)
    if not path.is_dir():
        return False
    classes = _class_dirs(path)
    return len(classes) >= 2 and any(next(_films_below(c), None) for c in classes)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _films_below(folder: Path):
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(FILM_SUFFIXES):
                yield Path(dirpath) / name


def list_films(data_dir: str | os.PathLike[str]) -> Listing:
    """The manifest `data_dir` or the class folder `data_dir`, listed (no film is opened)."""
    source = Path(data_dir).expanduser()
    if is_manifest(source):
        return _list_manifest(source)
    if not source.is_dir():
        raise MuraDataError(f"{source} is neither a CSV manifest nor a folder of classes ({GUIDE})")
    return _list_classes(source)


def _list_classes(folder: Path) -> Listing:
    classes = _class_dirs(folder)
    if len(classes) != 2:
        names = ", ".join(c.name for c in classes) or "none"
        raise MuraDataError(
            f"{folder} has {len(classes)} class folder(s) ({names}): a folder of classes holds "
            "two, one per label (use a manifest for more structure)"
        )
    records = []
    for directory in classes:
        films = list(_films_below(directory))
        if not films:
            raise MuraDataError(
                f"{directory} holds no PNG, JPEG or DICOM film: an empty class; add its films "
                "or pass a manifest"
            )
        for film in films:
            relative = film.relative_to(folder).as_posix()
            records.append(
                {"path": os.path.abspath(film), "label": directory.name, "where": relative}
            )
    rows = pd.DataFrame.from_records(records)
    for column in OPTIONAL:
        rows[column] = ""
    # Each film is its own study and patient, named by its path under the class folder.
    rows["study"] = rows["where"].str.rsplit(".", n=1).str[0]
    return Listing(folder, "classes", rows, frozenset({"study"}))


def _list_manifest(path: Path) -> Listing:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise MuraDataError(f"cannot read the manifest {path}: {str(e).splitlines()[0]}") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise MuraDataError(
            f"{path} lacks the column(s) {', '.join(missing)}: a manifest has a header with "
            f"path,label and optionally {','.join(OPTIONAL)} ({GUIDE})"
        )
    if table.empty:
        raise MuraDataError(f"{path} lists no films: add rows of path,label")
    given = frozenset(c for c in OPTIONAL if c in table.columns)
    rows = pd.DataFrame({"where": [f"{path.name}:{n + 2}" for n in range(len(table))]})
    folder = os.path.abspath(path.parent)
    rows["path"] = [
        os.path.normpath(os.path.join(folder, p.strip())) if p.strip() else ""
        for p in table["path"]
    ]
    rows["label"] = table["label"].str.strip().to_numpy()
    for column in OPTIONAL:
        rows[column] = table[column].str.strip().to_numpy() if column in given else ""
    return Listing(path, "manifest", rows, given)


# --- What dataset the films are -------------------------------------------------------------


def listing_dataset(listing: Listing, positive: str | None = None) -> DatasetInfo:
    """The dataset of `listing`: a project dataset when every part is one of its parts (a
    manifest `write_manifest` wrote), else an own dataset of the listing's parts, classes
    and splits (registered, `datasets.register_own`).

    Raises:
        ConfigError: `positive` is not one of the labels, or no label can be told positive.
    """
    builtin = _builtin_of(listing)
    if builtin is not None:
        return builtin
    negative_name, positive_name = _two_labels(listing, positive)
    parts = {_part_name(p) for p in listing.rows["part"]} - {None}
    splits = {s.lower() for s in listing.rows["split"]} & set(SPLIT_NAMES)
    if "split" not in listing.given or "train" not in splits:
        splits = {"train", "test"}
    title = f"your films ({listing.source.name})"
    return register_own(
        own_dataset(title, parts or {DEFAULT_PART}, positive_name, negative_name, splits)
    )


def _builtin_of(listing: Listing) -> DatasetInfo | None:
    values = set(listing.rows["part"]) - {""}
    if not values:
        return None
    for info in DATASETS.values():
        if {v.upper() for v in values} <= set(info.parts):
            return info
    return None


def _two_labels(listing: Listing, positive: str | None) -> tuple[str, str]:
    """(negative, positive) as written in the listing."""
    labels = listing.rows["label"]
    counts = labels[labels != ""].value_counts()
    values = list(counts.index)
    if {"0", "1"} <= set(values) or (set(values) <= {"0", "1"} and values):
        two = ["0", "1"]
    else:
        # The two most common labels are the classes; any other is a row's mistake.
        two = sorted(sorted(values, key=lambda v: (-counts[v], v))[:2])
    if len(two) < 2:
        raise MuraDataError(
            f"{listing.source}: every film is labelled {two[0] if two else 'nothing'}: "
            "an empty class; a model needs films of both labels"
        )
    if positive is not None:
        chosen = [v for v in two if v.lower() == positive.strip().lower()]
        if not chosen:
            raise ConfigError(
                f"--positive {positive}: the labels of {listing.source} are {two[0]} and {two[1]}"
            )
        chosen_positive = chosen[0]
    elif two == ["0", "1"]:
        chosen_positive = "1"
    else:
        named = [v for v in two if v.lower() in POSITIVE_NAMES]
        if len(named) != 1:
            raise ConfigError(
                f"which label of {listing.source} is positive, {two[0]} or {two[1]}? "
                "pass --positive with one of them"
            )
        chosen_positive = named[0]
    negative = next(v for v in two if v != chosen_positive)
    return negative, chosen_positive


def _part_name(value: str) -> str | None:
    """`Wrist`, `left wrist`, `OWN_WRIST` -> `wrist`, `left_wrist`; None for "" or a name
    that cannot be a part (`--part` must be able to type it)."""
    name = re.sub(r"[\s-]+", "_", value.strip().lower())
    if name.startswith("own_"):
        name = name[4:]
    return name if _PART_RE.match(name) else None


# --- The catalogue --------------------------------------------------------------------------


def load_own(
    data_dir: str | os.PathLike[str],
    parts: str | Iterable[str] | None = None,
    splits: Sequence[str] | None = None,
    *,
    positive: str | None = None,
    check_images: bool = True,
    strict: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Read a manifest or a folder of classes into the catalogue (`mura.load_mura`'s columns).

    Args:
        data_dir: the manifest (`.csv`) or the folder of classes.
        parts: `None`/`'all'`, or short names of the listing's parts.
        splits: which catalogue splits to keep (default all).
        positive: the label that is 1 (see the module docstring for the default).
        check_images: open every film (`film_file_problem`) and drop the unreadable ones.
        strict: raise on the first problem of any kind instead of dropping its row.
        progress: called as `progress(done, total)` while films are checked.

    Returns:
        Columns `split`, `part` (`OWN_WRIST` ..., or the dataset's own), `patient`, `study`,
        `view`, `label` (1 = positive), `path` (absolute), sorted by split (in the dataset's
        order), part, patient, study, view.

    Raises:
        MuraDataError: a missing column, an empty class, a study or patient that contradicts
            itself, or problems that would drop more than `MAX_DROPPED_SHARE` of the films.
    """
    listing = list_films(data_dir)
    info = listing_dataset(listing, positive)
    problems = _Problems(listing, strict)
    rows = _labelled(listing, info, positive, problems)
    rows = _placed(rows, info, problems)
    rows = problems.drop(rows, _duplicate_problems(rows))
    rows = problems.drop(rows, {i: "no such file" for i in rows.index if not _is_file(rows, i)})
    _check_groups(rows, listing)
    if "split" not in listing.given:
        rows = _drawn_split(rows)
    _check_given_split(rows, listing)
    if check_images and len(rows):
        bad = find_unreadable(rows["path"].tolist(), progress, problem=film_file_problem)
        where = {p: i for i, p in rows["path"].items()}
        rows = problems.drop(rows, {where[p]: why for p, why in bad.items()}, "does not decode")
    problems.report()
    for label, name in ((0, info.negative), (1, info.positive)):
        if not (rows["label"] == label).any():
            raise MuraDataError(
                f"{listing.source}: no readable film is labelled {name}: an empty class; a "
                "model needs films of both labels"
            )
    wanted = info.parse_parts(parts)
    frame = rows[rows["part"].isin(wanted) & rows["split"].isin(splits or info.catalogue_splits)]
    if frame.empty:
        raise MuraDataError(
            f"no films of {info.parts_spec(wanted)} in {listing.source} "
            f"({'/'.join(splits or info.catalogue_splits)}): check --part and --data-dir"
        )
    return _in_catalogue_order(frame, info)


def _is_file(rows: pd.DataFrame, i) -> bool:
    return bool(rows.at[i, "path"]) and os.path.isfile(rows.at[i, "path"])


class _Problems:
    """The rows dropped so far, by kind; reported as one warning line per kind."""

    def __init__(self, listing: Listing, strict: bool) -> None:
        self.listing = listing
        self.strict = strict
        self.total = len(listing.rows)
        self.by_kind: dict[str, list[str]] = {}

    def drop(self, rows: pd.DataFrame, problems: dict, kind: str | None = None) -> pd.DataFrame:
        """`rows` without `problems` (row index -> why), each noted under `kind` (by default
        the kind its reason names)."""
        for i, why in problems.items():
            where = rows.at[i, "where"]
            if self.strict:
                raise MuraDataError(f"{where}: {f'{kind} ({why})' if kind else why} (--strict)")
            self.by_kind.setdefault(kind or _kind_of(why), []).append(f"{where} ({why})")
        return rows.drop(index=list(problems))

    def report(self) -> None:
        dropped = sum(len(v) for v in self.by_kind.values())
        for kind, rows in self.by_kind.items():
            more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
            warnings.warn(
                f"{self.listing.source}: dropped {len(rows)} film(s), {kind}: "
                + ", ".join(rows[:10])
                + more,
                MuraDataWarning,
                stacklevel=4,
            )
        if dropped > MAX_DROPPED_SHARE * self.total:
            raise MuraDataError(
                f"{self.listing.source}: {dropped} of {self.total} films have problems (named "
                f"above), over the {MAX_DROPPED_SHARE:.0%} a run accepts: fix the "
                f"{'manifest' if self.listing.kind == 'manifest' else 'folder'} first"
            )


def _kind_of(why: str) -> str:
    for kind in ("label", "part", "split", "the same film", "view"):
        if why.startswith(kind) or kind in why.split(":")[0]:
            return {"the same film": "duplicate paths"}.get(kind, f"bad {kind}")
    return why


def _labelled(
    listing: Listing, info: DatasetInfo, positive: str | None, problems: _Problems
) -> pd.DataFrame:
    rows = listing.rows.copy()
    if info.prefix == "OWN_":
        negative, positive_label = _two_labels(listing, positive)
    else:
        negative, positive_label = "0", "1"
    bad = {
        i: f"label {v!r} is not {positive_label} or {negative}"
        for i, v in rows["label"].items()
        if v not in (positive_label, negative)
    }
    rows = problems.drop(rows, bad)
    rows["label"] = (rows["label"] == positive_label).astype("int32")
    return rows


def _placed(rows: pd.DataFrame, info: DatasetInfo, problems: _Problems) -> pd.DataFrame:
    """Parts canonical, splits checked, views numbered, patients and studies filled in."""
    bad: dict = {}
    parts = []
    for i, value in rows["part"].items():
        name = _part_name(value) if value else DEFAULT_PART
        if info.prefix != "OWN_":
            name = value.upper() if value.upper() in info.parts else None
        elif name is not None:
            name = info.prefix + name.upper()
        if name is None:
            bad[i] = f"part {value!r} is not a name --part can take (letters, digits, _)"
        parts.append(name)
    rows = rows.assign(part=parts)
    splits = rows["split"].str.lower()
    for i, value in splits.items():
        if value and value not in info.catalogue_splits:
            bad[i] = f"split {rows.at[i, 'split']!r} is not {' or '.join(info.catalogue_splits)}"
    views = pd.to_numeric(rows["view"].where(rows["view"] != ""), errors="coerce")
    for i, value in rows["view"].items():
        if value and (pd.isna(views[i]) or views[i] != int(views[i])):
            bad[i] = f"view {value!r} is not a whole number"
    rows = problems.drop(rows.assign(split=splits), bad)
    rows["study"] = rows["study"].where(rows["study"] != "", rows["path"])
    rows["patient"] = rows["patient"].where(rows["patient"] != "", rows["study"])
    given = pd.to_numeric(rows["view"].where(rows["view"] != ""), errors="coerce")
    counted = rows.groupby("study")["path"].rank(method="first").astype(int)
    rows["view"] = given.fillna(counted).astype("int32")
    return rows


def _duplicate_problems(rows: pd.DataFrame) -> dict:
    first: dict[str, str] = {}
    out = {}
    for i, path in rows["path"].items():
        if path in first:
            out[i] = f"the same film as {first[path]}"
        else:
            first[path] = rows.at[i, "where"]
    return out


def _check_groups(rows: pd.DataFrame, listing: Listing) -> None:
    """A study has one label, part, patient and split; a patient one split when given."""
    for column in ("label", "part", "patient", "split"):
        mixed = rows.groupby("study")[column].nunique()
        mixed = mixed[mixed > 1]
        if len(mixed):
            study = mixed.index[0]
            where = ", ".join(rows.loc[rows["study"] == study, "where"].head(4))
            raise MuraDataError(
                f"{listing.source}: study {study} has films of more than one {column} "
                f"({where}): a study's views share it; fix the manifest"
            )


def _check_given_split(rows: pd.DataFrame, listing: Listing) -> None:
    sides = rows.groupby("patient")["split"].nunique()
    both = sides[sides > 1]
    if len(both):
        patient = both.index[0]
        mine = rows[rows["patient"] == patient]
        where = ", ".join(f"{w} ({s})" for w, s in zip(mine["where"], mine["split"], strict=True))
        raise MuraDataError(
            f"{listing.source}: patient {patient} is on both sides of the split ({where}; "
            f"{len(both)} patient(s) in all): a patient's films belong to one split; fix the "
            "split column, or drop it to have splits drawn by patient"
        )


def _drawn_split(rows: pd.DataFrame) -> pd.DataFrame:
    from mura_tf.data.splits import patient_split  # splits reads datasets, as this does

    _, test = patient_split(rows, OWN_TEST_FRACTION, OWN_SPLIT_SEED)
    return rows.assign(split=["test" if i in test.index else "train" for i in rows.index])


def _in_catalogue_order(frame: pd.DataFrame, info: DatasetInfo) -> pd.DataFrame:
    order = {s: i for i, s in enumerate(info.catalogue_splits)}
    frame = frame.astype({"view": "int32", "label": "int32"})
    frame = frame.sort_values(
        ["split", "part", "patient", "study", "view", "path"],
        key=lambda c: c.map(order) if c.name == "split" else c,
        kind="stable",
    )
    return frame[["split", "part", "patient", "study", "view", "label", "path"]].reset_index(
        drop=True
    )


def film_file_problem(path: str) -> str | None:
    """Why `path` is not a readable PNG, JPEG or DICOM film (told apart by their first
    bytes, not their names), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if has_preamble(head) or path.lower().endswith(DICOM_SUFFIXES):
        try:
            film_pixels(Path(path))
        except NotAFilm as e:
            return f"DICOM: {e}"
        return None
    if head.startswith(PNG_SIGNATURE):
        return film_problem(path, PNG_SIGNATURE, "PNG", check_decodes)
    if head.startswith(JPEG_SIGNATURE):
        return film_problem(path, JPEG_SIGNATURE, "JPEG", check_decodes)
    return "empty file" if not head else "not a PNG, JPEG or DICOM film"


# --- Writing --------------------------------------------------------------------------------


def write_manifest(frame: pd.DataFrame, out: str | os.PathLike[str]) -> Path:
    """Write a catalogue (`load_catalogue`'s columns) as a manifest at `out`, atomically:
    `path` relative to `out`'s folder, `label` 0/1, and `patient`, `study`, `part`, `split`,
    `view` as the catalogue has them, so that reading it back gives the same catalogue."""

    out = Path(out)
    folder = os.path.abspath(out.parent)
    table = pd.DataFrame(
        {
            "path": [Path(os.path.relpath(p, folder)).as_posix() for p in frame["path"]],
            "label": frame["label"].astype(int),
            "patient": frame["patient"],
            "study": frame["study"],
            "part": frame["part"],
            "split": frame["split"],
            "view": frame["view"].astype(int),
        }
    )
    return write_text(out, table.to_csv(index=False))
