import math

import numpy as np
import pytest
import tensorflow as tf

from mura_tf.data.contrastive import (
    ViewConfig,
    crop_boxes,
    gaussian_blur,
    gaussian_kernels,
    make_contrastive_dataset,
    random_views,
    view_maker,
)
from mura_tf.data.mura import load_mura
from mura_tf.data.pipeline import PipelineConfig
from mura_tf.errors import ConfigError


def test_two_views_differ_and_keep_shape_and_range(synthetic_dir):
    frame = load_mura(synthetic_dir, check_images=False).head(16)
    ds = make_contrastive_dataset(
        frame, PipelineConfig(image_size=32, normalization="unit"), batch_size=8
    )
    a, b = next(iter(ds))
    assert a.shape == b.shape == (8, 32, 32, 3)
    assert float(tf.reduce_min(a)) >= 0.0 and float(tf.reduce_max(a)) <= 1.0
    differences = tf.reduce_mean(tf.abs(a - b), axis=[1, 2, 3]).numpy()
    assert (differences > 1e-3).all()


def test_views_are_reproducible_from_the_seed(synthetic_dir):
    frame = load_mura(synthetic_dir, check_images=False).head(8)
    config = PipelineConfig(image_size=32)
    first = [
        x.numpy() for x in next(iter(make_contrastive_dataset(frame, config, batch_size=4, seed=3)))
    ]
    again = [
        x.numpy() for x in next(iter(make_contrastive_dataset(frame, config, batch_size=4, seed=3)))
    ]
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])


def test_full_crop_and_no_jitter_is_the_image():
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (3, 20, 20, 3)), tf.float32)
    plain = ViewConfig(
        crop_area=(1.0, 1.0), crop_aspect=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0, blur_p=0.0
    )
    views = random_views(images, tf.constant([1, 2], tf.int64), 20, plain)
    np.testing.assert_allclose(views.numpy(), images.numpy(), atol=1e-3)


@pytest.mark.parametrize("rotation", [0.0, 10.0])
def test_compiled_views_equal_the_plain_ops(rotation):
    images = tf.constant(np.random.default_rng(1).integers(0, 256, (6, 24, 24, 3)), tf.uint8)
    config = ViewConfig(rotation_degrees=rotation, blur_p=0.7)
    seed = tf.constant([4, 5], tf.int64)
    plain = random_views(images, seed, 24, config, "imagenet")
    compiled = view_maker(6, 24, config, "imagenet")(images, seed)
    np.testing.assert_allclose(compiled.numpy(), plain.numpy(), atol=1e-4)


def test_each_image_is_blurred_by_its_own_separable_kernel():
    images = np.zeros((3, 15, 15, 2), np.float32)
    images[:, 7, 7, :] = 100.0
    sigma = np.array([0.5, 1.0, 2.0], np.float32)
    out = gaussian_blur(tf.constant(images), gaussian_kernels(tf.constant(sigma), 3)).numpy()
    x = np.arange(-3, 4)
    for i, s in enumerate(sigma):
        k = np.exp(-(x**2) / (2 * s**2))
        k /= k.sum()
        for channel in range(2):
            np.testing.assert_allclose(
                out[i, 4:11, 4:11, channel], 100.0 * np.outer(k, k), atol=1e-4
            )
        assert out[i].sum() == pytest.approx(200.0, rel=1e-5)


def test_crop_boxes_keep_the_configured_area_and_aspect():
    config = ViewConfig(crop_area=(0.2, 0.6), crop_aspect=(0.5, 2.0))
    boxes = crop_boxes(4000, tf.constant([7, 8], tf.int64), config).numpy()
    height, width = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes >= -1e-6).all() and (boxes <= 1 + 1e-6).all()
    area, aspect = height * width, width / height
    assert area.min() >= 0.2 - 1e-5 and area.max() <= 0.6 + 1e-5
    assert aspect.min() >= 0.5 - 1e-4 and aspect.max() <= 2.0 + 1e-4
    # log-uniform aspect: as many wider than tall as taller than wide
    assert abs(np.mean(np.log(aspect)) - 0.0) < 0.05
    assert np.std(np.log(aspect)) == pytest.approx(2 * math.log(2) / math.sqrt(12), rel=0.1)


def test_a_crop_that_can_never_fit_falls_back_to_the_whole_image():
    config = ViewConfig(crop_area=(1.0, 1.0), crop_aspect=(2.0, 3.0))
    boxes = crop_boxes(5, tf.constant([1, 1], tf.int64), config).numpy()
    np.testing.assert_allclose(boxes, np.tile([0.0, 0.0, 1.0, 1.0], (5, 1)), atol=1e-6)


def test_too_few_images_for_a_batch_is_a_config_error(synthetic_dir):
    frame = load_mura(synthetic_dir, check_images=False).head(3)
    with pytest.raises(ConfigError, match="lower --batch-size"):
        make_contrastive_dataset(frame, PipelineConfig(image_size=32), batch_size=8)
