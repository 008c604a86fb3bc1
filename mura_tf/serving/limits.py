"""What one request to `mura-tf serve` may ask of the server (`Limits`), kept apart from the
server itself so that the command can parse its flags without importing TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server.

    `instances`: films (or pixel arrays) per request; `depth`: how deeply the JSON body may
    nest (TF Serving's row format of raw pixels is 5 deep: instances, rows, columns,
    channels).
    """

    instances: int = 256
    depth: int = 16

    def __post_init__(self) -> None:
        for name in ("instances", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1, got {getattr(self, name)}")
