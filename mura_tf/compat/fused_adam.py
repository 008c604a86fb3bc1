"""Adam's update on TensorFlow's fused kernel, for every Adam the project trains with.

A workaround (see `mura_tf.compat`): tested with Keras 3.15.1 and TensorFlow 2.21.0. Keras 3's
`Adam.update_step` is backend-neutral: for each variable it builds the moment updates and the
step from separate ops (about a dozen per variable, each a pass over the tensor), where
TensorFlow's `ResourceApplyAdam` (the kernel of tf.keras's legacy optimizers;
keras-team/keras#19307, closed, reported their op-by-op successors slower) does the same
arithmetic in one pass. DenseNet169 has 508 trainable variables: the separate ops are
thousands more nodes to trace and optimise before the first step, and more passes over its
12 M parameters in every step (benchmarks/README.md, "Fused Adam").

`fuse_adam` swaps the computation, not the optimizer: it stays a `keras.optimizers.Adam` with
its own config, variables, learning-rate schedule, iteration counter and loss scaling, so
`model.keras` files load without this project and resume points keep their layout. The
kernel computes Keras's formula,

    alpha = lr * sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    m += (g - m) * (1 - beta_1);  v += (g * g - v) * (1 - beta_2)
    w -= m * alpha / (sqrt(v) + epsilon)

with `1 - beta_1` rounded in the variable's dtype rather than in Python's float64: results agree
with Keras's own `update_step` to float rounding (tests/test_compat.py). Updates the kernel does
not take (AMSGrad, sparse gradients, other dtypes, other backends) go to Keras's code.
"""

from __future__ import annotations

import concurrent.futures

import keras
import tensorflow as tf

from mura_tf.compat import incompatible, is_shadowed, shadow

_ISSUE = "keras-team/keras#19307"
_KERNEL_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
_dispatch_checked = False


def fused_adam_update_step(
    optimizer: keras.optimizers.Adam, gradient, variable, learning_rate
) -> None:
    """`optimizer.update_step(gradient, variable, learning_rate)` by `ResourceApplyAdam`.

    Args:
        gradient: the shape of `variable`; a sparse one (`tf.IndexedSlices`) goes to Keras's
            code.
        variable: the `tf.Variable` Keras's TensorFlow optimizer hands to `update_step` (under
            a `tf.distribute` strategy, the replica's component).
        learning_rate: the current rate, a scalar.
    """
    optimizer._mura_tf_fused_updates = getattr(optimizer, "_mura_tf_fused_updates", 0) + 1
    dtype = tf.as_dtype(variable.dtype)
    if (
        optimizer.amsgrad
        or dtype not in _KERNEL_DTYPES
        or not isinstance(gradient, tf.Tensor)  # IndexedSlices: sparse
    ):
        return type(optimizer).update_step(optimizer, gradient, variable, learning_rate)
    index = optimizer._get_variable_index(variable)
    m = optimizer._momentums[index]
    v = optimizer._velocities[index]
    local_step = tf.cast(optimizer.iterations + 1, dtype)
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle,
        m=m.handle,
        v=v.handle,
        beta1_power=tf.pow(tf.cast(optimizer.beta_1, dtype), local_step),
        beta2_power=tf.pow(tf.cast(optimizer.beta_2, dtype), local_step),
        lr=tf.cast(learning_rate, dtype),
        beta1=tf.cast(optimizer.beta_1, dtype),
        beta2=tf.cast(optimizer.beta_2, dtype),
        epsilon=tf.cast(optimizer.epsilon, dtype),
        grad=tf.cast(gradient, dtype),
    )


def is_fused(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether `fuse_adam` has switched this optimizer to the fused kernel."""
    return is_shadowed(optimizer, "update_step", fused_adam_update_step)


def fuse_adam(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """Compute the updates of a Keras `Adam` or `AdamW` (whose decoupled decay Keras applies
    before `update_step`) with the fused kernel, in place; any other optimizer, or a subclass
    with its own `update_step`, is returned as it is.

    Call it before the optimizer is traced (compiled or fitted). Returns `optimizer`.
    """
    if (
        keras.backend.backend() != "tensorflow"
        or getattr(type(optimizer), "update_step", None) is not keras.optimizers.Adam.update_step
    ):
        return optimizer
    _check_dispatch()
    if not is_fused(optimizer):
        _swap_update_step(optimizer)
    return optimizer


def _swap_update_step(optimizer: keras.optimizers.Adam) -> None:
    shadow(optimizer, "update_step", fused_adam_update_step)


def _check_dispatch() -> None:
    """Stop unless Keras's `apply` reaches a swapped `update_step` with the moment variables
    it reads (checked once per process)."""
    global _dispatch_checked
    if _dispatch_checked:
        return
    # A strategy's scope belongs to its thread: the probe runs in a thread of its own, outside
    # any strategy the caller has entered (`pretrain` fuses inside MirroredStrategy's scope).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(_probe_dispatch).result()
    _dispatch_checked = True


def _probe_dispatch() -> None:
    variable = keras.Variable([1.0, 2.0])
    probe = keras.optimizers.Adam(0.1)
    probe.build([variable])
    for name in ("_momentums", "_velocities", "_get_variable_index"):
        if not hasattr(probe, name):
            raise incompatible("mura_tf's fused Adam", _ISSUE, f"Adam no longer has {name!r}")
    _swap_update_step(probe)
    probe.apply([tf.constant([1.0, -1.0])], [variable])
    if not getattr(probe, "_mura_tf_fused_updates", 0):
        raise incompatible(
            "mura_tf's fused Adam",
            _ISSUE,
            "Optimizer.apply no longer dispatches to the instance's update_step",
        )
