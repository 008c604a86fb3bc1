"""Classification heads on pooled backbone features, and the assembled classifier."""

from __future__ import annotations

import keras

from mura_tf.errors import ConfigError

HEADS = ("linear", "mlp")


def classification_head(
    kind: str, outputs: int = 1, hidden: int = 512, dropout: float = 0.0, name: str = "head"
) -> keras.Sequential:
    """`linear`: Dense(outputs). `mlp`: Dense(hidden, relu) + Dense(outputs).

    Report 000's Linear(512,512) + Linear(512,1) names no activation between the layers; two
    stacked linear maps are one linear map, so a ReLU goes between them here.
    Outputs are probabilities: sigmoid for one output, softmax for several, in float32 so that
    mixed precision never rounds them.
    """
    if kind not in HEADS:
        raise ConfigError(f"unknown head {kind!r}: use one of {', '.join(HEADS)}")
    layers: list[keras.layers.Layer] = []
    if kind == "mlp":
        layers.append(keras.layers.Dense(hidden, activation="relu", name="hidden"))
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    activation = "sigmoid" if outputs == 1 else "softmax"
    layers.append(keras.layers.Dense(outputs, activation=activation, dtype="float32", name="out"))
    return keras.Sequential(layers, name=name)


def build_classifier(
    backbone: keras.Model,
    head: keras.Model,
    image_size: int,
    freeze_backbone: bool = False,
    name: str = "classifier",
) -> keras.Model:
    """Backbone -> global average pooling -> head.

    A frozen backbone runs with `training=False`, so its batch-norm statistics stay fixed too
    (the convention of the Keras transfer-learning guide).

    Args:
        backbone: maps `[B, S, S, 3]` to `[B, h, w, C]`.
        head: maps `[B, C]` to `[B, outputs]`.
    Returns:
        A model from normalised images `[B, S, S, 3]` to probabilities `[B, outputs]`.
    """
    backbone.trainable = not freeze_backbone
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = backbone(inputs, training=False) if freeze_backbone else backbone(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    return keras.Model(inputs, head(pooled), name=name)
