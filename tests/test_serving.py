"""The export's two signatures: `serve` (pixels) and `serve_images` (encoded films), checked in
a fresh process that never imports mura_tf, against the project's own pipeline."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mura_tf.data.pipeline import load_image
from mura_tf.models.heads import build_classifier, classification_head
from mura_tf.serving.export import export_savedmodel

SIZE = 32
# Every PNG mode MURA mixes, and a JPEG, at sizes MURA has (117-512 px, any aspect ratio).
FILMS = [
    ("L", (117, 512), "png"), ("LA", (300, 120), "png"), ("RGB", (64, 64), "png"),
    ("RGBA", (200, 150), "png"), ("I;16", (90, 240), "png"), ("L", (256, 180), "jpg"),
]  # fmt: skip


def write_film(path, mode, size, seed):
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)).save(path)
        return
    pixels = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    Image.fromarray(pixels, "RGBA").convert(mode).save(path)


def tiny_classifier():
    """What the recipes export (backbone -> pooling -> head), at toy size."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    backbone = keras.Model(inputs, features, name="tiny")
    return build_classifier(backbone, classification_head("linear"), SIZE)


# Runs in a fresh interpreter: TensorFlow alone, as a server would.
FRESH = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    data = tf.constant([open(p, "rb").read() for p in sys.argv[3:]])
    out = loaded.serve_images(data).numpy()
    default = loaded.signatures["serve_images"](images=data)
    np.save(sys.argv[2], out)
    print(json.dumps({"mura_tf": any(m.startswith("mura_tf") for m in sys.modules),
                      "shape": list(out.shape), "keys": list(default)}))
    """
)


@pytest.mark.parametrize("keep_aspect", [False, True])
def test_serve_images_equals_the_pipeline_then_serve_in_a_fresh_process(tmp_path, keep_aspect):
    paths = []
    for i, (mode, size, kind) in enumerate(FILMS):
        path = tmp_path / f"film{i}.{kind}"
        write_film(path, mode, size, seed=i)
        paths.append(str(path))
    export = export_savedmodel(
        tiny_classifier(), "imagenet", SIZE, tmp_path / "export", keep_aspect=keep_aspect
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", FRESH, str(export), str(tmp_path / "out.npy"), *paths],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts == {"mura_tf": False, "shape": [len(paths), 1], "keys": facts["keys"]}
    from_bytes = np.load(tmp_path / "out.npy")

    pixels = np.stack([load_image(p, SIZE, keep_aspect).numpy() for p in paths])
    loaded = tf.saved_model.load(str(export))  # owns the variables: keep it while serving
    expected = loaded.serve(tf.constant(pixels, tf.float32)).numpy()
    np.testing.assert_allclose(from_bytes, expected, atol=1e-5)
    assert np.ptp(expected) > 1e-4  # the films differ, so a constant output would fail


def test_saved_model_cli_lists_the_signatures(tmp_path):
    export = export_savedmodel(tiny_classifier(), "imagenet", SIZE, tmp_path / "export")
    cli = shutil.which("saved_model_cli")
    command = [cli] if cli else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    shown = subprocess.run(
        [*command, "show", "--dir", str(export), "--all"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = shown.stdout
    for name in ("serving_default", "serve", "serve_images", "grad_cam_images"):
        assert f"signature_def['{name}']" in text, name
    assert "dtype: DT_STRING" in text and "shape: (-1)" in text  # serve_images takes bytes
    assert f"shape: (-1, {SIZE}, {SIZE}, 3)" in text  # serve takes pixels


def test_an_export_loads_once_and_afresh_once_written_again(tmp_path):
    """The reports and ensembles call several signatures of one export: it is loaded once per
    process. An export written again at the same path (a resumed or repeated run) is the new
    model, never the one loaded before."""
    from mura_tf.serving.load import _load, load_serving

    pixels = np.random.default_rng(0).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    first = tiny_classifier()
    export = export_savedmodel(first, "imagenet", SIZE, tmp_path / "export")
    assert _load(export) is _load(export)
    assert _load(Path(os.path.relpath(export))) is _load(export)  # any spelling of it
    serve, _ = load_serving(export)
    before = serve(tf.constant(pixels)).numpy()

    second = tiny_classifier()
    second.set_weights([w * 1.5 + 0.1 for w in first.get_weights()])
    export_savedmodel(second, "imagenet", SIZE, tmp_path / "export")
    serve, _ = load_serving(export)
    after = serve(tf.constant(pixels)).numpy()
    fresh = tf.saved_model.load(str(export))  # owns the variables: keep it while calling
    expected = fresh.serve(tf.constant(pixels)).numpy()
    np.testing.assert_allclose(after, expected, atol=1e-6)
    assert np.abs(after - before).max() > 1e-3  # the second model answers, not the first
