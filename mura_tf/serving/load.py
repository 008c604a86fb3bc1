"""A run's exported SavedModel, loaded and called with TensorFlow alone (no Keras model code).

The export's `serve` signature maps raw float32 pixels `[N, S, S, 3]` (0-255, resized as in
training) to abnormality probabilities `[N, 1]`; see `mura_tf.serving.export`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd

from mura_tf.data.pipeline import PipelineConfig, decode_and_resize, make_dataset
from mura_tf.errors import ConfigError
from mura_tf.serving.export import OUTLINE_SIGNATURE


def _load(path: Path):
    """`tf.saved_model.load` with one-line errors; the loaded object owns the variables, so
    whatever calls its functions must keep a reference to it.

    One load per export per process: a run's report, an ensemble's scoring and the commands
    call several of an export's signatures, and each `tf.saved_model.load` re-traces the whole
    function library. An export written again at the same path (a new `saved_model.pb`) is
    loaded afresh."""
    if not (path / "saved_model.pb").is_file():
        raise ConfigError(
            f"{path} is not a SavedModel (no saved_model.pb): pass a run's export/ folder"
        )
    written = (path / "saved_model.pb").stat()
    stamp = (written.st_ino, written.st_mtime_ns, written.st_size)
    try:
        loaded = _load_once(str(path.resolve()), stamp)
    except Exception as e:  # noqa: BLE001 - TensorFlow raises many types for a broken model
        raise ConfigError(f"cannot load the SavedModel {path}: {str(e).splitlines()[0]}") from None
    if getattr(loaded, "serve", None) is None:
        raise ConfigError(f"{path} has no 'serve' endpoint: export it with mura_tf (model.export)")
    return loaded


@functools.lru_cache(maxsize=8)  # a cascade's or an ensemble's members at most, in memory
def _load_once(resolved: str, written: tuple[int, int, int]):
    """The SavedModel at `resolved`, as written at `written` (inode, mtime, size of its
    graph): however the path was spelt, one load."""
    import tensorflow as tf

    return tf.saved_model.load(resolved)


def _image_size(loaded) -> int:
    spec = loaded.serve.input_signature[0]
    spec = spec[0] if isinstance(spec, (list, tuple)) else spec
    return int(spec.shape[1])


def load_serving(path: str | os.PathLike[str]):
    """Load a SavedModel; returns `(serve, image_size)`.

    `serve` maps float32 `[N, S, S, 3]` raw pixels to probabilities `[N, 1]`.
    """
    loaded = _load(Path(path))

    def predict(images):
        # `loaded` owns the variables: the closure keeps it alive as long as `predict` is used.
        return loaded.serve(images)

    return predict, _image_size(loaded)


def predict_frame(
    serve, image_size: int, frame: pd.DataFrame, batch_size: int = 32
) -> pd.DataFrame:
    """Per-image probabilities for catalogue rows; columns path, part, patient, study, label,
    probability."""

    dataset = make_dataset(
        frame, PipelineConfig(image_size=image_size, normalization="raw"), batch_size=batch_size
    )
    probabilities = np.concatenate([np.asarray(serve(images)).reshape(-1) for images, _ in dataset])
    return frame[["path", "part", "patient", "study", "label"]].assign(probability=probabilities)


def find_export(model: str | os.PathLike[str]) -> Path:
    """The SavedModel of `model`: a run folder (its `export/`) or an export itself.

    Raises:
        ConfigError: `model` is neither.
    """
    path = Path(model)
    for candidate in (path, path / "export"):
        if (candidate / "saved_model.pb").is_file():
            return candidate
    if not path.exists():
        raise ConfigError(f"--model {path} does not exist: pass a run folder or its export/")
    raise ConfigError(
        f"--model {path} is neither a finished run folder nor a SavedModel (no saved_model.pb "
        "in it or in its export/): pass a run folder or its export/"
    )


def load_image_serving(model: str | os.PathLike[str]):
    """Load a run's export for encoded films; returns `predict(data)` mapping a string array
    `[N]` of PNG or JPEG bytes to probabilities `[N, 1]`.

    Uses the export's `serve_images` signature; an export written before it existed is served
    by decoding and resizing in this process (`mura_tf.data.pipeline.decode_and_resize`, not
    padding to square) and calling `serve`.
    """
    import tensorflow as tf

    loaded = _load(find_export(model))
    if hasattr(loaded, "serve_images"):

        def predict(data: np.ndarray) -> np.ndarray:
            return loaded.serve_images(tf.constant(data, tf.string)).numpy()

        return predict

    image_size = _image_size(loaded)

    def predict_old(data: np.ndarray) -> np.ndarray:
        films = [decode_and_resize(tf.constant(d), image_size) for d in data]
        return loaded.serve(tf.cast(tf.stack(films), tf.float32)).numpy()

    return predict_old


def load_study_serving(model: str | os.PathLike[str]):
    """For an export that routes each study as a whole (a part-router cascade,
    `mura_tf.runs.cascade`): `predict_study(data)` mapping the encoded films of one study, a string
    array `[N]`, to `(probabilities [N, 1], part)`, `part` the index in `PARTS` of the model
    that scored them. None for an export without the `serve_study_images` signature.
    """
    import tensorflow as tf

    loaded = _load(find_export(model))
    if not hasattr(loaded, "serve_study_images"):
        return None

    def predict_study(data: np.ndarray) -> tuple[np.ndarray, int]:
        out = loaded.serve_study_images(tf.constant(data, tf.string))
        return out["probability"].numpy(), int(out["part"].numpy())

    return predict_study


def load_cam_serving(model: str | os.PathLike[str]):
    """Load a run's export for Grad-CAM; returns `cams(data)` mapping a string array `[N]` of
    encoded films to `(probability [N], cam [N, S, S], content [N, 4])` (see
    `mura_tf.serving.export`).

    Raises:
        ConfigError: the export has no `grad_cam_images` signature (exported before it).
    """
    path = find_export(model)
    return cams_of(_load(path), path)


def load_outline_serving(model: str | os.PathLike[str]):
    """Load the outline head's map from an outline-guided run's export (`--outline-weight`),
    as `load_cam_serving` loads Grad-CAM: `cams(data)` -> `(probability [N], map [N, S, S],
    content [N, 4])`; None for an export without one."""

    return outline_maps_of(_load(find_export(model)))


def outline_maps_of(loaded):
    """`load_outline_serving` of an already loaded export; None without the signature."""
    return _maps_of(loaded, OUTLINE_SIGNATURE) if hasattr(loaded, OUTLINE_SIGNATURE) else None


def load_export(model: str | os.PathLike[str]):
    """The loaded SavedModel of `model` (a run folder or its export), with one-line errors."""
    return _load(find_export(model))


def cams_of(loaded, path: Path):
    """`cams(data)` of the already loaded export at `path` (see `load_cam_serving`).

    Raises:
        ConfigError: the export has no `grad_cam_images` signature (exported before it).
    """
    if not hasattr(loaded, "grad_cam_images"):
        raise ConfigError(
            f"{path} was exported before Grad-CAM was part of the export: run the recipe "
            "with --overwrite to export it again, or leave out --cam"
        )
    return _maps_of(loaded, "grad_cam_images")


def _maps_of(loaded, signature: str):
    """`maps(data)`: encoded films `[N]` -> `(probability [N], map [N, S, S], content [N, 4])`
    through the export's `signature` (`grad_cam_images`, `outline_map_images`)."""
    import tensorflow as tf

    def maps(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # `loaded` is held here: the signature alone would let its variables be collected.
        out = getattr(loaded, signature)(tf.constant(data, tf.string))
        return out["probability"].numpy()[:, 0], out["cam"].numpy(), out["content"].numpy()

    return maps
