import csv
import hashlib

import keras
import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import accuracy_score, roc_auc_score

from mura_tf.data.augment_settings import AugmentConfig
from mura_tf.data.mura import load_mura
from mura_tf.data.pipeline import PipelineConfig, make_dataset
from mura_tf.data.splits import make_splits
from mura_tf.data.synthetic import ABNORMAL_SHARE, SyntheticConfig, generate_synthetic
from mura_tf.errors import ConfigError, MuraDataError

# Module fixtures: these tests stay on one pytest-xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("synthetic")


def test_official_layout_and_headerless_csvs(synthetic_dir):
    root = synthetic_dir / "MURA-v1.1"
    assert sorted(p.name for p in root.glob("*.csv")) == [
        "lesions.csv",  # the generator's side file (where it drew lesions), not MURA's
        "train_image_paths.csv",
        "train_labeled_studies.csv",
        "valid_image_paths.csv",
        "valid_labeled_studies.csv",
    ]
    for split in ("train", "valid"):
        with open(root / f"{split}_image_paths.csv") as f:
            images = [r[0] for r in csv.reader(f)]
        with open(root / f"{split}_labeled_studies.csv") as f:
            studies = {r[0]: r[1] for r in csv.reader(f)}
        assert all((synthetic_dir / p).is_file() for p in images)
        assert all(p.startswith(f"MURA-v1.1/{split}/XR_") for p in images)
        assert {p.rsplit("/", 1)[0] + "/" for p in images} == set(studies)
        for study, label in studies.items():
            assert study.endswith(("_positive/", "_negative/"))
            assert label == ("1" if study.endswith("_positive/") else "0")


def test_real_structure_patients_studies_views_modes_sizes(synthetic_dir, small_config):
    frame = load_mura(synthetic_dir)
    views = frame.groupby("study")["view"].agg(["count", "max"])
    assert views["count"].between(1, 5).all() and (views["count"] == views["max"]).all()
    assert views["count"].nunique() >= 4  # a real mix of 1-5 views
    per_patient = frame.groupby("patient")["study"].nunique()
    assert (per_patient > 1).any()
    assert (frame.groupby("patient")["part"].nunique() > 1).any()
    assert not set(frame.loc[frame.split == "train", "patient"]) & set(
        frame.loc[frame.split == "valid", "patient"]
    )
    modes, sides = set(), []
    for path in frame["path"]:
        with Image.open(path) as im:
            modes.add(im.mode)
            sides.extend(im.size)
    assert {"L", "RGB", "LA", "RGBA", "I;16"} <= modes
    assert small_config.min_side <= min(sides) and max(sides) <= small_config.max_side
    assert len(set(sides)) > 10


def test_every_part_and_split_has_both_labels_near_muras_share(synthetic_dir):
    studies = load_mura(synthetic_dir, check_images=False).drop_duplicates("study")
    assert (studies.groupby(["split", "part"])["label"].nunique() == 2).all()
    share = studies[studies.split == "train"].groupby("part")["label"].mean()
    for part, value in share.items():
        n = (studies[(studies.split == "train") & (studies.part == part)]).shape[0]
        assert abs(value - ABNORMAL_SHARE[part]) <= 1 / n + 1e-9


def digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "SYNTHETIC.json":
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    config = SyntheticConfig(
        patients_per_part=2, valid_patients_per_part=1, min_side=32, max_side=40, parts=("elbow",)
    )
    a = generate_synthetic(tmp_path / "a", config)
    b = generate_synthetic(tmp_path / "b", config)
    c = generate_synthetic(tmp_path / "c", SyntheticConfig(**{**config.__dict__, "seed": 1}))
    assert digest(a) == digest(b) != digest(c)


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    config = SyntheticConfig(
        patients_per_part=2, valid_patients_per_part=1, min_side=32, max_side=40, parts=("hand",)
    )
    root = generate_synthetic(tmp_path, config)
    before = digest(root)
    with pytest.raises(MuraDataError, match="already exists"):
        generate_synthetic(tmp_path, config)
    assert digest(root) == before
    generate_synthetic(tmp_path, SyntheticConfig(**{**config.__dict__, "seed": 3}), overwrite=True)
    assert digest(root) != before
    assert [p.name for p in tmp_path.iterdir()] == ["MURA-v1.1"]  # no temporary folders left


