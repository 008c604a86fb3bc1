"""The seven MURA body parts and the names users type for them."""

from __future__ import annotations

from collections.abc import Iterable

from mura_tf.errors import ConfigError

PARTS: tuple[str, ...] = (
    "XR_ELBOW",
    "XR_FINGER",
    "XR_FOREARM",
    "XR_HAND",
    "XR_HUMERUS",
    "XR_SHOULDER",
    "XR_WRIST",
)
SHORT_NAMES: tuple[str, ...] = tuple(p[3:].lower() for p in PARTS)


def canonical_part(name: str) -> str:
    """Return the folder name (`XR_ELBOW`) for `elbow`, `Elbow`, `XR_ELBOW` or `xr_elbow`."""
    key = name.strip().upper()
    if not key.startswith("XR_"):
        key = "XR_" + key
    if key not in PARTS:
        raise ConfigError(
            f"unknown body part {name!r}: use one of {', '.join(SHORT_NAMES)} (or 'all')"
        )
    return key


def parse_parts(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Parse `'all'`, `None`, `'elbow,hand'` or a list of names into canonical part names."""
    if spec is None:
        return PARTS
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n for n in (s.strip() for s in names) if n]
    if not names:
        raise ConfigError("no body part given: use one of " + ", ".join(SHORT_NAMES) + " or 'all'")
    if any(n.lower() == "all" for n in names):
        return PARTS
    out: list[str] = []
    for n in names:
        p = canonical_part(n)
        if p not in out:
            out.append(p)
    return tuple(out)


def parts_spec(spec: str | Iterable[str] | None) -> str:
    """The one spelling of a selection of parts: `all`, or short names in `PARTS` order
    (`'Hand, ELBOW'` -> `'elbow,hand'`), so that equal selections name the same run."""
    chosen = parse_parts(spec)
    if set(chosen) == set(PARTS):
        return "all"
    return ",".join(short_name(p) for p in PARTS if p in chosen)


def part_index(part: str) -> int:
    """Class index of a part for the 7-way body-part task (alphabetical, as the folders)."""
    return PARTS.index(canonical_part(part))


def short_name(part: str) -> str:
    """`XR_ELBOW` -> `elbow`."""
    return canonical_part(part)[3:].lower()
