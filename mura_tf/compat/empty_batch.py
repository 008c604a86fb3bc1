"""Run a model only on a non-empty batch.

TensorFlow 2.21.0 on CPU (oneDNN on): `tf.nn.conv2d` on a batch of zero images returns its
input unchanged instead of a `[0, H', W', C']` tensor, so a Keras model fails on the empty
slices that `tf.dynamic_partition` hands out (a cascade's expert whose part no film in the
batch goes to). Related upstream: tensorflow/tensorflow#123894 (zero-sized Conv2D shapes,
open). Tested with TensorFlow 2.21.0 and Keras 3.15.1; remove once conv2d keeps the shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf


def unless_empty(fn: Callable[[tf.Tensor], Any], batch: tf.Tensor, empty: Any) -> Any:
    """`fn(batch)`, or `empty` (the same structure with a leading dimension of 0) when `batch`
    holds no element; works eagerly and in a traced graph."""
    return tf.cond(tf.shape(batch)[0] > 0, lambda: fn(batch), lambda: empty)
