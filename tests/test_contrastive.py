import numpy as np
import pytest
import tensorflow as tf

from mura_tf.data.contrastive import (
    ViewConfig,
    gaussian_blur,
    make_contrastive_dataset,
    random_view,
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


def test_full_crop_and_no_jitter_is_the_resized_image():
    image = tf.constant(np.random.default_rng(0).uniform(0, 255, (20, 20, 3)), tf.float32)
    plain = ViewConfig(
        crop_area=(1.0, 1.0), crop_aspect=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0, blur_p=0.0
    )
    view = random_view(image, tf.constant([1, 2], tf.int64), 20, plain)
    np.testing.assert_allclose(view.numpy(), image.numpy(), atol=1e-3)


def test_blur_keeps_the_mean_and_matches_a_separable_reference():
    image = np.zeros((15, 15, 1), np.float32)
    image[7, 7] = 100.0
    out = gaussian_blur(tf.constant(image), tf.constant(1.0), 3).numpy()[..., 0]
    x = np.arange(-3, 4)
    k = np.exp(-(x**2) / 2.0)
    k /= k.sum()
    np.testing.assert_allclose(out[4:11, 4:11], 100.0 * np.outer(k, k), atol=1e-4)
    assert out.sum() == pytest.approx(100.0, rel=1e-5)


def test_too_few_images_for_a_batch_is_a_config_error(synthetic_dir):
    frame = load_mura(synthetic_dir, check_images=False).head(3)
    with pytest.raises(ConfigError, match="lower --batch-size"):
        make_contrastive_dataset(frame, PipelineConfig(image_size=32), batch_size=8)
