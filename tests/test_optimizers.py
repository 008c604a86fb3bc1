import math

import keras
import numpy as np
import pytest

from mura_tf.training.optimizers import LARS, scaled_learning_rate, warmup_cosine


def test_lars_matches_a_hand_computed_update_over_two_steps():
    w = keras.Variable(np.array([[3.0, 4.0]], np.float32))  # ||w|| = 5
    optimizer = LARS(learning_rate=0.5, momentum=0.9, weight_decay=0.1, trust_coefficient=0.001)
    g = np.array([[0.6, 0.8]], np.float32)

    # step 1: g' = g + 0.1 w = [0.9, 1.2], ||g'|| = 1.5, trust = 0.001 * 5 / 1.5
    optimizer.apply([g], [w])
    trust = 0.001 * 5 / 1.5
    v1 = 0.5 * trust * np.array([0.9, 1.2])
    w1 = np.array([3.0, 4.0]) - v1
    np.testing.assert_allclose(w.numpy()[0], w1, rtol=1e-6)

    # step 2: momentum carries v1 over
    optimizer.apply([g], [w])
    g2 = np.array([0.6, 0.8]) + 0.1 * w1
    trust2 = 0.001 * np.linalg.norm(w1) / np.linalg.norm(g2)
    v2 = 0.9 * v1 + 0.5 * trust2 * g2
    np.testing.assert_allclose(w.numpy()[0], w1 - v2, rtol=1e-6)


def test_lars_leaves_biases_to_plain_momentum_sgd():
    b = keras.Variable(np.array([1.0, -2.0], np.float32))
    optimizer = LARS(learning_rate=0.1, momentum=0.9, weight_decay=0.5)
    g = np.array([0.5, 0.5], np.float32)
    optimizer.apply([g], [b])
    optimizer.apply([g], [b])
    # no decay, no trust ratio: v1 = 0.05, v2 = 0.9 * 0.05 + 0.05
    np.testing.assert_allclose(b.numpy(), [1.0 - 0.05 - 0.095, -2.0 - 0.05 - 0.095], rtol=1e-6)


def test_lars_zero_weights_use_trust_one():
    w = keras.Variable(np.zeros((2, 2), np.float32))
    LARS(learning_rate=0.1, weight_decay=0.0).apply([np.ones((2, 2), np.float32)], [w])
    np.testing.assert_allclose(w.numpy(), -0.1 * np.ones((2, 2)), rtol=1e-6)


def test_lars_round_trips_through_config_and_trains_a_model(tmp_path):
    # no bias: a bias gets plain momentum SGD, which a LARS-sized rate would blow up
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(LARS(learning_rate=20.0, weight_decay=1e-6), "mse")  # steps are ~lr * 0.001 * |w|
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=20, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before / 2
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras").optimizer
    assert isinstance(restored, LARS) and restored.trust_coefficient == 0.001


def test_learning_rate_scaling_rules():
    assert scaled_learning_rate(0.3, 512) == pytest.approx(0.6)
    assert scaled_learning_rate(0.075, 256, "sqrt") == pytest.approx(0.075 * 16)


def test_warmup_then_cosine():
    schedule = warmup_cosine(peak=1.0, total_steps=100, warmup_steps=10)
    assert float(schedule(0)) == pytest.approx(0.0)
    assert float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(55)) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)), rel=1e-5)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-6)
