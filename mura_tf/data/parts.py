"""MURA's seven body parts and the names users type for them: `mura_tf.data.datasets.MURA`
under the names older code imports. Other datasets' parts: `mura_tf.data.datasets`."""

from __future__ import annotations

from collections.abc import Iterable

from mura_tf.data.datasets import MURA, short_name

PARTS: tuple[str, ...] = MURA.parts
SHORT_NAMES: tuple[str, ...] = MURA.short_names

__all__ = ["PARTS", "SHORT_NAMES", "canonical_part", "parse_parts", "parts_spec", "short_name"]


def canonical_part(name: str) -> str:
    """Return the folder name (`XR_ELBOW`) for `elbow`, `Elbow`, `XR_ELBOW` or `xr_elbow`."""
    return MURA.canonical_part(name)


def parse_parts(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Parse `'all'`, `None`, `'elbow,hand'` or a list of names into canonical part names."""
    return MURA.parse_parts(spec)


def parts_spec(spec: str | Iterable[str] | None) -> str:
    """The one spelling of a selection of parts: `all`, or short names in `PARTS` order
    (`'Hand, ELBOW'` -> `'elbow,hand'`), so that equal selections name the same run."""
    return MURA.parts_spec(spec)
