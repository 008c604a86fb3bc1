"""The Keras workarounds: what they patch is still there, and the fused kernel really runs."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer

from mura_tf.compat import KerasCompatError, distributed_fit, fused_batch_norm
from mura_tf.models.backbones import build_backbone
from mura_tf.models.heads import build_classifier, classification_head


def op_types(function, *specs) -> set[str]:
    graph = function.get_concrete_function(*specs).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize(
    "name, policy",
    [("resnet18", "float32"), ("densenet169", "float32"), ("resnet18", "mixed_bfloat16")],
)
def test_a_traced_training_step_runs_the_fused_batch_norm_kernels(name, policy):
    from mura_tf.training.precision import precision

    with precision("off" if policy == "float32" else "on") as chosen:
        assert chosen == policy  # no GPU here: "on" is bfloat16
        model = build_classifier(
            build_backbone(name, 32, "none"), classification_head("linear"), 32
        )
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    loss_fn = keras.losses.BinaryCrossentropy()

    @tf.function
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        return tape.gradient(loss, model.trainable_variables)

    specs = tf.TensorSpec([2, 32, 32, 3], tf.float32), tf.TensorSpec([2, 1], tf.float32)
    graph = train_step.get_concrete_function(*specs).graph
    ops = {op.type for op in graph.get_operations()}
    assert {"FusedBatchNormV3", "FusedBatchNormGradV3"} <= ops
    fused = [op for op in graph.get_operations() if op.type == "FusedBatchNormV3"]
    want = tf.bfloat16 if policy == "mixed_bfloat16" else tf.float32
    assert {op.get_attr("T") for op in fused} == {want.as_datatype_enum}
    # Keras's unfused computation would show up as moments (Mean of SquaredDifference).
    assert "SquaredDifference" not in ops


def test_a_keras_that_no_longer_dispatches_to_the_fused_call_is_a_one_line_error(monkeypatch):
    keras_call = keras.layers.BatchNormalization.__call__

    def unswappable_call(self, *args, **kwargs):  # a Keras that looks up `call` on the class
        self.__dict__.pop("call", None)
        return keras_call(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.BatchNormalization, "__call__", unswappable_call)
    monkeypatch.setattr(fused_batch_norm, "_dispatch_checked", False)
    with pytest.raises(KerasCompatError, match=f"Keras {keras.__version__}") as error:
        build_backbone("resnet18", 32, "none")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "target, replacement, message",
    [
        ("reduce_per_replica", lambda values, strategy: values, r"now takes \(values, strategy\)"),
        ("reduce_per_replica", None, "no longer exists"),
    ],
)
def test_distributed_fit_fix_checks_its_targets(monkeypatch, target, replacement, message):
    if replacement is None:
        monkeypatch.delattr(tf_trainer, target)
    else:
        monkeypatch.setattr(tf_trainer, target, replacement)
    with pytest.raises(KerasCompatError, match=message) as error:
        distributed_fit.apply()
    text = str(error.value)
    assert "keras-team/keras#20585" in text and keras.__version__ in text and "\n" not in text


def test_distributed_fit_fix_defers_to_keras_without_a_strategy():
    distributed_fit.apply()

    class Trainer:
        _distribute_strategy = None

    original = tf_trainer.TensorFlowTrainer._maybe_symbolic_build.__wrapped_by_mura_tf__
    fixed = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    assert fixed(Trainer(), iterator=None, data_batch=1) is None
    assert original(Trainer(), iterator=None, data_batch=1) is None  # Keras defers building
    values = {"loss": tf.constant(1.0)}
    reduced = tf_trainer.reduce_per_replica(values, tf.distribute.get_strategy(), "auto")
    assert float(reduced["loss"]) == 1.0


def test_the_single_trace_export_writes_what_keras_writes(tmp_path):
    from mura_tf.compat.export_archive import write_savedmodel

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    spec = [tf.TensorSpec([None, 3], tf.float32)]

    def archive():
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda x: model(x), input_signature=spec)
        archive.add_endpoint("double", lambda x: 2 * model(x), input_signature=spec)
        return archive

    archive().write_out(str(tmp_path / "keras"), verbose=False)
    write_savedmodel(archive(), tmp_path / "once")
    keras_way, once = (tf.saved_model.load(str(tmp_path / n)) for n in ("keras", "once"))
    assert (
        set(once.signatures) == set(keras_way.signatures) == {"serve", "double", "serving_default"}
    )
    x = tf.constant([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    for name in ("serve", "double", "serving_default"):
        (a,) = keras_way.signatures[name](x).values()
        (b,) = once.signatures[name](x).values()
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(once.double(x).numpy(), 2 * model(x).numpy())
    assert len(once.variables) == len(keras_way.variables) == 4
    with pytest.raises(KerasCompatError, match="ExportArchive has no _tf_trackable"):
        write_savedmodel(object(), tmp_path / "never")


def _small_model() -> keras.Model:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def _fit_weights(make_optimizer, fused: bool, steps: int = 6) -> list[np.ndarray]:
    from mura_tf.compat.fused_adam import fuse_adam, is_fused

    model = _small_model()
    optimizer = make_optimizer()
    if fused:
        fuse_adam(optimizer)
    assert is_fused(optimizer) == fused
    model.compile(optimizer, keras.losses.BinaryCrossentropy())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 2, size=(16, 1)).astype("float32")
    model.fit(x, y, batch_size=8, epochs=steps // 2, shuffle=False, verbose=0)
    assert int(optimizer.iterations) == steps
    return [np.asarray(w) for w in model.weights + optimizer.variables]


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda: keras.optimizers.Adam(0.01),
        lambda: keras.optimizers.Adam(
            keras.optimizers.schedules.PiecewiseConstantDecay([2], [0.01, 0.001])
        ),
        lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
        lambda: keras.optimizers.Adam(0.01, amsgrad=True),  # Keras's own code: no kernel for it
    ],
    ids=["adam", "schedule", "adamw", "amsgrad"],
)
def test_fused_adam_trains_as_keras_adam_does(make_optimizer):
    """Weights, moments and step counter after six steps, against Keras's own Adam."""
    keras_weights = _fit_weights(make_optimizer, fused=False)
    fused_weights = _fit_weights(make_optimizer, fused=True)
    assert len(fused_weights) == len(keras_weights)
    for fused, reference in zip(fused_weights, keras_weights, strict=True):
        # A step moves a weight by up to the rate, 1e-2; the two round differently.
        np.testing.assert_allclose(fused, reference, rtol=1e-5, atol=1e-6)
    moved = [
        not np.allclose(a, b)
        for a, b in zip(keras_weights, _fit_weights(make_optimizer, False, 2), strict=True)
    ]
    assert any(moved)  # the comparison is of weights that training changed


