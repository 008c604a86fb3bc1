"""The Keras workarounds: what they patch is still there, and the fused kernel really runs."""

import keras
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