def test_impossible_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="image sides"):
        SyntheticConfig(min_side=200, max_side=100)
    with pytest.raises(ConfigError, match="patient"):
        SyntheticConfig(patients_per_part=1)


def small_cnn(outputs: int, activation: str) -> keras.Model:
    layers = keras.layers

    def block(x, filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        # momentum 0.9: with ~20 steps an epoch the default 0.99 leaves inference stats stale
        x = layers.BatchNormalization(momentum=0.9)(x)
        return layers.ReLU()(x)

    inputs = keras.Input((64, 64, 3))
    x = inputs
    for filters in (16, 32, 64):
        x = layers.MaxPooling2D()(block(x, filters))
    x = layers.GlobalMaxPooling2D()(block(x, 64))
    return keras.Model(inputs, layers.Dense(outputs, activation=activation)(x))


@pytest.fixture(scope="module")
def learnable_splits(tmp_path_factory):
    out = tmp_path_factory.mktemp("learnable")
    generate_synthetic(
        out,
        SyntheticConfig(
            patients_per_part=32, valid_patients_per_part=10, min_side=96, max_side=160, seed=1
        ),
    )
    return make_splits(load_mura(out, check_images=False), dev_fraction=0.1, seed=0)


@pytest.mark.slow
def test_abnormality_is_learnable_by_a_small_cnn(learnable_splits):
    keras.utils.set_random_seed(0)
    config = PipelineConfig(
        image_size=64, normalization="unit", cache="memory", augment=AugmentConfig(ops=("hflip",))
    )
    train = make_dataset(learnable_splits.train, config, batch_size=32, training=True)
    test = make_dataset(
        learnable_splits.test, PipelineConfig(image_size=64, normalization="unit"), batch_size=64
    )
    model = small_cnn(1, "sigmoid")
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    model.fit(train, epochs=8, verbose=0, shuffle=False)
    frame = learnable_splits.test.assign(p=model.predict(test, verbose=0)[:, 0])
    studies = frame.groupby("study").agg(p=("p", "mean"), y=("label", "first"))
    auc = roc_auc_score(studies["y"], studies["p"])
    assert auc >= 0.85, f"study-level AUC {auc:.3f}"


@pytest.mark.slow
def test_body_part_is_learnable_well_above_chance(learnable_splits):
    keras.utils.set_random_seed(0)
    config = PipelineConfig(image_size=64, normalization="unit", cache="memory")
    train = make_dataset(
        learnable_splits.train, config, batch_size=32, training=True, target="part"
    )
    test = make_dataset(learnable_splits.test, config, batch_size=64, target="part")
    model = small_cnn(7, "softmax")
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(train, epochs=3, verbose=0, shuffle=False)
    predicted = model.predict(test, verbose=0).argmax(axis=1)
    truth = np.concatenate([y.numpy() for _, y in test])
    assert accuracy_score(truth, predicted) >= 0.6  # chance is 1/7


def test_lesions_csv_boxes_every_abnormal_views_lesion(synthetic_dir):
    """Each box holds its lesion: nearly all of a hardware view's saturated metal (tissue stays
    below ~210), and no view of a normal study has a box."""
    import pandas as pd

    root = synthetic_dir / "MURA-v1.1"
    boxes = pd.read_csv(root / "lesions.csv")
    frame = load_mura(synthetic_dir)
    assert set(boxes["kind"]) == {"hardware", "fracture"}
    labels = frame.set_index(frame["path"].map(lambda p: p.split("MURA-v1.1/")[-1]))["label"]
    assert (labels.loc[[p.split("MURA-v1.1/")[-1] for p in boxes["path"]]] == 1).all()
    for row in boxes[boxes["kind"] == "hardware"].itertuples():
        with Image.open(synthetic_dir / row.path) as image:  # Pillow's "L" clips 16-bit films
            gray = np.asarray(image) >> 8 if image.mode.startswith("I") else np.asarray(image)
        gray = gray[..., 0] if gray.ndim == 3 else gray
        assert 0 <= row.x0 < row.x1 <= gray.shape[1] and 0 <= row.y0 < row.y1 <= gray.shape[0]
        ys, xs = np.nonzero(gray >= 235)
        inside = (xs >= row.x0 - 1) & (xs <= row.x1 + 1) & (ys >= row.y0 - 1) & (ys <= row.y1 + 1)
        assert len(xs) > 0 and inside.mean() > 0.95, (row.path, inside.mean())
