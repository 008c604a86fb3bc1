import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from dev_packages import need

from mura_tf.models.losses import contrastive_accuracy, nt_xent


def nt_xent_numpy(z1: np.ndarray, z2: np.ndarray, temperature: float) -> float:
    """The formula written out anchor by anchor, in float64."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    losses = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        others = [j for j in range(2 * n) if j != i]
        logits = np.array([z[i] @ z[j] / temperature for j in others])
        top = logits.max()
        log_denominator = top + math.log(np.exp(logits - top).sum())
        losses.append(log_denominator - z[i] @ z[positive] / temperature)
    return float(np.mean(losses))


@pytest.mark.parametrize(
    "n, d, temperature", [(2, 3, 0.5), (8, 16, 0.1), (32, 128, 0.05), (5, 7, 1.0)]
)
def test_nt_xent_matches_numpy_reference(n, d, temperature):
    rng = np.random.default_rng(n * d)
    z1, z2 = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    ours = float(nt_xent(tf.constant(z1, tf.float32), tf.constant(z2, tf.float32), temperature))
    assert ours == pytest.approx(nt_xent_numpy(z1, z2, temperature), abs=1e-5, rel=1e-5)


@pytest.mark.parametrize("n, d, temperature", [(4, 8, 0.1), (16, 32, 0.5), (64, 128, 0.2)])
def test_nt_xent_is_half_of_keras_cv_simclr_loss(n, d, temperature):
    keras_cv = need("keras_cv")
    rng = np.random.default_rng(d)
    z1, z2 = (tf.constant(rng.normal(size=(n, d)), tf.float32) for _ in range(2))
    reference = float(keras_cv.losses.SimCLRLoss(temperature=temperature)(z1, z2))
    # keras-cv returns loss_a + loss_b per image (the official code's convention): the sum of
    # the two views' losses, i.e. twice the mean over the 2N anchors.
    assert float(nt_xent(z1, z2, temperature)) * 2 == pytest.approx(reference, abs=1e-5, rel=1e-5)


def test_random_unit_vectors_give_about_log_2n_minus_1():
    n = 256
    rng = np.random.default_rng(0)
    z1, z2 = (tf.constant(rng.normal(size=(n, 4096)), tf.float32) for _ in range(2))
    # with near-orthogonal vectors every logit is ~0, so the softmax is uniform over 2N-1
    assert float(nt_xent(z1, z2, temperature=1.0)) == pytest.approx(math.log(2 * n - 1), rel=0.01)


def test_stable_for_a_tiny_temperature_and_float16_inputs():
    rng = np.random.default_rng(1)
    z1 = tf.constant(rng.normal(size=(8, 16)), tf.float16)
    z2 = z1 + tf.constant(rng.normal(size=(8, 16)) * 0.1, tf.float16)
    loss = nt_xent(z1, z2, temperature=0.01)
    assert np.isfinite(float(loss)) and loss.dtype == tf.float32
    reference = nt_xent_numpy(z1.numpy().astype(np.float64), z2.numpy().astype(np.float64), 0.01)
    assert float(loss) == pytest.approx(reference, rel=1e-3, abs=1e-3)


def test_identical_views_are_ranked_first():
    z = tf.constant(np.random.default_rng(2).normal(size=(10, 32)), tf.float32)
    assert float(contrastive_accuracy(z, z)) == 1.0
    assert float(nt_xent(z, z, 0.05)) < 0.1


DISTRIBUTED = textwrap.dedent(
    """
    import json, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from mura_tf.models.losses import nt_xent
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    rng = np.random.default_rng(0)
    z1 = rng.normal(size=(8, 6)).astype("float32"); z2 = rng.normal(size=(8, 6)).astype("float32")
    w0 = rng.normal(size=(6, 6)).astype("float32")
    with strategy.scope():
        w = tf.Variable(w0)
    def replica_fn():
        ctx = tf.distribute.get_replica_context()
        i = ctx.replica_id_in_sync_group
        a = tf.gather(z1, tf.range(4) + 4 * i); b = tf.gather(z2, tf.range(4) + 4 * i)
        with tf.GradientTape() as tape:
            loss = nt_xent(a @ w, b @ w, 0.2)
            scaled = loss / ctx.num_replicas_in_sync  # what the SimCLR train step does
        grad = ctx.all_reduce("sum", tape.gradient(scaled, w))
        return loss, grad
    losses, grads = strategy.run(tf.function(replica_fn))
    per_replica = [float(x) for x in strategy.experimental_local_results(losses)]
    grad = strategy.experimental_local_results(grads)[0].numpy()
    w1 = tf.Variable(w0)
    with tf.GradientTape() as tape:
        single = nt_xent(z1 @ w1, z2 @ w1, 0.2)
    print(json.dumps({"per_replica": per_replica, "single": float(single),
                      "grad_error": float(np.abs(grad - tape.gradient(single, w1).numpy()).max())}))
    """
)


def test_under_mirrored_strategy_negatives_come_from_the_global_batch():
    # Logical CPU devices must be configured before TensorFlow starts: a fresh process.
    result = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert np.mean(out["per_replica"]) == pytest.approx(out["single"], rel=1e-5)
    assert out["per_replica"][0] != pytest.approx(out["per_replica"][1])  # really split
    assert out["grad_error"] < 1e-5
