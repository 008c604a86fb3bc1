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
    from mura_tf.precision import precision

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
