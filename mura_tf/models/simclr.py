"""The SimCLR model: encoder + projection head, trained by a custom step through `fit`."""

from __future__ import annotations

import keras
import tensorflow as tf

from mura_tf.models.losses import contrastive_accuracy, nt_xent


def projection_head(
    width: int, layers: int = 3, out_dim: int = 128, name: str = "projection"
) -> keras.Sequential:
    """The official SimCLR head: `layers` x (Dense without bias + BatchNorm), ReLU between,
    the last one `out_dim` wide with no ReLU (and no BN offset)."""
    if layers < 1:
        raise ValueError("the projection head needs at least one layer")
    stack: list[keras.layers.Layer] = []
    for i in range(layers):
        last = i == layers - 1
        stack.append(keras.layers.Dense(out_dim if last else width, use_bias=False))
        stack.append(keras.layers.BatchNormalization(center=not last))
        if not last:
            stack.append(keras.layers.ReLU())
    return keras.Sequential(stack, name=name)


@keras.saving.register_keras_serializable(package="mura_tf")
class SimCLR(keras.Model):
    """Contrastive pre-training model.

    `fit` feeds it batches `(view_1, view_2)` ([B, S, S, 3] each); both views go through the
    encoder in one batch (so batch norm sees 2B images, as in the official code), the projections
    are compared with NT-Xent, and the step logs `loss` and `contrastive_accuracy`.

    Args:
        backbone: images `[B, S, S, 3]` -> feature map `[B, h, w, C]` (saved alone afterwards).
        projection_layers: depth of the projection head (2 or 3 in the official code).
        temperature: NT-Xent temperature.
    """

    def __init__(
        self,
        backbone: keras.Model,
        projection_layers: int = 3,
        out_dim: int = 128,
        temperature: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.projector = projection_head(int(backbone.output.shape[-1]), projection_layers, out_dim)
        self.temperature = temperature
        self.projection_layers = projection_layers
        self.out_dim = out_dim
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="contrastive_accuracy")

    def encode(self, images, training=False):
        """Pooled representation `[B, C]` (what fine-tuning and probes use)."""
        return self.pool(self.backbone(images, training=training))

    def call(self, images, training=False):
        return self.projector(self.encode(images, training=training), training=training)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "projection_layers": self.projection_layers,
            "out_dim": self.out_dim,
            "temperature": self.temperature,
        }

    @classmethod
    def from_config(cls, config: dict) -> SimCLR:
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def _project_pair(self, data, training):
        view_1, view_2 = data
        z = self(tf.concat([view_1, view_2], 0), training=training)
        return tf.split(z, 2, axis=0)

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z1, z2 = self._project_pair(data, training=True)
            loss = nt_xent(z1, z2, self.temperature)
            # Gradients are summed over replicas; dividing by their number makes the sum the
            # gradient of the global-batch loss (Keras does the same for built-in losses).
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
            # Under mixed_float16 compile wraps the optimizer in a LossScaleOptimizer, whose
            # apply() unscales: the loss must be scaled to match (a no-op otherwise).
            scaled = self.optimizer.scale_loss(scaled)
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        return self._log(loss, z1, z2)

    def test_step(self, data):
        z1, z2 = self._project_pair(data, training=False)
        return self._log(nt_xent(z1, z2, self.temperature), z1, z2)

    def _log(self, loss, z1, z2):
        self.loss_tracker.update_state(loss)
        self.accuracy_tracker.update_state(contrastive_accuracy(z1, z2))
        return {m.name: m.result() for m in self.metrics}
