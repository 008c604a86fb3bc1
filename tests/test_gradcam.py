"""Grad-CAM: equal to a hand computation, defined on every backbone, and it finds the lesion
that the synthetic generator drew (its box is in `lesions.csv`)."""

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from mura_tf.data.fracatlas import Outline
from mura_tf.data.mura import load_mura
from mura_tf.data.pipeline import PipelineConfig, make_dataset, to_film
from mura_tf.data.synthetic import LESIONS_FILE, SyntheticConfig, generate_synthetic
from mura_tf.evaluators.localisation import localisation_metrics, score_films
from mura_tf.models.backbones import build_backbone
from mura_tf.models.heads import build_classifier, classification_head
from mura_tf.serving.export import export_savedmodel
from mura_tf.serving.gradcam import grad_cam
from mura_tf.serving.load import load_cam_serving


def tiny_backbone(size: int) -> keras.Model:
    """Three convolutions; at 64 px a 16 x 16 feature map, fine enough to localise."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPool2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPool2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    return keras.Model(inputs, x, name="tiny")


def test_grad_cam_equals_a_hand_computation():
    keras.utils.set_random_seed(1)
    model = build_classifier(tiny_backbone(32), classification_head("mlp", hidden=8), 32)
    images = tf.random.uniform((3, 32, 32, 3))
    probability, cam = grad_cam(model, images)

    # By hand: d logit / dA = (d p / dA) / (p (1 - p)) for p = sigmoid(logit), through the
    # model's own layers rather than grad_cam's logit.
    backbone, pool, head = model.get_layer("tiny"), model.get_layer("pool"), model.layers[-1]
    with tf.GradientTape() as tape:
        features = backbone(images)
        tape.watch(features)
        p = head(pool(features))
    dp = tape.gradient(p, features).numpy()
    p = p.numpy()
    d_logit = dp / (p * (1 - p))[:, :, None, None]
    weights = d_logit.mean(axis=(1, 2), keepdims=True)
    expected = np.maximum((weights * features.numpy()).sum(axis=-1), 0)
    np.testing.assert_allclose(probability.numpy(), model(images).numpy(), atol=1e-6)
    np.testing.assert_allclose(cam.numpy(), expected, atol=1e-5)
    assert cam.shape == (3, 8, 8) and expected.max() > 0


@pytest.mark.parametrize("name, side", [("resnet18", 2), ("resnet50", 2), ("densenet169", 2)])
def test_grad_cam_takes_each_backbones_last_feature_map(name, side):
    model = build_classifier(build_backbone(name, 64, "none"), classification_head("linear"), 64)
    images = tf.random.uniform((2, 64, 64, 3))
    probability, cam = grad_cam(model, images)
    assert cam.shape == (2, side, side) and bool(tf.reduce_all(cam >= 0))
    np.testing.assert_allclose(probability.numpy(), model(images).numpy(), atol=1e-5)


def lesion_mass(export, views: pd.DataFrame) -> tuple[float, float]:
    """Mean share of the Grad-CAM mass inside the lesion's box, and mean share of the film the
    box covers, over `views` (the export's `grad_cam_images`, mapped back onto each film)."""
    loaded = tf.saved_model.load(str(export))
    masses, shares = [], []
    for row in views.itertuples():
        out = loaded.grad_cam_images(tf.constant([Path(row.path).read_bytes()]))
        height, width = np.asarray(Image.open(row.path)).shape[:2]
        heat = to_film(out["cam"].numpy()[0], out["content"].numpy()[0], (height, width))
        x0, y0, x1, y1 = (int(round(v)) for v in (row.x0, row.y0, row.x1, row.y1))
        masses.append(heat[y0:y1, x0:x1].sum() / max(heat.sum(), 1e-9))
        shares.append((y1 - y0) * (x1 - x0) / (height * width))
    return float(np.mean(masses)), float(np.mean(shares))


@pytest.mark.slow
def test_grad_cam_of_a_trained_model_finds_the_lesion(tmp_path):
    """A small CNN trained on study labels for 25 epochs (64 px) puts several times the box's
    share of its Grad-CAM mass inside the lesion's box, averaged over the abnormal test views;
    the same network untrained does not (measured: 5.8x trained, 0.1x untrained). The
    project's localisation scoring, given the boxes as outlines, tells them apart too: pointing
    game 0.81 trained against a chance level of 0.28, 0.15 untrained (27 films)."""
    root = tmp_path / "data"
    config = SyntheticConfig(patients_per_part=40, valid_patients_per_part=12, min_side=96,
                             max_side=192, parts=("XR_FOREARM", "XR_HUMERUS"), seed=5)  # fmt: skip
    generate_synthetic(root, config)
    frame = load_mura(root)
    boxes = pd.read_csv(root / "MURA-v1.1" / LESIONS_FILE)
    boxes["path"] = [str(root / p) for p in boxes["path"]]
    views = frame[frame["split"] == "valid"].merge(boxes, on="path")
    assert len(views) >= 15 and set(views["kind"]) == {"hardware", "fracture"}

    keras.utils.set_random_seed(0)
    model = build_classifier(tiny_backbone(64), classification_head("linear"), 64)
    untrained = export_savedmodel(model, "unit", 64, tmp_path / "untrained")
    model.compile(keras.optimizers.Adam(2e-3), "binary_crossentropy", metrics=["auc"])
    train = make_dataset(
        frame[frame["split"] == "train"], PipelineConfig(image_size=64, normalization="unit"),
        batch_size=16, training=True, seed=0,
    )  # fmt: skip
    history = model.fit(train, epochs=25, verbose=0)
    assert history.history["auc"][-1] > 0.7  # it learned
    trained = export_savedmodel(model, "unit", 64, tmp_path / "trained")

    mass, share = lesion_mass(trained, views)
    assert mass / share > 3, (mass, share)
    mass, share = lesion_mass(untrained, views)
    assert mass / share < 1.5, (mass, share)

    # The project's localisation scoring (the boxes standing in for radiologists' outlines)
    # tells the two apart the same way, and by the pointing game too.
    outlines = {
        row.path: Outline((), ((row.x0, row.y0, row.x1, row.y1),), Image.open(row.path).size)
        for row in views.itertuples()
    }
    films = views.assign(label=1, probability=0.5)
    scored = {
        name: localisation_metrics(score_films(films, outlines, load_cam_serving(export)))
        for name, export in (("trained", trained), ("untrained", untrained))
    }
    good, bad = scored["trained"], scored["untrained"]
    assert good["films"] == bad["films"] == len(views)
    assert good["mass_in_outline"] / good["outline_share"] > 3
    assert bad["mass_in_outline"] / bad["outline_share"] < 1.5
    assert good["pointing_hit_rate"] > 2 * good["pointing_chance"]
    assert bad["pointing_hit_rate"] < 1.5 * bad["pointing_chance"]
