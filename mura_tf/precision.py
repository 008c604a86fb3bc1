"""Compute precision of a run: float32, or mixed (bfloat16 / float16 compute, float32 variables).

`--mixed-precision auto` (the default) turns mixed precision on where it is measured to be
faster (benchmarks/README.md): `mixed_bfloat16` on CPUs with native bfloat16 arithmetic
(`avx512_bf16` or `amx_bf16` in /proc/cpuinfo; oneDNN then runs convolutions and the fused
batch norm in bfloat16, on AMX tiles where present) and `mixed_float16` on GPUs of compute
capability 7.0 or more (tensor cores). Elsewhere, where bfloat16 would be emulated, it stays
float32. `on` asks for the same policy wherever it is, `off` for float32. Heads keep float32
outputs, so probabilities are never rounded to 8 bits of mantissa.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

MODES = ("auto", "on", "off")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


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


def policy_name(mode: str) -> str:
    """The Keras dtype policy of `mode` (one of `MODES`) on this machine."""
    if mode == "off":
        return "float32"
    if _gpu_with_tensor_cores():
        return "mixed_float16"
    if mode == "on" or cpu_has_bf16():
        return "mixed_bfloat16"
    return "float32"


@contextlib.contextmanager
def precision(mode: str) -> Iterator[str]:
    """Keras's global dtype policy set to `policy_name(mode)` inside, restored after; yields
    the policy's name."""
    import keras

    before = keras.mixed_precision.global_policy()
    name = policy_name(mode)
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(before)
