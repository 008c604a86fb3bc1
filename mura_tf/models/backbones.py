"""A small registry of image backbones and the pixel normalisation each was trained with.

`densenet169` and `resnet50` come from `keras.applications`; `resnet18` (which
keras.applications lacks) is keras-hub's `ResNetBackbone` with the `resnet_18_imagenet`
architecture. Every backbone maps `[B, S, S, 3]` normalised images to a feature map
`[B, h, w, C]`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

from mura_tf.compat.fused_batch_norm import fuse_batch_norm
from mura_tf.errors import ConfigError, FieldError

NO_NETWORK_HINT = "use --weights none (random initialisation) or --weights PATH to a local file"


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of the project needs to know about a backbone."""

    name: str
    normalization: str  # see mura_tf.data.normalization
    features: int  # channels of the final feature map
    min_size: int  # smallest input side the architecture accepts
    build: Callable[[int, str | None], keras.Model]  # (image_size, weights) -> backbone

    def check_image_size(self, image_size: int) -> None:
        """Raise `FieldError` (naming `image_size`) below the smallest input this
        architecture accepts: its downsampling must leave a feature map."""
        if image_size < self.min_size:
            raise FieldError(
                "image_size", f"must be at least {self.min_size} for {self.name}, got {image_size}"
            )


def _densenet169(size: int, weights: str | None) -> keras.Model:
    return keras.applications.DenseNet169(
        include_top=False, weights=weights, input_shape=(size, size, 3)
    )


def _resnet50(size: int, weights: str | None) -> keras.Model:
    return keras.applications.ResNet50(
        include_top=False, weights=weights, input_shape=(size, size, 3)
    )


# The architecture of keras-hub's `resnet_18_imagenet` preset (ResNet v1, basic blocks);
# built here so that `--weights none` needs no download. Its 11,186,112 parameters match the
# preset's metadata.
RESNET18_ARCHITECTURE = dict(
    input_conv_filters=[64],
    input_conv_kernel_sizes=[7],
    stackwise_num_filters=[64, 128, 256, 512],
    stackwise_num_blocks=[2, 2, 2, 2],
    stackwise_num_strides=[1, 2, 2, 2],
    block_type="basic_block",
    use_pre_activation=False,
)


def _resnet18(size: int, weights: str | None) -> keras.Model:
    import keras_hub

    if weights == "imagenet":
        return keras_hub.models.ResNetBackbone.from_preset(
            "resnet_18_imagenet", image_shape=(size, size, 3)
        )
    if weights is not None and Path(weights).is_dir():  # a local keras-hub preset
        return keras_hub.models.ResNetBackbone.from_preset(weights, image_shape=(size, size, 3))
    model = keras_hub.models.ResNetBackbone(**RESNET18_ARCHITECTURE, image_shape=(size, size, 3))
    if weights is not None:
        model.load_weights(weights)
    return model


BACKBONES: dict[str, BackboneSpec] = {
    "densenet169": BackboneSpec("densenet169", "imagenet", 1664, 32, _densenet169),
    "resnet50": BackboneSpec("resnet50", "caffe", 2048, 32, _resnet50),
    "resnet18": BackboneSpec("resnet18", "imagenet", 512, 32, _resnet18),
}


def _run_facts(path: Path) -> tuple[str | None, str | None]:
    """The backbone and normalisation of the run a `.keras` file belongs to (its folder's
    `config.json`), where there is one."""
    config_file = path.parent / "config.json"
    if not config_file.is_file():
        return None, None
    try:
        config = json.loads(config_file.read_text())
    except ValueError:
        return None, None
    settings = next((v for v in config.values() if isinstance(v, dict) and "backbone" in v), {})
    return settings.get("backbone"), config.get("normalization")


