import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

from mura_tf.callbacks import BestModelCheckpoint, EpochHistoryCSV
from mura_tf.errors import ConfigError, TrainingError
from mura_tf.train import TrainConfig, compile_classifier, make_optimizer, mura_class_weights, train


def test_mura_class_weights_are_the_papers_formula():
    labels = [0] * 6 + [1] * 2  # |N| = 6, |A| = 2
    assert mura_class_weights(labels) == {0: 2 / 8, 1: 6 / 8}
    with pytest.raises(ConfigError, match="both normal and abnormal"):
        mura_class_weights([0, 0, 0])


def test_report_000_schedule_is_001_for_1000_steps_then_0001():
    optimizer = make_optimizer(TrainConfig(lr_boundaries=(1000,), lr_values=(0.01, 0.001)))
    schedule = (
        optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate
    )
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(999)) == pytest.approx(0.01)  # the 1000th step
    assert float(schedule(1000)) == pytest.approx(0.001)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "--epochs"),
        ({"learning_rate": 0}, "--lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"lr_boundaries": (10,), "lr_values": (0.1,)}, "one more value"),
    ],
)
def test_impossible_train_settings_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def tiny_model():
    model = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    return compile_classifier(model, TrainConfig(epochs=1, learning_rate=0.1))


def test_history_has_one_row_per_epoch_even_when_an_epoch_is_run_again(tmp_path):
    path = tmp_path / "history.csv"
    logger = EpochHistoryCSV(path)
    logger.set_model(tiny_model())
    for epoch, loss in [(0, 0.9), (1, 0.8), (2, 0.7), (2, 0.65), (3, 0.6)]:  # epoch 2 resumed
        logger.on_epoch_end(epoch, {"loss": loss})
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[2]["loss"]) == pytest.approx(0.65)
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.1)


def test_best_checkpoint_saves_only_on_improvement_and_reloads(tmp_path):
    model = tiny_model()
    path = tmp_path / "best.keras"
    callback = BestModelCheckpoint(path, "val_accuracy", "max")
    callback.set_model(model)
    callback.on_epoch_end(0, {"val_accuracy": 0.6})
    saved = model.get_weights()
    model.set_weights([w + 1 for w in saved])
    callback.on_epoch_end(1, {"val_accuracy": 0.5})  # worse: the file keeps epoch 0
    reloaded = keras.saving.load_model(path)
    for a, b in zip(reloaded.get_weights(), saved, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]  # no temporary files left


def dataset(x, y, batch=4):
    return tf.data.Dataset.from_tensor_slices((x.astype("float32"), y.astype("float32"))).batch(
        batch
    )


def test_train_writes_history_logs_checkpoint_and_removes_the_backup(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4, 4, 3))
    y = (x[:, :1, 0, 0] > 0).astype(float)
    model = tiny_model()
    history = train(
        model,
        dataset(x, y),
        dataset(x, y),
        tmp_path,
        TrainConfig(epochs=3, verbose=0),
        class_weight={0: 0.5, 1: 1.5},
    )
    assert len(history.history["loss"]) == 3
    assert (tmp_path / "checkpoints" / "best.keras").is_file()
    assert not (tmp_path / "backup").exists()  # BackupAndRestore cleans up after a finished run
    with (tmp_path / "history.csv").open() as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "1", "2"]
    events = list((tmp_path / "logs").rglob("events.out.tfevents*"))
    tags = set()
    for event_file in events:
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(v.tag for v in event.summary.value)
    assert "augmented_training_images" in tags
    assert {"epoch_loss", "epoch_learning_rate"} <= tags


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    x = np.full((8, 4, 4, 3), np.nan)
    with pytest.raises(TrainingError, match="loss became NaN"):
        train(
            tiny_model(),
            dataset(x, np.ones((8, 1))),
            dataset(x, np.ones((8, 1))),
            tmp_path,
            TrainConfig(epochs=2, verbose=0, tensorboard_images=0),
        )
