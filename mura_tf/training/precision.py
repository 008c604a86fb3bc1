"""Compute precision of a run: float32, or mixed (bfloat16 / float16 compute, float32 variables).

`--mixed-precision auto` (the default) turns mixed precision on where it is measured to be
faster (benchmarks/README.md, "Mixed precision by image size"): `mixed_bfloat16` on CPUs with
native bfloat16 arithmetic (`avx512_bf16` or `amx_bf16` in /proc/cpuinfo; oneDNN then runs
convolutions and the fused batch norm in bfloat16, on AMX tiles where present) and
`mixed_float16` on GPUs of compute capability 7.0 or more (tensor cores), for images of at least
`MIN_MIXED_SIDE` pixels a side. Elsewhere it stays float32: where bfloat16 would be emulated,
and for small images (the synthetic preset's 64 px, the tests' 32 px), which stay float32 on
every machine so that their digits do not depend on the CPU. `on` asks for mixed precision
wherever it is, `off` for float32. Heads keep float32 outputs, so probabilities are never
rounded to 8 bits of mantissa.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

from mura_tf.errors import ConfigError

MODES = ("auto", "on", "off")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Where bfloat16 starts to pay on every CPU measured: DenseNet169's train step gained nothing
# from it at 64 px on an AMX Xeon and a third at 128 px; an AVX-512 BF16 EPYC without AMX
# gained 1.4x at both (benchmarks/README.md, "Mixed precision by image size"). Below it,
# float32 also keeps the synthetic runs' and the tests' digits the same on every CPU.
MIN_MIXED_SIDE = 128


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic natively (Linux: /proc/cpuinfo flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])  # fmt: skip
    return any(flag in flags for flag in BF16_FLAGS)


def _gpu_with_tensor_cores() -> bool:
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and capability >= (7, 0):
            return True
    return False


def parse_mode(value: str | bool) -> str:
    """`--mixed-precision` checked: one of `MODES`; a bool (how config.json records whether a
    run computed in mixed precision) reads as `on` or `off`."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value not in MODES:
        raise ConfigError(f"--mixed-precision must be one of {', '.join(MODES)}, got {value!r}")
    return value


def policy_name(mode: str, image_size: int | None = None) -> str:
    """The Keras dtype policy of `mode` (one of `MODES`) on this machine, for images of
    `image_size` pixels a side (None: any size)."""
    if mode == "off":
        return "float32"
    if mode == "auto" and image_size is not None and image_size < MIN_MIXED_SIDE:
        return "float32"
    if _gpu_with_tensor_cores():
        return "mixed_float16"
    if mode == "on" or cpu_has_bf16():
        return "mixed_bfloat16"
    return "float32"


def uses_mixed_precision(mode: str, image_size: int | None = None) -> bool:
    """Whether `mode` computes in mixed precision on this machine for `image_size` px images."""
    return policy_name(mode, image_size) != "float32"


@contextlib.contextmanager
def precision(mode: str, image_size: int | None = None) -> Iterator[str]:
    """Keras's global dtype policy set to `policy_name(mode, image_size)` inside, restored
    after; yields the policy's name."""
    import keras

    before = keras.mixed_precision.global_policy()
    name = policy_name(mode, image_size)
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(before)