def _load_saved_backbone(path: Path, name: str, image_size: int) -> keras.Model:
    """A backbone saved as `.keras`, alone (a SimCLR encoder) or inside a classifier (a
    supervised run's `model.keras`), checked against the run that starts from it: the same
    backbone (so the same input normalisation) and the same input size."""
    backbone, normalization = _run_facts(path)
    spec = backbone_spec(name)
    if backbone is not None and backbone != spec.name:
        raise ConfigError(f"{path} holds a {backbone}: pass --backbone {backbone}")
    if normalization is not None and normalization != spec.normalization:
        raise ConfigError(
            f"{path} was trained on {normalization}-normalised images, {spec.name} takes "
            f"{spec.normalization}: start from a run of the same backbone"
        )
    import keras_hub  # noqa: F401 - registers keras-hub classes for deserialisation

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a bad archive
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"cannot load the encoder {path}: {first}") from None
    inner = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.Model) and len(layer.output.shape) == 4
    ]
    if len(model.output.shape) != 4 and inner:  # a classifier: backbone -> pooling -> head
        model = inner[0]
    size = model.input_shape[1]
    if size is not None and size != image_size:
        raise ConfigError(f"the encoder {path} takes {size} px images: pass --image-size {size}")
    return model


def backbone_spec(name: str) -> BackboneSpec:
    """The registry entry for `name`, or a `ConfigError` listing the choices."""
    try:
        return BACKBONES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown backbone {name!r}: use one of {', '.join(BACKBONES)}") from None


def build_backbone(
    name: str, image_size: int, weights: str = "imagenet", fused_batch_norm: bool = True
) -> keras.Model:
    """Build a backbone for square `image_size` inputs.

    Args:
        name: a key of `BACKBONES`.
        image_size: input side in pixels.
        weights: `imagenet` (the library's own loader; needs network once), `none` (random
            initialisation), a path to a weights file (`.h5`/`.weights.h5`; for resnet18 also a
            keras-hub preset folder), or a run of this project to start from, of any dataset:
            a `simclr_pretrain` run (its `encoder.keras`) or a supervised run (the backbone of
            its `model.keras`), checked against `name` and `image_size`.
        fused_batch_norm: compute every batch norm with TensorFlow's fused kernel (same
            results, faster; see `mura_tf.compat.fused_batch_norm.fuse_batch_norm`).
    Returns:
        A `keras.Model` mapping normalised `[B, S, S, 3]` to a feature map `[B, h, w, C]`.
    Raises:
        ConfigError: unknown name, too small an image, missing weights file, or ImageNet weights
            that cannot be fetched.
    """
    spec = backbone_spec(name)
    spec.check_image_size(image_size)
    resolved: str | None
    if weights in ("none", "", None):
        resolved = None
    elif weights == "imagenet":
        resolved = "imagenet"
    else:
        path = Path(os.path.expanduser(str(weights)))
        if not path.exists():
            raise ConfigError(f"weights file not found: {path}; {NO_NETWORK_HINT}")
        resolved = str(path)
        for saved in ("encoder.keras", "model.keras"):  # a pre-training or a supervised run
            if path.is_dir() and (path / saved).is_file():
                path = path / saved
                resolved = str(path)
                break
        if path.suffix == ".keras":
            model = _load_saved_backbone(path, spec.name, image_size)
            return fuse_batch_norm(model) if fused_batch_norm else model
    try:
        model = spec.build(image_size, resolved)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - loaders raise anything from URLError to ValueError
        text = f"{type(e).__name__}: {e}".lower()
        offline = any(
            k in text for k in ("url fetch", "connection", "resolve", "network", "kaggle", "http")
        )
        if resolved == "imagenet" and offline:
            raise ConfigError(
                f"cannot download ImageNet weights for {spec.name} (no network?); {NO_NETWORK_HINT}"
            ) from None
        if resolved not in (None, "imagenet"):
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"cannot load weights {resolved} into {spec.name}: {first}") from None
        raise
    return fuse_batch_norm(model) if fused_batch_norm else model
