"""The fused batch-norm computation against Keras's own BatchNormalization, the reference."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mura_tf.compat.fused_batch_norm import follow_training_steps, fuse_batch_norm, is_fused
from mura_tf.models.backbones import build_backbone

RNG = np.random.default_rng(0)


def _pair(shape, **kwargs):
    """A Keras layer and a fused one (inside a model) with the same random weights."""
    reference, fused = (
        keras.layers.BatchNormalization(**kwargs),
        keras.layers.BatchNormalization(**kwargs),
    )
    inputs = keras.Input(shape[1:])
    fuse_batch_norm(keras.Model(inputs, fused(inputs)))
    reference.build(shape)
    weights = [RNG.uniform(0.5, 2.0, w.shape).astype("float32") for w in reference.weights]
    reference.set_weights(weights)
    fused.set_weights(weights)
    return reference, fused


def _forward_backward(layer, x, training):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        # Weighted per element: under batch statistics, any per-channel weighting of the
        # outputs has a zero gradient with respect to x.
        weights = tf.sin(tf.reshape(tf.range(tf.size(y), dtype="float32"), y.shape))
        loss = tf.reduce_sum(y * weights)
    grads = tape.gradient(loss, [x, *layer.trainable_weights])
    return y.numpy(), [g.numpy() for g in grads], [w.numpy() for w in layer.weights]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"momentum": 0.9, "epsilon": 1.001e-5}, {"scale": False, "center": False}],
)
def test_fused_layer_matches_keras_outputs_gradients_and_moving_statistics(kwargs, training):
    x = tf.constant(RNG.normal(2.0, 3.0, (4, 5, 6, 7)).astype("float32"))
    reference, fused = _pair(x.shape, **kwargs)
    assert is_fused(fused) and not is_fused(reference)
    want, got = _forward_backward(reference, x, training), _forward_backward(fused, x, training)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)
    for g, w in zip(got[1], want[1], strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * np.abs(w).max())
    for g, w in zip(got[2], want[2], strict=True):  # gamma, beta, moving mean and variance
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_frozen_layer_uses_moving_statistics_even_when_training():
    x = tf.constant(RNG.normal(size=(2, 3, 3, 4)).astype("float32"))
    reference, fused = _pair(x.shape)
    reference.trainable = fused.trainable = False
    np.testing.assert_allclose(fused(x, training=True), reference(x, training=True), atol=1e-5)
    np.testing.assert_allclose(fused.moving_mean.numpy(), reference.moving_mean.numpy())


def test_inputs_the_kernel_cannot_take_fall_back_to_keras():
    x = tf.constant(RNG.normal(size=(8, 5)).astype("float32"))  # rank 2: dense features
    reference, fused = _pair(x.shape)
    np.testing.assert_allclose(fused(x, training=True), reference(x, training=True), atol=1e-5)


def test_fused_backbone_computes_what_the_keras_one_does(tmp_path):
    keras.utils.set_random_seed(1)
    plain = build_backbone("resnet18", 32, "none", fused_batch_norm=False)
    fused = build_backbone("resnet18", 32, "none")
    bn = [layer for layer in fused.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bn) == 20 and all(map(is_fused, bn))
    assert not any(map(is_fused, plain.layers))
    fused.set_weights(plain.get_weights())
    x = RNG.normal(size=(4, 32, 32, 3)).astype("float32")
    for training in (False, True):
        np.testing.assert_allclose(
            fused(x, training=training), plain(x, training=training), rtol=1e-3, atol=1e-3
        )
    # The model stays Keras's: its file reloads (unfused) with nothing of this project.
    fused.save(tmp_path / "fused.keras")
    again = keras.saving.load_model(tmp_path / "fused.keras")
    assert not any(map(is_fused, again.layers))
    np.testing.assert_allclose(again(x), fused(x), atol=1e-5)


@pytest.mark.parametrize("step", [0, 5, 40, 5000])
def test_moving_statistics_average_over_no_more_steps_than_training_took(step):
    x = RNG.normal(2.0, 3.0, (4, 5, 6, 7)).astype("float32")
    _, fused = _pair(x.shape, momentum=0.99)
    model = keras.Model(inputs := keras.Input(x.shape[1:]), fused(inputs))
    follow_training_steps(model, tf.Variable(step, dtype="int64"))
    before = fused.moving_mean.numpy(), fused.moving_variance.numpy()
    fused(tf.constant(x), training=True)
    # By hand: TensorFlow's ExponentialMovingAverage(num_updates) rule, Keras's biased variance.
    momentum = min(0.99, (1 + step) / (10 + step))
    mean, variance = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(
        fused.moving_mean.numpy(), momentum * before[0] + (1 - momentum) * mean, rtol=1e-5
    )
    np.testing.assert_allclose(
        fused.moving_variance.numpy(), momentum * before[1] + (1 - momentum) * variance, rtol=1e-4
    )


@pytest.mark.parametrize("training", [True, False])
def test_fused_layer_under_bfloat16_matches_keras(training):
    """Under mixed_bfloat16 the fused kernel takes bfloat16 inputs; Keras's layer casts them to
    float32. Both round the output to bfloat16 (8 bits of mantissa): equal to that rounding."""
    from mura_tf.training.precision import precision

    x = tf.constant(RNG.normal(2.0, 3.0, (4, 5, 6, 7)).astype("float32"))
    with precision("on"):
        reference, fused = _pair(x.shape)
        xb = tf.cast(x, tf.bfloat16)
        want, got = reference(xb, training=training), fused(xb, training=training)
    assert got.dtype == want.dtype == tf.bfloat16
    np.testing.assert_allclose(
        tf.cast(got, tf.float32), tf.cast(want, tf.float32), rtol=2e-2, atol=2e-2
    )
    np.testing.assert_allclose(fused.moving_mean, reference.moving_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        fused.moving_variance, reference.moving_variance, rtol=1e-4, atol=1e-4
    )