def test_fused_adam_computes_adam_in_float64_to_float32_rounding():
    """Five updates with gradients of every scale from 1e-8 to 1, against Adam in numpy."""
    from mura_tf.compat.fused_adam import fuse_adam

    rng = np.random.default_rng(0)
    start = rng.normal(size=1000)
    grads = [rng.normal(size=1000) * 10.0 ** rng.uniform(-8, 0, 1000) for _ in range(5)]
    weights, m, v = start.copy(), np.zeros(1000), np.zeros(1000)
    for t, g in enumerate(grads, start=1):
        m += (g - m) * (1 - 0.9)
        v += (g * g - v) * (1 - 0.999)
        weights -= 0.01 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
    variable = keras.Variable(start.astype("float32"))
    optimizer = fuse_adam(keras.optimizers.Adam(0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7))
    for g in grads:
        optimizer.apply([tf.constant(g, tf.float32)], [variable])
    assert optimizer._mura_tf_fused_updates == 5
    moved = np.abs(weights - start)
    assert moved.max() > 0.04  # five steps of up to 0.01 each
    np.testing.assert_allclose(np.asarray(variable), weights, rtol=0, atol=2e-6)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_a_compiled_training_step_runs_the_fused_adam_kernel(policy):
    """Also under mixed_float16, where `compile` wraps Adam in a LossScaleOptimizer that
    applies the update inside a `tf.cond` (a nested function of the graph)."""
    from mura_tf.training.train import TrainConfig, compile_classifier

    keras.mixed_precision.set_global_policy(policy)
    try:
        model = compile_classifier(_small_model(), TrainConfig(optimizer="adam"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    wrapped = policy == "mixed_float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == wrapped

    @tf.function
    def train_step(images, labels):  # what Model.fit traces
        return model.train_step((images, labels))

    specs = tf.TensorSpec([2, 8, 8, 3], tf.float32), tf.TensorSpec([2, 1], tf.float32)
    graph = train_step.get_concrete_function(*specs).graph
    ops = [op.type for op in graph.get_operations()]
    for function in graph._functions.values():
        ops += [node.op for node in function.definition.node_def]
    assert ops.count("ResourceApplyAdam") == len(model.trainable_variables) == 4
    # Keras's own update would square each gradient and take square roots.
    assert "Sqrt" not in ops and "Square" not in ops


def test_a_keras_whose_adam_no_longer_dispatches_to_the_fused_update_is_a_one_line_error(
    monkeypatch,
):
    from mura_tf.compat import fused_adam

    def keras_update_step_only(self, grads, variables, learning_rate):  # looks up the class's
        for grad, variable in zip(grads, variables, strict=True):
            type(self).update_step(self, grad, variable.value, learning_rate)

    monkeypatch.setattr(keras.optimizers.Adam, "_backend_update_step", keras_update_step_only)
    monkeypatch.setattr(fused_adam, "_dispatch_checked", False)
    with pytest.raises(KerasCompatError, match=f"Keras {keras.__version__}") as error:
        fused_adam.fuse_adam(keras.optimizers.Adam())
    assert "keras-team/keras#19307" in str(error.value) and "\n" not in str(error.value)


def test_a_resumed_fit_replays_the_iterators_of_the_epochs_done():
    """`fit` resumed at epoch k after `replay_epochs(data, k)` ends with the weights of an
    uninterrupted `fit` over a reshuffled dataset, and without the replay it does not: the
    count of iterators per epoch (`ITERATORS_PER_EPOCH`) is still the installed Keras's."""
    from mura_tf.compat.epoch_iterators import replay_epochs

    def data():
        keras.utils.set_random_seed(0)
        x = np.arange(32, dtype="float32")[:, None]
        return (
            tf.data.Dataset.from_tensor_slices((x, 2 * x + 1))
            .shuffle(32, seed=1, reshuffle_each_iteration=True)
            .batch(8)
        )

    def model(weights=None):
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        m.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
        if weights is not None:
            m.set_weights(weights)
        return m

    uninterrupted = model()
    uninterrupted.fit(data(), epochs=4, verbose=0)
    first = model()
    first.fit(data(), epochs=2, verbose=0)  # SGD without momentum: the weights are the state

    def resumed(replay: bool) -> list:
        again = model(first.get_weights())
        batches = data()
        if replay:
            replay_epochs(batches, 2)
        again.fit(batches, epochs=4, initial_epoch=2, verbose=0)
        return again.get_weights()

    for got, want in zip(resumed(True), uninterrupted.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(resumed(False)[0], uninterrupted.get_weights()[0])
