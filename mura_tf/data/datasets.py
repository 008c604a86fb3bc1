"""What each dataset of the project is, said once: its parts, its label, its splits, its source.

Everything downstream of the catalogue (`mura_tf.data.catalogue`) reads a frame of the same
columns whatever the dataset; where a part's name or the positive label must be shown, it asks
the `DatasetInfo` of the frame's parts (`dataset_of_parts`). Part names carry their dataset's
prefix (`XR_HAND` is MURA's hand, `FA_HAND` FracAtlas's), so a part alone says which dataset
it belongs to; users type the short name (`hand`) and the dataset in use decides.

A user's own films (a folder of classes or a CSV manifest, `mura_tf.data.manifest`) are a
dataset made at run time (`own_dataset`): its parts are `OWN_<name>`, its labels the user's
two classes. Reading them registers it (`register_own`), so that `dataset_of_parts` finds it
by its parts as it finds MURA's; a process that never read them (a report of finished runs)
gets the same parts under generic label names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mura_tf.errors import ConfigError


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: its part names, its label, how its splits are made, where it comes from."""

    name: str  # as `--dataset` takes it
    title: str
    prefix: str  # of its canonical part names
    short_names: tuple[str, ...]  # the parts as users type them, in class-index order
    positive: str  # what label 1 means
    negative: str
    # "patient": dev is carved from `train` by patient and `valid` is the test set (MURA);
    # "fixed": the catalogue's `train`/`valid`/`test` are the run's train/dev/test.
    split_scheme: str
    catalogue_splits: tuple[str, ...]
    test_split: str  # the catalogue split runs test on
    citation: str
    licence: str
    url: str

    @property
    def parts(self) -> tuple[str, ...]:
        """Canonical part names (`XR_ELBOW` ...), the catalogue's `part` values, in class order."""
        return tuple(self.prefix + s.upper() for s in self.short_names)

    def canonical_part(self, name: str) -> str:
        """This dataset's part for `elbow`, `Elbow`, `XR_ELBOW` ...; a part of another
        dataset maps by its short name (MURA's `XR_HAND` is FracAtlas's `FA_HAND`)."""
        short = _short(name)
        if short not in self.short_names:
            raise ConfigError(
                f"unknown body part {short!r} of {self.title}: use one of "
                f"{', '.join(self.short_names)} (or 'all')"
            )
        return self.prefix + short.upper()

    def parse_parts(self, spec: str | Iterable[str] | None) -> tuple[str, ...]:
        """`'all'`, `None`, `'elbow,hand'` or a list -> canonical parts, in this dataset's
        order. Every part of another dataset (its 'all') is this dataset's 'all'."""
        if spec is None:
            return self.parts
        names = spec.split(",") if isinstance(spec, str) else list(spec)
        names = [n for n in (s.strip() for s in names) if n]
        if not names:
            raise ConfigError(
                "no body part given: use one of " + ", ".join(self.short_names) + " or 'all'"
            )
        if any(n.lower() == "all" for n in names) or _is_every_part_of_a_dataset(names):
            return self.parts
        chosen = {self.canonical_part(n) for n in names}
        return tuple(p for p in self.parts if p in chosen)

    def parts_spec(self, spec: str | Iterable[str] | None) -> str:
        """The one spelling of a selection: `all`, or short names in class order."""
        chosen = self.parse_parts(spec)
        if chosen == self.parts:
            return "all"
        return ",".join(short_name(p) for p in chosen)


MURA = DatasetInfo(
    name="mura",
    title="MURA",
    prefix="XR_",
    short_names=("elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist"),
    positive="abnormal",
    negative="normal",
    split_scheme="patient",
    catalogue_splits=("train", "valid"),
    test_split="valid",
    citation=(
        "Rajpurkar, P., Irvin, J., Bagul, A. et al. MURA: Large Dataset for Abnormality "
        "Detection in Musculoskeletal Radiographs. arXiv:1712.06957 (2017)"
    ),
    licence="Stanford University School of Medicine MURA Dataset Research Use Agreement",
    url="https://stanfordmlgroup.github.io/competitions/mura/",
)

