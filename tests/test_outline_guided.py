"""Outline-guided training: masks land where their films land and move with them, and a model
trained with the outline loss points at lesions that a shortcut lets an unguided model ignore."""

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image, ImageDraw

from mura_tf.data.augment_settings import AugmentConfig
from mura_tf.data.fracatlas import Outline
from mura_tf.data.masks import mask_side, outline_mask, outline_masks
from mura_tf.data.pipeline import PipelineConfig, load_image, make_dataset, to_film
from mura_tf.evaluators.localisation import score_map
from mura_tf.models.backbones import build_backbone
from mura_tf.models.heads import build_classifier, classification_head
from mura_tf.models.outline_guided import OUTLINE_LOSS, OutlineGuided, guided_part
from mura_tf.serving.gradcam import film_cams
from mura_tf.training.train import TrainConfig, compile_classifier

pytestmark = pytest.mark.xdist_group("outline_guided")


def _square(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def _film(width: int, height: int, polygon: np.ndarray, path) -> str:
    """A black film, white inside `polygon`, as a PNG."""
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon], fill=255)
    canvas.save(path)
    return str(path)


@pytest.mark.parametrize("keep_aspect", [False, True])
@pytest.mark.parametrize("size", [(200, 100), (90, 240)])
def test_a_mask_covers_what_the_pipeline_makes_of_its_outline(tmp_path, keep_aspect, size):
    # The reference is TensorFlow's own resize (stretch, or resize_with_pad) of a film that is
    # white inside the outline: the mask must cover the same cells.
    width, height = size
    polygon = np.array([[0.1 * width, 0.1 * height], [0.9 * width, 0.3 * height],
                        [0.5 * width, 0.95 * height]])  # fmt: skip
    path = _film(width, height, polygon, tmp_path / "film.png")
    image_size = 64
    film = load_image(tf.constant(path), image_size, keep_aspect).numpy()[..., 0] / 255.0
    side = mask_side(image_size)
    reference = film.reshape(side, image_size // side, side, image_size // side).mean((1, 3))
    mask = outline_mask(Outline((polygon,), (), (width, height)), image_size, keep_aspect) / 255
    inside, drawn = reference > 0.5, mask > 0.5
    assert (inside & drawn).sum() / (inside | drawn).sum() > 0.8
    # ... and lands at the same place: its centre of mass within a tenth of a cell (drawn
    # half a pixel off, it is a fifth of a cell off).
    cells = np.indices(mask.shape).reshape(2, -1)
    for a, b in zip(cells @ reference.ravel() / reference.sum(), cells @ mask.ravel() / mask.sum(),
                    strict=True):  # fmt: skip
        assert abs(a - b) < 0.1
    if keep_aspect:  # the padding holds no mask
        empty = reference.sum(axis=int(width > height)) == 0
        assert not drawn.sum(axis=int(width > height))[empty].any()


def test_masks_of_normal_and_unoutlined_films():
    outline = Outline((_square(10, 10, 20, 20),), ((10, 10, 20, 20),), (40, 40))
    masks, known = outline_masks(
        ["normal.png", "outlined.png", "not_outlined.png"], [0, 1, 1],
        {"outlined.png": outline, "normal.png": outline}, 40, False,
    )  # fmt: skip
    # A normal film's mask is empty even where an outline exists (FracAtlas has none such);
    # an abnormal film without an outline is unknown, not empty.
    assert masks.shape == (3, 10, 10, 1) and masks.dtype == np.uint8
    assert masks[0].max() == 0 and masks[2].max() == 0 and masks[1].max() == 255
    np.testing.assert_array_equal(known, [1, 1, 0])
    # Boxes stand in where a fracture has no polygon.
    boxed = outline_mask(Outline((), ((10, 10, 20, 20),), (40, 40)), 40, False)
    np.testing.assert_array_equal(boxed, outline_mask(outline, 40, False))


def _squares_frame(tmp_path, n: int, size: int, seed: int):
    """`n` black films with one white square each at a random place, and its outline."""
    rng = np.random.default_rng(seed)
    rows, outlines = [], {}
    for i in range(n):
        x0, y0 = rng.integers(4, size - 20, 2)
        polygon = _square(x0, y0, x0 + 16, y0 + 16)
        path = _film(size, size, polygon, tmp_path / f"film{i}.png")
        outlines[path] = Outline((polygon,), ((x0, y0, x0 + 16, y0 + 16),), (size, size))
        rows.append({"path": path, "label": 1, "part": "XR_ELBOW", "study": f"s{i}"})
    return pd.DataFrame(rows), outlines


def test_augmentation_moves_each_mask_with_its_film(tmp_path):
    frame, outlines = _squares_frame(tmp_path, 24, 64, seed=1)
    masks = outline_masks(frame["path"].tolist(), frame["label"].tolist(), outlines, 64, False)
    augment = AugmentConfig(ops=("hflip", "rotate", "translate", "scale"), rotation_degrees=30)
    config = PipelineConfig(image_size=64, normalization="raw", augment=augment)
    ds = make_dataset(
        frame, config, batch_size=8, training=True, seed=3, masks=masks, with_meta=True
    )
    unmoved = dict(zip(frame["path"], masks[0][..., 0] > 127, strict=True))

    def overlap(a: np.ndarray, b: np.ndarray) -> float:
        return (a & b).sum() / max((a | b).sum(), 1)

    seen, moved = 0, 0
    for x, _, meta in ds:
        films = x["image"].numpy()[..., 0] / 255.0
        cells = films.reshape(-1, 16, 4, 16, 4).mean((2, 4)) > 0.5
        drawn = x["mask"].numpy()[..., 0] > 0.5
        paths = [p.decode() for p in meta["path"].numpy()]
        for film, mask, path in zip(cells, drawn, paths, strict=True):
            assert overlap(film, mask) > 0.6
            moved += overlap(film, unmoved[path]) < 0.6
            seen += 1
        np.testing.assert_array_equal(x["mask_known"].numpy(), 1.0)
    # The augmentation did move most squares: masks left where they were would fail above.
    assert seen == 24 and moved >= 12


def _shortcut_films(tmp_path, n: int, size: int, seed: int):
    """Films of noise; an abnormal one has a faint lesion (an 8 px disc) somewhere and a
    bright marker in its top-left corner, which tells the label on its own (as a text marker
    can on real films)."""
    rng = np.random.default_rng(seed)
    rows, outlines = [], {}
    for i in range(n):
        pixels = rng.normal(90, 12, (size, size)).clip(0, 255)
        label = i % 2
        if label:
            cx, cy = rng.integers(20, size - 8, 2)
            yy, xx = np.mgrid[:size, :size]
            pixels[(xx - cx) ** 2 + (yy - cy) ** 2 <= 16] += 60
            pixels[2:12, 2:12] = 255
            box = (cx - 4.0, cy - 4.0, cx + 4.0, cy + 4.0)
            outlines_key = str(tmp_path / f"f{seed}_{i}.png")
            outlines[outlines_key] = Outline((_square(*box),), (box,), (size, size))
        path = tmp_path / f"f{seed}_{i}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        rows.append({"path": str(path), "label": label, "part": "XR_ELBOW", "study": f"{seed}{i}"})
    return pd.DataFrame(rows), outlines


EPOCHS = 5


def _fit(frame, masks, weight: float, size: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    backbone = build_backbone("resnet18", size, None)
    model = build_classifier(backbone, classification_head("linear"), size)
    if weight:
        model = OutlineGuided(model, backbone, size, weight)
    compile_classifier(model, TrainConfig(epochs=EPOCHS, learning_rate=1e-3, patience=0))
    config = PipelineConfig(image_size=size, augment=AugmentConfig(ops=("hflip",)))
    data = make_dataset(
        frame, config, batch_size=16, training=True, masks=masks if weight else None
    )
    history = model.fit(data, epochs=EPOCHS, verbose=0)
    if weight:
        assert history.history[OUTLINE_LOSS][-1] < history.history[OUTLINE_LOSS][0]
    return model


def _mass_and_hits(cams, test: pd.DataFrame, outlines, size: int) -> tuple[float, float]:
    abnormal = test[test["label"] == 1]
    data = np.array([Path(p).read_bytes() for p in abnormal["path"]], dtype=object)
    _, maps, contents = cams(data)
    scores = [
        score_map(to_film(cam, content, (size, size)), outlines[path])
        for path, cam, content in zip(abnormal["path"], maps, contents, strict=True)
    ]
    return float(np.mean([s["mass"] for s in scores])), float(np.mean([s["hit"] for s in scores]))


def test_the_outline_loss_teaches_where_the_lesion_is(tmp_path):
    size = 64
    train, outlines = _shortcut_films(tmp_path, 128, size, seed=0)
    test, test_outlines = _shortcut_films(tmp_path, 32, size, seed=1)
    masks = outline_masks(train["path"].tolist(), train["label"].tolist(), outlines, size, False)
    unguided = _fit(train, masks, 0.0, size)
    guided = _fit(train, masks, 1.0, size)
    classifier = guided_part(guided)
    assert classifier is guided.classifier and len(classifier.outputs) == 1
    # Both learn the label (the marker alone suffices).
    eval_data = make_dataset(test, PipelineConfig(image_size=size), batch_size=16)
    for model in (unguided, classifier):
        p = model.predict(eval_data, verbose=0)[:, 0]
        assert ((p > 0.5) == test["label"].to_numpy()).mean() > 0.9

    def outline_map(images):
        return classifier(images, training=False), guided.where_map(images)

    unguided_mass, unguided_hits = _mass_and_hits(
        film_cams(unguided, "imagenet", size), test, test_outlines, size
    )
    guided_mass, guided_hits = _mass_and_hits(
        film_cams(classifier, "imagenet", size, map_of=outline_map), test, test_outlines, size
    )
    share = 64 / size**2  # the outline (8 x 8 px)'s share of the film
    assert guided_mass > 2 * unguided_mass and guided_mass > 4 * share
    assert guided_hits >= 0.8 > unguided_hits
