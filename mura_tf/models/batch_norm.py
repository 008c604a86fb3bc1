"""Batch normalisation on TensorFlow's fused kernel, for the backbones the project trains.

Keras 3's `BatchNormalization` computes the batch moments and the normalisation as separate
TensorFlow ops (`tf.nn.moments`, `tf.nn.batch_normalization`), each a pass over the activations
forward and more backward. TensorFlow's `FusedBatchNormV3` (oneDNN on CPU, cuDNN on GPU) does
it in one op each way; on DenseNet169, with a batch norm before every convolution, a training
step is 1.3x faster on the 2-core CPU of benchmarks/README.md.

`fuse_batch_norm` swaps the computation, not the layer: each layer stays a Keras
`BatchNormalization` with its own config and weights, so `model.keras` files load without this
project and weight files keep their layout (Keras names their entries by layer class). A model
reloaded or cloned from one comes back unfused; `build_backbone` fuses what it returns.
"""

from __future__ import annotations

import types

import keras
import tensorflow as tf


def _fusable(layer: keras.layers.BatchNormalization, inputs, mask) -> bool:
    return (
        mask is None
        and len(inputs.shape) == 4
        and layer.axis in (3, -1)
        and inputs.dtype == tf.float32
        and not layer.renorm
        and not layer.synchronized
    )


def fused_batch_norm_call(
    layer: keras.layers.BatchNormalization, inputs, training=None, mask=None
) -> tf.Tensor:
    """`layer.call(inputs, training, mask)` computed by `tf.compat.v1.nn.fused_batch_norm`.

    The same results as Keras's own `call` to float rounding, moving statistics included (they
    keep Keras's biased batch variance). Inputs the fused kernel does not take (masks, ranks
    other than 4, other axes, renorm, synchronised statistics, non-float32) go to Keras's code.

    Args:
        inputs: float32 `[B, H, W, C]`.
    Returns:
        `[B, H, W, C]`, normalised with batch statistics when training a trainable layer, with
        the moving ones otherwise.
    """
    if not _fusable(layer, inputs, mask):
        return type(layer).call(layer, inputs, training=training, mask=mask)
    channels = inputs.shape[-1]
    gamma = tf.convert_to_tensor(layer.gamma) if layer.scale else tf.ones([channels])
    beta = tf.convert_to_tensor(layer.beta) if layer.center else tf.zeros([channels])
    if not (training and layer.trainable):
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            gamma,
            beta,
            mean=tf.convert_to_tensor(layer.moving_mean),
            variance=tf.convert_to_tensor(layer.moving_variance),
            epsilon=layer.epsilon,
            is_training=False,
        )
        return outputs
    outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        inputs, gamma, beta, epsilon=layer.epsilon, is_training=True
    )
    # The kernel returns the unbiased (n - 1) variance; Keras's moving variance is biased.
    n = tf.cast(tf.size(inputs) // channels, tf.float32)
    variance = variance * (n - 1.0) / tf.maximum(n, 1.0)
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
    return outputs


def is_fused(layer: keras.layers.Layer) -> bool:
    """Whether `fuse_batch_norm` has switched this layer to the fused kernel."""
    call = layer.__dict__.get("call")
    return getattr(call, "__func__", None) is fused_batch_norm_call


def fuse_batch_norm(model: keras.Model) -> keras.Model:
    """Compute every Keras `BatchNormalization` of `model` with the fused kernel, in place.

    Call it before the model is traced (compiled or fitted). Returns `model`.
    """
    if keras.backend.backend() != "tensorflow":
        return model
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and not is_fused(layer):
            # An instance attribute shadows the class's `call`, which Keras's `__call__` uses;
            # object.__setattr__ skips Keras's attribute tracking, which has nothing to track.
            object.__setattr__(layer, "call", types.MethodType(fused_batch_norm_call, layer))
    return model
