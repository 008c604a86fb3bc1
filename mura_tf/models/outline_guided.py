"""Outline-guided training: an auxiliary head that learns where the fracture is.

The classifier (`heads.build_classifier`: backbone -> pooling -> head) stays what every run
hands over. Beside it, an outline head reads one of the backbone's feature maps at stride
`WHERE_STRIDE` (16 x 16 at 128 px) and predicts, per position, whether it lies inside a
radiologist's fracture outline. Its loss is a per-pixel binary cross-entropy against the film's
mask (`mura_tf.data.masks`, moved with the film by the augmentations), averaged over the films
whose mask is known (every normal film, with an empty mask, and every outlined abnormal one),
and added to the classification loss with the weight `--outline-weight`. The gradient reaches
the backbone's early and middle stages through the outline head, which is what teaches them
where to look; the classification output, its loss and its metrics are those of an unguided
run.

`OutlineGuided` is the Keras model `fit` trains: `call` is the classifier's (so `evaluate`,
`predict` and the dev metrics are unchanged) and `train_step` adds the outline loss. The
outline map is `where_map`'s.
"""

from __future__ import annotations

import keras
import tensorflow as tf

WHERE_STRIDE = 8
OUTLINE_LOSS = "outline_loss"


def feature_at_stride(backbone: keras.Model, image_size: int, stride: int) -> keras.KerasTensor:
    """The last output in `backbone` whose map is `image_size / stride` on a side (the end of
    the stage at that stride)."""
    side = image_size // stride
    found = None
    for layer in backbone.layers:
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None and len(shape) == 4 and shape[1] == side and shape[2] == side:
            found = layer.output
    if found is None:
        raise ValueError(f"{backbone.name} has no feature map of {side} x {side} (stride {stride})")
    return found


def outline_head(channels: int = 64, name: str = "outline_head") -> keras.Sequential:
    """3x3 convolution, ReLU, 1x1 convolution to one logit per position (float32)."""
    return keras.Sequential(
        [
            keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name="conv"),
            keras.layers.Conv2D(1, 1, dtype="float32", name="logit"),
        ],
        name=name,
    )


def outline_loss(mask: tf.Tensor, known: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean per-pixel binary cross-entropy over the films whose mask is known.

    Args:
        mask: float32 `[B, m, m, 1]` in [0, 1], m a multiple of the logits' side.
        known: float32 `[B]`, 1 where the film's mask is known.
        logits: float32 `[B, h, w, 1]`.
    Returns:
        a scalar; 0 for a batch with no known mask.
    """
    side = tf.shape(logits)[1:3]
    target = tf.image.resize(mask, side, method="area")  # the share of each cell inside
    per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
    per_film = tf.reduce_mean(per_pixel, axis=[1, 2, 3])
    return tf.math.divide_no_nan(tf.reduce_sum(per_film * known), tf.reduce_sum(known))


class OutlineGuided(keras.Model):
    """The classifier trained with the outline loss beside its own.

    Args:
        classifier: a `build_classifier` model (its layers are shared, not copied).
        backbone: the classifier's backbone.
        image_size: the input side.
        weight: the outline loss's weight in the total loss.
    """

    def __init__(
        self,
        classifier: keras.Model,
        backbone: keras.Model,
        image_size: int,
        weight: float,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.weight = float(weight)
        stages = keras.Model(
            backbone.inputs,
            [feature_at_stride(backbone, image_size, WHERE_STRIDE), backbone.output],
            name="stages",
        )
        image = keras.Input((image_size, image_size, 3), name="image")
        middle, features = stages(image)
        pooled = classifier.get_layer("pool")(features)
        probability = classifier.layers[-1](pooled)
        self.head = outline_head()
        self.both = keras.Model(image, [probability, self.head(middle)], name="guided")
        self.outline_tracker = keras.metrics.Mean(name=OUTLINE_LOSS)

    def call(self, inputs, training=None):
        images = inputs["image"] if isinstance(inputs, dict) else inputs
        return self.classifier(images, training=training)

    def where_map(self, images: tf.Tensor) -> tf.Tensor:
        """The outline head's probabilities: float32 `[B, S/8, S/8]` for images
        `[B, S, S, 3]` (normalised as the classifier's)."""
        _, logits = self.both(images, training=False)
        return tf.sigmoid(logits[..., 0])

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            probability, logits = self.both(x["image"], training=True)
            loss = self.compute_loss(
                x=x, y=y, y_pred=probability, sample_weight=sample_weight, training=True
            )
            where = outline_loss(x["mask"], x["mask_known"], logits)
            # Keras's own losses come back divided by the replicas (their gradients are
            # summed across replicas); the outline loss is divided the same way.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = loss + self.weight * where / replicas
            self._loss_tracker.update_state(loss * replicas, sample_weight=tf.shape(x["image"])[0])
            self.outline_tracker.update_state(where)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_weights
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return self.compute_metrics(x, y, probability, sample_weight=sample_weight)

    def test_step(self, data):
        logs = super().test_step(data)
        logs.pop(OUTLINE_LOSS, None)  # dev batches carry no masks: nothing was measured
        return logs


def guided_part(model: keras.Model) -> keras.Model:
    """What a run hands over and saves of `model`: the classifier of an `OutlineGuided`
    model, or `model` itself."""
    return model.classifier if isinstance(model, OutlineGuided) else model
