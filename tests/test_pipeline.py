import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from mura_tf.data.augment import (
    affine_matrix,
    affine_transform,
    augment_batch,
    autocontrast,
)
from mura_tf.data.augment_settings import AugmentConfig
from mura_tf.data.mura import load_mura
from mura_tf.data.normalization import normalize
from mura_tf.data.pipeline import (
    PipelineConfig,
    batch_pixels,
    decode_and_resize,
    decode_png,
    load_image,
    make_dataset,
    resize,
)
from mura_tf.errors import ConfigError

# Module fixtures: these tests stay on one pytest-xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("pipeline")

RNG = np.random.default_rng(0)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P"])
def test_decode_matches_pillow_for_every_8bit_mode(mode):
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1}[mode]
    arr = RNG.integers(0, 256, (13, 17, channels), dtype=np.uint8)
    image = Image.fromarray(arr[..., 0] if channels == 1 else arr, "L" if channels == 1 else mode)
    if mode == "P":
        image = image.convert("P")
    data = png_bytes(image)
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    decoded = decode_png(tf.constant(data)).numpy()
    assert decoded.dtype == np.uint8 and decoded.shape == (13, 17, 3)
    np.testing.assert_array_equal(decoded, reference)


def test_decode_16bit_keeps_the_high_byte():
    arr = RNG.integers(0, 65536, (9, 11), dtype=np.uint16)
    image = Image.fromarray(arr)
    assert image.mode == "I;16"
    data = png_bytes(image)
    # Pillow's convert("RGB") clips 16-bit values, so the reference is its raw array.
    raw = np.asarray(Image.open(io.BytesIO(data)))
    expected = np.repeat((raw >> 8).astype(np.uint8)[..., None], 3, axis=2)
    np.testing.assert_array_equal(decode_png(tf.constant(data)).numpy(), expected)


