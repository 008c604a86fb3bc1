"""Which training-time augmentations run and how strong (`AugmentConfig`), parsed from a flag.

Kept apart from `mura_tf.data.augment`'s TensorFlow ops so that a process without TensorFlow
(the PyTorch twin in `benchmarks.torch_reference`) draws from the same ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mura_tf.errors import ConfigError

AUGMENTATIONS = ("autocontrast", "hflip", "rotate", "translate", "scale")
GEOMETRIC = frozenset({"rotate", "translate", "scale"})  # the ones that move film and mask


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, and their strengths (report 000 uses autocontrast + hflip)."""

    ops: tuple[str, ...] = ("autocontrast", "hflip")
    autocontrast_p: float = 0.5
    hflip_p: float = 0.5
    rotation_degrees: float = 10.0
    translation: float = 0.1  # fraction of the side, uniform in [-t, t]
    scale: tuple[float, float] = (0.9, 1.1)

    def __post_init__(self) -> None:
        unknown = [op for op in self.ops if op not in AUGMENTATIONS]
        if unknown:
            raise ConfigError(
                f"unknown augmentation {unknown[0]!r}: use any of {', '.join(AUGMENTATIONS)}"
            )
        for name in ("autocontrast_p", "hflip_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"scale range must be 0 < low <= high, got {self.scale}")


def parse_augmentations(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """`'autocontrast,hflip'`, `'none'`, `None` or a list -> validated op names."""
    if spec is None:
        return ()
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip().lower() for n in names if n.strip() and n.strip().lower() != "none"]
    AugmentConfig(ops=tuple(names))  # validates
    return tuple(names)
