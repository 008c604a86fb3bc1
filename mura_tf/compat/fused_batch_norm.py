"""Batch normalisation on TensorFlow's fused kernel, for the backbones the project trains.

A workaround (see `mura_tf.compat`): tested with Keras 3.15.1 and TensorFlow 2.21.0. It relies
on Keras's `Layer.__call__` calling the `call` it finds on the instance; `fuse_batch_norm`
checks that once per process on a one-layer model and stops with `KerasCompatError` if a Keras
release no longer does, rather than silently running the slow path.

Keras 3's `BatchNormalization` computes the batch moments and the normalisation as separate
TensorFlow ops (`tf.nn.moments`, `tf.nn.batch_normalization`), each a pass over the activations
forward and more backward. TensorFlow's `FusedBatchNormV3` (oneDNN on CPU, cuDNN on GPU) does
it in one op each way; on DenseNet169, with a batch norm before every convolution, a training
step is faster (benchmarks/README.md).

`fuse_batch_norm` swaps the computation, not the layer: each layer stays a Keras
`BatchNormalization` with its own config and weights, so `model.keras` files load without this
project and weight files keep their layout (Keras names their entries by layer class). A model
reloaded or cloned from one comes back unfused; `build_backbone` fuses what it returns.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mura_tf.compat import incompatible, is_shadowed, shadow

_dispatch_checked = False


def _fusable(layer: keras.layers.BatchNormalization, inputs, mask) -> bool:
    return (
        mask is None
        and len(inputs.shape) == 4
        and layer.axis in (3, -1)
        and inputs.dtype in (tf.float32, tf.bfloat16, tf.float16)
        and not layer.renorm
        and not layer.synchronized
    )


def fused_batch_norm_call(
    layer: keras.layers.BatchNormalization, inputs, training=None, mask=None
) -> tf.Tensor:
    """`layer.call(inputs, training, mask)` computed by `tf.compat.v1.nn.fused_batch_norm`.

    The same results as Keras's own `call` to float rounding, moving statistics included (they
    keep Keras's biased batch variance). Inputs the fused kernel does not take (masks, ranks
    other than 4, other axes, renorm, synchronised statistics, other dtypes) go to Keras's code.
    Under mixed precision the inputs are bfloat16 or float16 and the kernel computes the
    statistics in float32 (scale, offset and moving statistics stay float32 variables), as
    Keras's own layer does by casting.

    Args:
        inputs: float32, bfloat16 or float16 `[B, H, W, C]`.
    Returns:
        `[B, H, W, C]`, normalised with batch statistics when training a trainable layer, with
        the moving ones otherwise.
    """
    layer._mura_tf_fused_calls = getattr(layer, "_mura_tf_fused_calls", 0) + 1
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
    steps = layer.__dict__.get("_mura_tf_steps")
    if steps is not None:  # see follow_training_steps
        t = tf.cast(tf.convert_to_tensor(steps), tf.float32)
        momentum = tf.minimum(momentum, (1.0 + t) / (10.0 + t))
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
    return outputs


def follow_training_steps(model: keras.Model, steps) -> keras.Model:
    """Let the moving statistics of `model`'s fused batch norms average over no more steps
    than training has taken: momentum `min(momentum, (1 + t) / (10 + t))` at step `t`.

    Keras's moving averages start at mean 0, variance 1 with momentum 0.99, an average over
    ~100 steps built for ImageNet's thousands of steps an epoch. When the weights move fast
    (from random initialisation, or a short run) they lag far behind the statistics that the
    training batches have, and evaluation, which uses them, sees another network: the
    synthetic main job's dev loss reached 10-50 while its training loss was 0.5 (README:
    "Batch normalisation in short runs"). The rule is the one of TensorFlow's own
    `tf.train.ExponentialMovingAverage(num_updates=...)`: it has the layer's momentum from step
    ~900 on, so long runs are unchanged.

    Args:
        steps: the optimizer's step counter (`optimizer.iterations`), saved with the
            optimizer, so a resumed run goes on where it was.
    Returns:
        `model`.
    """
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and is_fused(layer):
            object.__setattr__(layer, "_mura_tf_steps", steps)
    return model


def is_fused(layer: keras.layers.Layer) -> bool:
    """Whether `fuse_batch_norm` has switched this layer to the fused kernel."""
    return is_shadowed(layer, "call", fused_batch_norm_call)


def fuse_batch_norm(model: keras.Model) -> keras.Model:
    """Compute every Keras `BatchNormalization` of `model` with the fused kernel, in place.

    Call it before the model is traced (compiled or fitted). Returns `model`.
    """
    if keras.backend.backend() != "tensorflow":
        return model
    _check_dispatch()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and not is_fused(layer):
            _swap_call(layer)
    return model


def _swap_call(layer: keras.layers.BatchNormalization) -> None:
    shadow(layer, "call", fused_batch_norm_call)


def _check_dispatch() -> None:
    """Stop unless Keras's `__call__` reaches a swapped `call` (checked once per process)."""
    global _dispatch_checked
    if _dispatch_checked:
        return
    probe = keras.layers.BatchNormalization()
    _swap_call(probe)
    probe(tf.zeros([1, 2, 2, 1]), training=True)
    if not getattr(probe, "_mura_tf_fused_calls", 0):
        raise incompatible(
            "mura_tf's fused batch norm",
            "Keras 3 builds BatchNormalization from unfused ops on TensorFlow",
            "Layer.__call__ no longer dispatches to the instance's call",
        )
    _dispatch_checked = True
