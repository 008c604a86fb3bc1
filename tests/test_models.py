import keras
import numpy as np
import pytest

from mura_tf.errors import ConfigError
from mura_tf.models import backbones
from mura_tf.models.backbones import BACKBONES, backbone_spec, build_backbone
from mura_tf.models.heads import build_classifier, classification_head


def test_resnet18_has_the_keras_hub_preset_parameter_count():
    # keras-hub's resnet_18_imagenet preset metadata: "params": 11186112
    assert build_backbone("resnet18", 64, "none").count_params() == 11_186_112


@pytest.mark.parametrize(
    "name, channels", [("resnet18", 512), ("densenet169", 1664), ("resnet50", 2048)]
)
def test_backbones_map_images_to_feature_maps(name, channels):
    model = build_backbone(name, 32, "none")
    out = model(np.zeros((2, 32, 32, 3), np.float32))
    assert out.shape[0] == 2 and out.shape[-1] == channels == BACKBONES[name].features


def test_each_backbone_knows_its_normalisation():
    assert backbone_spec("densenet169").normalization == "imagenet"  # keras "torch" mode
    assert backbone_spec("resnet50").normalization == "caffe"
    assert backbone_spec("resnet18").normalization == "imagenet"  # keras-hub image converter


def test_unknown_backbone_and_tiny_images_are_config_errors():
    with pytest.raises(ConfigError, match="unknown backbone 'vgg16': use one of densenet169"):
        build_backbone("vgg16", 64)
    with pytest.raises(ConfigError, match="^image_size must be at least 32 for resnet18"):
        build_backbone("resnet18", 16, "none")


def test_offline_imagenet_download_is_one_line_suggesting_alternatives(monkeypatch):
    def offline(size, weights):
        raise Exception(
            "URL fetch failure on https://storage.googleapis.com/...: None -- "
            "[Errno -2] Name or service not known"
        )

    spec = backbones.BACKBONES["densenet169"]
    monkeypatch.setitem(
        backbones.BACKBONES, "densenet169", spec.__class__(**{**spec.__dict__, "build": offline})
    )
    with pytest.raises(ConfigError) as e:
        build_backbone("densenet169", 64, "imagenet")
    assert "cannot download ImageNet weights for densenet169" in str(e.value)
    assert "--weights none" in str(e.value) and "\n" not in str(e.value)


def test_weights_from_a_local_file_round_trip(tmp_path):
    keras.utils.set_random_seed(1)
    original = build_backbone("resnet18", 32, "none")
    path = tmp_path / "resnet18.weights.h5"
    original.save_weights(path)
    keras.utils.set_random_seed(2)
    loaded = build_backbone("resnet18", 32, str(path))
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), original(x), atol=1e-5)
    with pytest.raises(ConfigError, match="weights file not found"):
        build_backbone("resnet18", 32, str(tmp_path / "nope.h5"))
    (tmp_path / "bad.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(ConfigError, match="cannot load weights"):
        build_backbone("resnet18", 32, str(tmp_path / "bad.weights.h5"))


def by_hand(model, images: np.ndarray) -> np.ndarray:
    """A `build_classifier` model's probabilities computed outside it: its backbone's feature
    map averaged over positions (NumPy), then each Dense layer of the head as x @ W + b (ReLU
    where the layer has one), and the logistic function."""
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model)
                    and len(layer.output.shape) == 4)  # fmt: skip
    x = np.asarray(backbone(images, training=False), np.float64).mean(axis=(1, 2))
    dense = [layer for layer in model.layers[-1].layers if isinstance(layer, keras.layers.Dense)]
    for layer in dense[:-1]:
        x = np.maximum(x @ np.asarray(layer.kernel) + np.asarray(layer.bias), 0.0)
    logit = x @ np.asarray(dense[-1].kernel) + np.asarray(dense[-1].bias)
    return 1.0 / (1.0 + np.exp(-logit))


@pytest.mark.parametrize(
    "head, trainable", [("linear", 512 + 1), ("mlp", 512 * 512 + 512 + 512 + 1)]
)
def test_frozen_backbone_leaves_only_the_head_trainable(head, trainable):
    model = build_classifier(
        build_backbone("resnet18", 32, "none"), classification_head(head), 32, freeze_backbone=True
    )
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable
    images = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
    probabilities = np.asarray(model(images))
    assert probabilities.shape == (3, 1)
    # By hand: the backbone's features, averaged over positions, through the head's layers.
    np.testing.assert_allclose(probabilities, by_hand(model, images), rtol=1e-5, atol=1e-6)


def test_frozen_backbone_batchnorm_does_not_move_in_training():
    backbone = build_backbone("resnet18", 32, "none")
    model = build_classifier(backbone, classification_head("linear"), 32, freeze_backbone=True)
    before = [w.numpy().copy() for w in backbone.weights]
    model.compile("adam", "binary_crossentropy")
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype(np.float32)
    model.fit(x, np.ones((8, 1)), epochs=1, verbose=0)
    for a, b in zip(before, backbone.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())


def test_seven_way_head_gives_a_distribution():
    model = build_classifier(
        build_backbone("resnet18", 32, "none"), classification_head("mlp", outputs=7), 32
    )
    out = model(np.zeros((2, 32, 32, 3), np.float32)).numpy()
    assert out.shape == (2, 7)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