FRACATLAS = DatasetInfo(
    name="fracatlas",
    title="FracAtlas",
    prefix="FA_",
    # `mixed`: the 398 films flagged as showing several regions (dataset.csv's `mixed`), kept
    # as a part of their own rather than assigned to one of their regions or dropped.
    short_names=("hand", "leg", "hip", "shoulder", "mixed"),
    positive="fractured",
    negative="not fractured",
    split_scheme="fixed",
    catalogue_splits=("train", "valid", "test"),
    test_split="test",
    citation=(
        "Abedeen, I., Rahman, M.A., Prottyasha, F.Z. et al. FracAtlas: A Dataset for Fracture "
        "Classification, Localization and Segmentation of Musculoskeletal Radiographs. "
        "Scientific Data 10, 521 (2023), doi:10.1038/s41597-023-02432-4; data: "
        "doi:10.6084/m9.figshare.22363012"
    ),
    licence="CC BY 4.0",
    url="https://doi.org/10.6084/m9.figshare.22363012",
)

DATASETS: dict[str, DatasetInfo] = {d.name: d for d in (MURA, FRACATLAS)}

OWN_PREFIX = "OWN_"
OWN_NAME = "own"
# The test split drawn for own films without a `split` column: this share of the patients,
# stratified by part and label, with `OWN_SPLIT_SEED` (the run's seed then draws dev from the
# rest, as it does from MURA's train split), so every run and command tests on the same films.
OWN_TEST_FRACTION = 0.2
OWN_SPLIT_SEED = 0
_own: list[DatasetInfo] = []


def own_dataset(
    title: str,
    short_names: Iterable[str],
    positive: str = "positive",
    negative: str = "negative",
    splits: Iterable[str] = ("train", "test"),
) -> DatasetInfo:
    """A user's own films as a dataset: parts `OWN_<SHORT>` in sorted order, the two classes'
    names, and the splits its films carry: with `test` and `valid` both, they are the run's
    test and dev (`fixed`); otherwise dev is drawn from `train` by patient and the test split
    is `test`, or `valid` as in MURA (`patient`)."""
    names = tuple(sorted({_short(n) for n in short_names}))
    present = set(splits)
    fixed = {"train", "valid", "test"} <= present
    catalogue_splits = tuple(s for s in ("train", "valid", "test") if s in present)
    return DatasetInfo(
        name=OWN_NAME,
        title=title,
        prefix=OWN_PREFIX,
        short_names=names,
        positive=positive,
        negative=negative,
        split_scheme="fixed" if fixed else "patient",
        catalogue_splits=catalogue_splits,
        test_split="test" if "test" in present else "valid",
        citation="",
        licence="",
        url="",
    )


def register_own(info: DatasetInfo) -> DatasetInfo:
    """Make `dataset_of_parts` answer `info` for its parts (the latest registered first)."""
    if info in _own:
        _own.remove(info)
    _own.append(info)
    return info


def _short(name: str) -> str:
    key = name.strip().lower()
    for prefix in (*(d.prefix for d in DATASETS.values()), OWN_PREFIX):
        if key.startswith(prefix.lower()):
            return key[len(prefix) :]
    return key


def _is_every_part_of_a_dataset(names: Iterable[str]) -> bool:
    upper = {n.strip().upper() for n in names}
    return any(upper == set(d.parts) for d in DATASETS.values())


def dataset_named(name: str) -> DatasetInfo:
    """The dataset called `name` (`mura`, `fracatlas`)."""
    try:
        return DATASETS[name.strip().lower()]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}") from None


def dataset_of_parts(parts: Iterable[str]) -> DatasetInfo:
    """The dataset whose canonical part names these are (MURA for none); for own films' parts
    (`OWN_...`) the latest registered own dataset holding them all, else a generic one."""
    parts = [str(p) for p in parts]
    prefixes = [*DATASETS.values(), own_dataset("your films", ())]
    found = {d.name for p in parts for d in prefixes if p.startswith(d.prefix)}
    if len(found) > 1:
        raise ConfigError(f"parts of several datasets in one selection: {sorted(found)}")
    if found == {OWN_NAME}:
        for info in reversed(_own):
            if set(parts) <= set(info.parts):
                return info
        return own_dataset("your films", parts)
    return DATASETS[found.pop()] if found else MURA


def short_name(part: str) -> str:
    """`XR_ELBOW` -> `elbow`, `FA_LEG` -> `leg`."""
    return _short(part)