def test_imagenet_normalisation_matches_hand_computation_and_keras():
    pixel = np.array([[[255.0, 128.0, 0.0]]], np.float32)
    expected = [(1 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (0 - 0.406) / 0.225]
    np.testing.assert_allclose(normalize(pixel, "imagenet").numpy()[0, 0], expected, rtol=1e-6)
    batch = RNG.uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    densenet = keras.applications.densenet.preprocess_input(batch.copy())
    np.testing.assert_allclose(normalize(batch, "imagenet").numpy(), densenet, rtol=1e-5, atol=1e-5)


def test_caffe_normalisation_matches_keras_resnet50():
    batch = RNG.uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    reference = keras.applications.resnet50.preprocess_input(batch.copy())
    np.testing.assert_allclose(normalize(batch, "caffe").numpy(), reference, rtol=1e-5, atol=1e-4)


def test_unit_and_symmetric_normalisation():
    x = np.array([0.0, 127.5, 255.0], np.float32)
    np.testing.assert_allclose(normalize(x, "unit").numpy(), [0, 0.5, 1])
    np.testing.assert_allclose(normalize(x, "symmetric").numpy(), [-1, 0, 1])


def test_autocontrast_matches_pillow():
    arr = RNG.integers(40, 180, (16, 16, 3), dtype=np.uint8)
    reference = np.asarray(ImageOps.autocontrast(Image.fromarray(arr)), np.float32)
    ours = autocontrast(tf.constant(arr, tf.float32)).numpy()
    assert np.abs(ours - reference).max() <= 1.0  # Pillow truncates through a lookup table


def test_autocontrast_leaves_a_flat_image_alone():
    flat = tf.fill([4, 4, 3], 77.0)
    np.testing.assert_array_equal(autocontrast(flat).numpy(), flat.numpy())


def test_affine_rotation_by_90_degrees_is_numpy_rot90():
    image = RNG.uniform(0, 255, (9, 9, 3)).astype(np.float32)
    rotated = affine_transform(tf.constant(image), np.pi / 2).numpy()
    np.testing.assert_allclose(rotated, np.rot90(image, k=-1), atol=1e-3)


def test_affine_translation_shifts_whole_pixels_and_fills_black():
    image = RNG.uniform(1, 255, (8, 10, 3)).astype(np.float32)
    shifted = affine_transform(tf.constant(image), 0.0, 1.0, tx=3, ty=-2).numpy()
    expected = np.zeros_like(image)
    expected[:-2, 3:] = image[2:, :-3]
    np.testing.assert_allclose(shifted, expected, atol=1e-3)


def test_affine_scale_two_magnifies_the_centre():
    image = np.zeros((9, 9, 1), np.float32)
    image[4, 4] = 100.0
    image[4, 6] = 50.0  # two pixels right of centre moves to four
    zoomed = affine_transform(tf.constant(image), 0.0, 2.0).numpy()
    assert zoomed[4, 4, 0] == pytest.approx(100.0) and zoomed[4, 8, 0] == pytest.approx(50.0)


def test_flip_with_probability_one_mirrors_every_image():
    images = RNG.uniform(0, 255, (3, 6, 7, 3)).astype(np.float32)
    out = augment_batch(
        tf.constant(images),
        tf.constant([1, 2], tf.int64),
        AugmentConfig(ops=("hflip",), hflip_p=1.0),
    ).numpy()
    np.testing.assert_array_equal(out, images[:, :, ::-1])


def test_batch_augmentation_draws_per_image():
    # Each image of a batch is either left alone or auto-contrasted (Pillow as reference),
    # and with p=0.5 over 64 images both outcomes occur.
    images = RNG.integers(40, 180, (64, 8, 8, 3)).astype(np.uint8)
    out = augment_batch(
        tf.constant(images, tf.float32),
        tf.constant([3, 4], tf.int64),
        AugmentConfig(ops=("autocontrast",), autocontrast_p=0.5),
    ).numpy()
    stretched = [
        np.abs(o - np.asarray(ImageOps.autocontrast(Image.fromarray(i)), np.float32)).max() <= 1
        for o, i in zip(out, images, strict=True)
    ]
    untouched = [np.array_equal(o, i) for o, i in zip(out, images, strict=True)]
    assert all(s != u for s, u in zip(stretched, untouched, strict=True))
    assert 16 <= sum(stretched) <= 48


def test_batched_affine_matrix_is_the_stack_of_single_ones():
    angle, scale, tx, ty = [0.1, -0.3], [1.0, 1.2], [2.0, 0.0], [-1.0, 4.0]
    size = tf.constant([9, 11])
    batched = affine_matrix(*(tf.constant(v) for v in (angle, scale, tx, ty)), size).numpy()
    singles = [
        affine_matrix(*(tf.constant(v[i]) for v in (angle, scale, tx, ty)), size) for i in range(2)
    ]
    np.testing.assert_allclose(batched, np.stack(singles), rtol=1e-6)


def test_unknown_augmentation_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown augmentation 'blur'"):
        AugmentConfig(ops=("blur",))


@pytest.fixture(scope="module")
def frame(synthetic_dir):
    return load_mura(synthetic_dir, check_images=False).head(24)


AUGMENTED = PipelineConfig(
    image_size=32,
    augment=AugmentConfig(ops=("autocontrast", "hflip", "rotate", "translate", "scale")),
)


def test_evaluation_never_augments(frame):
    images, labels = next(iter(make_dataset(frame, AUGMENTED, batch_size=24, training=False)))
    expected = np.stack([normalize(load_image(p, 32), "imagenet").numpy() for p in frame["path"]])
    np.testing.assert_allclose(images.numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(labels.numpy()[:, 0], frame["label"].to_numpy())


def test_training_augments(frame):
    plain = next(iter(make_dataset(frame, PipelineConfig(image_size=32), batch_size=24)))[0]
    ds = make_dataset(frame, AUGMENTED, batch_size=24, training=True, seed=1)
    augmented = next(iter(ds))[0]
    assert augmented.shape == plain.shape
    assert not np.allclose(np.sort(augmented.numpy(), axis=None), np.sort(plain.numpy(), axis=None))


def first_batches(frame, seed, n=2):
    ds = make_dataset(frame, AUGMENTED, batch_size=8, training=True, seed=seed)
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


def test_a_seed_gives_the_same_first_batches_twice(frame):
    a, b, c = first_batches(frame, 3), first_batches(frame, 3), first_batches(frame, 4)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_epochs_reshuffle_and_reaugment(frame):
    ds = make_dataset(frame, AUGMENTED, batch_size=24, training=True, seed=0)
    first, second = [x.numpy() for x, _ in ds], [x.numpy() for x, _ in ds]
    assert not np.array_equal(first[0], second[0])


def test_memory_cache_gives_the_same_evaluation_batches(frame):
    plain = make_dataset(frame, PipelineConfig(image_size=32), batch_size=5)
    cached = make_dataset(frame, PipelineConfig(image_size=32, cache="memory"), batch_size=5)
    for (xa, _), (xb, _) in zip(plain, cached, strict=True):
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())


def test_meta_and_part_targets(frame):
    ds = make_dataset(
        frame, PipelineConfig(image_size=16), batch_size=4, target="part", with_meta=True
    )
    images, parts, meta = next(iter(ds))
    assert images.shape == (4, 16, 16, 3) and images.dtype == tf.float32
    assert parts.dtype == tf.int32 and parts.shape == (4,)
    np.testing.assert_array_equal(parts.numpy(), meta["part"].numpy())
    assert [s.decode() for s in meta["study"].numpy()] == frame["study"].head(4).tolist()


def test_worker_shards_are_disjoint_and_cover_every_image_once(frame):
    def paths(shard):
        ds = make_dataset(frame, AUGMENTED, batch_size=5, training=True, with_meta=True,
                          shard=shard)  # fmt: skip
        return [p.decode() for _, _, meta in ds for p in meta["path"].numpy()]

    first, second = paths((0, 2)), paths((1, 2))
    assert abs(len(first) - len(second)) <= 1 and not set(first) & set(second)
    assert sorted(first + second) == sorted(frame["path"])


def test_keep_aspect_pads_a_wide_image_with_black(tmp_path):
    wide = np.full((10, 40), 200, np.uint8)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    out = load_image(str(tmp_path / "wide.png"), 40, keep_aspect=True).numpy()
    assert out.shape == (40, 40, 3)
    assert out[:14].max() == 0 and out[-14:].max() == 0 and out[16:24].min() == 200
    stretched = load_image(str(tmp_path / "wide.png"), 40).numpy()
    assert stretched.min() == 200


def test_bad_pipeline_settings_are_config_errors(frame):
    with pytest.raises(ConfigError, match="batch size"):
        make_dataset(frame, batch_size=0)
    with pytest.raises(ConfigError, match="normalization"):
        PipelineConfig(normalization="zscore")
    with pytest.raises(ConfigError, match="empty"):
        make_dataset(frame.iloc[:0])


@pytest.mark.parametrize("mode", ["L", "RGB", "LA", "RGBA"])
def test_load_image_equals_decode_then_resize(tmp_path, mode):
    # the one-channel shortcut for grayscale films must give the pixels of the plain path
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(70, 90, 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert(mode)
    path = tmp_path / f"x_{mode}.png"
    image.save(path)
    for size in (32, 128):  # shrinking (area) and growing (bilinear)
        expected = resize(decode_png(tf.io.read_file(str(path))), size)
        np.testing.assert_array_equal(load_image(tf.constant(str(path)), size), expected)


def test_16_bit_and_jpeg_films_decode_as_pillow_sees_them(tmp_path):
    """`decode_and_resize` (the export's `serve_images` and the training pipeline) against
    Pillow: a 16-bit PNG keeps each sample's high byte; a JPEG decodes as Pillow decodes it."""
    rng = np.random.default_rng(2)
    deep = rng.integers(0, 65536, size=(60, 80), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    high = np.repeat((deep >> 8).astype(np.uint8)[..., None], 3, axis=-1)
    got = decode_and_resize(tf.io.read_file(str(tmp_path / "deep.png")), 40).numpy()
    np.testing.assert_array_equal(got, resize(tf.constant(high), 40).numpy())

    smooth = np.linspace(0, 255, 60 * 80).reshape(60, 80).astype(np.uint8)
    Image.fromarray(smooth, "L").save(tmp_path / "film.jpg", quality=95)
    pillow = np.asarray(Image.open(tmp_path / "film.jpg").convert("RGB"))
    got = decode_and_resize(tf.io.read_file(str(tmp_path / "film.jpg")), 40).numpy()
    np.testing.assert_array_equal(got, resize(tf.constant(pillow), 40).numpy())


def test_pipelines_signatures_and_eager_calls_share_one_traced_decode(frame):
    """Every tf.data map traces its function afresh; the decode inside is traced once per
    process and frame, and the pixels are those of the untraced ops."""
    from mura_tf.data import pipeline

    reader = pipeline._traced(pipeline._decode_and_resize, 28, False)
    for training in (False, True, False):
        next(iter(make_dataset(frame, PipelineConfig(image_size=28), training=training)))
    data = tf.io.read_file(frame["path"].iloc[0])
    via_tf_function = tf.function(lambda d: decode_and_resize(d, 28))(data)
    eager = decode_and_resize(data, 28)
    assert reader.experimental_get_tracing_count() == 1
    untraced = pipeline._decode_and_resize(data, 28, False)  # the ops one by one
    np.testing.assert_array_equal(eager.numpy(), untraced.numpy())
    np.testing.assert_array_equal(via_tf_function.numpy(), untraced.numpy())


def test_halving_averages_two_by_two_blocks():
    base = np.random.default_rng(2).integers(0, 240, size=(4, 4, 3)).astype(np.float32)
    offsets = np.array([[0.0, 4.0], [8.0, 0.0]])  # block means are base + 3, whole numbers
    pixels = np.repeat(np.repeat(base, 2, axis=0), 2, axis=1) + np.tile(offsets, (4, 4))[..., None]
    blocks = pixels.reshape(4, 2, 4, 2, 3).mean(axis=(1, 3))
    np.testing.assert_array_equal(blocks, base + 3)
    np.testing.assert_array_equal(resize(pixels, 4), blocks.astype(np.uint8))


@pytest.mark.parametrize("ops", [("autocontrast", "hflip"), ("autocontrast", "hflip", "rotate")])
def test_compiled_batch_pixels_equal_the_reference_ops(ops):
    # make_dataset's XLA-compiled per-batch work against the plain TensorFlow functions.
    images = RNG.integers(30, 200, (8, 12, 12, 3)).astype(np.uint8)
    seed = tf.constant([5, 6], tf.int64)
    config = AugmentConfig(ops=ops)
    ours = batch_pixels("imagenet", config)(tf.constant(images), seed).numpy()
    reference = normalize(augment_batch(tf.constant(images, tf.float32), seed, config), "imagenet")
    np.testing.assert_allclose(ours, reference.numpy(), atol=1e-4)
    plain = batch_pixels("caffe")(tf.constant(images)).numpy()
    np.testing.assert_allclose(plain, normalize(images.astype(np.float32), "caffe"), atol=1e-4)
