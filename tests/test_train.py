import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mura_tf.errors import ConfigError, TrainingError
from mura_tf.training.callbacks import RunCheckpoint
from mura_tf.training.resume import RunState, Selection, commit, load_state, restore
from mura_tf.training.train import (
    TrainConfig,
    compile_classifier,
    make_optimizer,
    mura_class_weights,
    train,
)


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
        ({"epochs": 0}, "^epochs must be at least 1, got 0$"),
        ({"learning_rate": 0}, "^learning_rate must be positive"),
        ({"optimizer": "rmsprop"}, "^optimizer must be one of"),
        ({"lr_boundaries": (10,), "lr_values": (0.1,)}, "one more than lr_boundaries"),
        ({"ema_momentum": 1.0}, r"^ema_momentum must be in \[0, 1\), got 1.0$"),
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


def checkpoint_at(run_dir, patience=0, monitor="val_accuracy"):
    """A RunCheckpoint resumed from whatever `run_dir/backup` holds, on a fresh tiny model."""
    run_dir.mkdir(parents=True, exist_ok=True)  # as open_run leaves it
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)  # as fit has it when an epoch ends
    callback = RunCheckpoint(run_dir, Selection(monitor), patience, load_state(run_dir / "backup"))
    callback.set_model(model)
    callback.on_train_begin()
    return callback, model


def run_epochs(callback, model, values, start=0):
    """End epochs `start, start+1, ...` with these dev values, each with its own weights."""
    for epoch, value in enumerate(values, start):
        model.set_weights([np.full_like(w, epoch) for w in model.get_weights()])
        callback.on_epoch_end(epoch, {"loss": 0.5, "val_accuracy": value})
        if model.stop_training:
            return epoch
    return None


def test_the_best_epoch_comes_back_from_its_checkpoint_in_this_process_or_another(tmp_path):
    callback, model = checkpoint_at(tmp_path)
    run_epochs(callback, model, [0.5, 0.9, 0.6])  # the best is epoch index 1: weights all 1
    assert model.get_weights()[0][0, 0] == 2
    callback.restore_best()  # as train() does once fit returns
    assert all((w == 1).all() for w in model.get_weights())
    resumed, fresh = checkpoint_at(tmp_path)  # another process, from the same file
    fresh.set_weights([np.full_like(w, 7) for w in fresh.get_weights()])
    resumed.restore_best()
    assert all((w == 1).all() for w in fresh.get_weights())


def best_weights_epoch(run_dir):
    """Which epoch's weights the best checkpoint holds (run_epochs fills every weight with it),
    read with plain NumPy."""
    with np.load(run_dir / "checkpoints" / "best.variables.npz") as data:
        return int(data["v00000"][0, 0])


def test_an_unreadable_best_epoch_names_the_run_folder_as_the_way_back(tmp_path):
    callback, model = checkpoint_at(tmp_path)
    run_epochs(callback, model, [0.5, 0.9, 0.6])
    (tmp_path / "checkpoints" / "best.variables.npz").write_bytes(b"not a zip")
    with pytest.raises(TrainingError) as error:
        callback.restore_best()
    text = str(error.value)
    # Deleting checkpoints/ alone would resume to the end and find no best epoch.
    assert text.endswith(f"delete {tmp_path} to train from the start") and "\n" not in text


def test_history_has_one_row_per_epoch_even_when_an_epoch_is_run_again(tmp_path):
    callback, model = checkpoint_at(tmp_path)
    run_epochs(callback, model, [0.5, 0.6, 0.7])
    # Killed during epoch 3 after the commit of epoch 2: epoch 2 is never run again, 3 is.
    callback, model = checkpoint_at(tmp_path)
    assert callback.state.epochs_done == 3
    run_epochs(callback, model, [0.65], start=3)
    with (tmp_path / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[3]["val_accuracy"]) == pytest.approx(0.65)
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.1)


def test_best_checkpoint_is_the_best_epoch_of_the_whole_run_across_a_resume(tmp_path):
    callback, model = checkpoint_at(tmp_path)
    run_epochs(callback, model, [0.5, 0.9, 0.6])  # best: epoch 1 (0-based)
    callback, model = checkpoint_at(tmp_path)  # resumed: the first epoch after it is worse
    run_epochs(callback, model, [0.7, 0.8], start=3)
    assert best_weights_epoch(tmp_path) == 1
    assert json.loads((tmp_path / "checkpoints" / "best.json").read_text()) == {
        "epoch": 2,
        "monitor": "val_accuracy",
        "value": pytest.approx(0.9),
    }
    callback.restore_best()  # as train() does once fit returns: best.keras, for Keras
    handed_over = keras.saving.load_model(tmp_path / "checkpoints" / "best.keras")
    assert all((w == 1).all() for w in handed_over.get_weights())
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "best.json",
        "best.keras",
        "best.variables.npz",
    ]  # no temporary files left


def test_early_stopping_counts_patience_across_a_resume(tmp_path):
    values = [0.5, 0.9, 0.6, 0.7, 0.8, 0.95, 0.4]
    uninterrupted, model = checkpoint_at(tmp_path / "a", patience=3)
    stopped_at = run_epochs(uninterrupted, model, values)
    assert stopped_at == 4  # three epochs without beating epoch 1
    callback, model = checkpoint_at(tmp_path / "b", patience=3)
    run_epochs(callback, model, values[:3])
    callback, model = checkpoint_at(tmp_path / "b", patience=3)
    assert run_epochs(callback, model, values[3:], start=3) == stopped_at
    assert load_state(tmp_path / "b" / "backup").stopped
    assert best_weights_epoch(tmp_path / "b") == 1


def test_a_kill_between_the_commit_and_the_best_checkpoint_is_repaired_on_resume(tmp_path):
    callback, model = checkpoint_at(tmp_path)
    run_epochs(callback, model, [0.5, 0.6])
    # Epoch 2 is committed as the best, then the process dies before best.keras is written.
    model.set_weights([np.full_like(w, 2) for w in model.get_weights()])
    row = {"epoch": 2, "loss": 0.5, "val_accuracy": 0.9}
    commit(tmp_path / "backup", model, RunState(3, (*callback.state.history, row)))
    assert best_weights_epoch(tmp_path) == 1
    checkpoint_at(tmp_path)
    assert best_weights_epoch(tmp_path) == 2


def test_the_resume_point_names_a_complete_weights_file_and_keeps_no_other(tmp_path):
    callback, model = checkpoint_at(tmp_path)
    run_epochs(callback, model, [0.5, 0.6, 0.7])
    state = load_state(tmp_path / "backup")
    assert state.epochs_done == 3 and len(state.history) == 3
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == [
        "epoch-0003.variables.npz",
        "state.json",
    ]
    # Plain NumPy reads it: the weights, then the optimizer's variables, in order.
    expected = [*model.weights, *model.optimizer.variables]
    with np.load(tmp_path / "backup" / state.weights) as data:
        assert len(data.files) == len(expected) + 1  # and the shapes
        for i, variable in enumerate(expected):
            np.testing.assert_array_equal(data[f"v{i:05d}"], variable.numpy())
        assert data["v00000"].shape == (48, 1) and (data["v00000"] == 2).all()  # epoch 3's


def test_a_resume_point_restores_weights_and_optimizer_state_and_refuses_another_model(
    tmp_path,
):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4, 4, 3)), rng.integers(0, 2, size=(16, 1))
    model = tiny_model()
    model.fit(
        x, y, batch_size=4, epochs=2, verbose=0
    )  # Adam's moments and step count are not zeros
    commit(tmp_path, model, RunState(2))
    fresh = tiny_model()
    fresh.optimizer.build(fresh.trainable_variables)
    restore(fresh, tmp_path / "epoch-0002.variables.npz")
    for a, b in zip(
        [*model.weights, *model.optimizer.variables],
        [*fresh.weights, *fresh.optimizer.variables],
        strict=True,
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(fresh.optimizer.iterations) == 8
    # A resume point of Keras's own format, as runs before the .npz files wrote them.
    model.save_weights(tmp_path / "epoch-0002.weights.h5")
    older = tiny_model()
    older.optimizer.build(older.trainable_variables)
    restore(older, tmp_path / "epoch-0002.weights.h5")
    np.testing.assert_array_equal(older.get_weights()[0], model.get_weights()[0])
    other = compile_classifier(
        keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Flatten(), keras.layers.Dense(1)]),
        TrainConfig(epochs=1),
    )
    other.optimizer.build(other.trainable_variables)
    with pytest.raises(
        TrainingError,
        match=r"npz: another model wrote it \(variable 0 is \(48, 1\) there and \(32, 1\) here",
    ):
        restore(other, tmp_path / "epoch-0002.variables.npz")


def dataset(x, y, batch=4):
    return tf.data.Dataset.from_tensor_slices((x.astype("float32"), y.astype("float32"))).batch(
        batch
    )


def test_train_writes_history_logs_checkpoint_and_hands_back_the_best_epoch(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4, 4, 3))
    y = (x[:, :1, 0, 0] > 0).astype(float)
    model = tiny_model()
    result = train(
        model,
        dataset(x, y),
        dataset(x, y),
        tmp_path,
        TrainConfig(epochs=3, verbose=0, monitor="val_loss"),
        class_weight={0: 0.5, 1: 1.5},
        sample=np.full((2, 4, 4, 3), 128.0),
    )
    assert len(result.history) == 3
    losses = [row["val_loss"] for row in result.history]
    assert result.selected_epoch == int(np.argmin(losses)) + 1
    # The model handed back is the best epoch's, as saved in best.keras.
    best = keras.saving.load_model(tmp_path / "checkpoints" / "best.keras")
    for a, b in zip(model.get_weights(), best.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(best.optimizer.iterations) == 8 * result.selected_epoch  # its own Adam state
    for a, b in zip(model.optimizer.variables, best.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # The resume point stays until the caller has written everything (mura_tf.files.finish_run).
    assert load_state(tmp_path / "backup").epochs_done == 3
    with (tmp_path / "history.csv").open() as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["0", "1", "2"]
    events = list((tmp_path / "logs").rglob("events.out.tfevents*"))
    tags, shown = set(), []
    for event_file in events:
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(v.tag for v in event.summary.value)
            shown += [
                tf.io.decode_png(v.tensor.string_val[2]).numpy()
                for v in event.summary.value
                if v.tag == "augmented_training_images"
            ]
    assert "augmented_training_images" in tags
    # As a person sees the film: pixel value 128 shows as 128, not min-max or ImageNet scaled.
    assert shown and np.all(shown[0][..., :3] == 128)
    assert {"epoch_loss", "epoch_learning_rate"} <= tags


class WeightsAfterEachStep(keras.callbacks.Callback):
    """The training weights after every step (a probe: `train` takes no other callbacks)."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([w.numpy().copy() for w in self.model.trainable_weights])


def test_with_ema_dev_scores_and_the_epoch_handed_over_are_the_moving_average(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4, 4, 3)).astype("float32")
    y = (x[:, :1, 0, 0] > 0).astype("float32")
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(1, activation="sigmoid")])  # fmt: skip
    config = TrainConfig(epochs=3, learning_rate=0.1, ema_momentum=0.5, verbose=0,
                         monitor="val_loss")  # fmt: skip
    compile_classifier(model, config)
    steps = WeightsAfterEachStep()
    result = train(model, dataset(x, y), dataset(x, y), tmp_path, config, probes=[steps])
    # The average by hand: the first step's weights, then m * average + (1 - m) * weights.
    averages, average = [], None
    for weights in steps.steps:
        average = weights if average is None else [
            0.5 * a + 0.5 * w for a, w in zip(average, weights, strict=True)
        ]  # fmt: skip
        averages.append(average)
    per_epoch = len(steps.steps) // 3
    chosen = averages[result.selected_epoch * per_epoch - 1]
    for handed, expected in zip(model.get_weights(), chosen, strict=True):
        np.testing.assert_allclose(handed, expected, rtol=1e-5, atol=1e-6)
    raw = steps.steps[result.selected_epoch * per_epoch - 1]
    assert not np.allclose(raw[0], chosen[0], atol=1e-3)  # the average is not the last step

    # Every epoch's dev loss is the average's, not the training weights' (NumPy, by hand).
    def dev_loss(weights):
        p = 1 / (1 + np.exp(-(x.reshape(32, -1) @ weights[0] + weights[1])))
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    for epoch, row in enumerate(result.history, 1):
        assert row["val_loss"] == pytest.approx(dev_loss(averages[epoch * per_epoch - 1]), rel=1e-4)
        assert row["val_loss"] != pytest.approx(dev_loss(steps.steps[epoch * per_epoch - 1]),
                                                rel=1e-3)  # fmt: skip
    best = keras.saving.load_model(tmp_path / "checkpoints" / "best.keras")
    for a, b in zip(best.get_weights(), chosen, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


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


def test_a_run_folder_that_vanishes_mid_run_stops_with_one_line(tmp_path):
    import shutil

    from mura_tf.files import DiskError

    callback, model = checkpoint_at(tmp_path / "run")
    run_epochs(callback, model, [0.5])
    shutil.rmtree(tmp_path / "run")
    with pytest.raises(DiskError, match="vanished"):
        run_epochs(callback, model, [0.6], start=1)
    assert not (tmp_path / "run").exists()  # not recreated half-empty


def test_per_part_class_weights_follow_the_mura_paper_from_each_parts_studies():
    import pandas as pd

    from mura_tf.data.parts import PARTS
    from mura_tf.training.train import mura_part_class_weights

    # elbow: 3 studies, 1 abnormal (its 4 images must not count twice); hand: 4, 3 abnormal
    train = pd.DataFrame(
        {
            "part": ["XR_ELBOW"] * 4 + ["XR_HAND"] * 4,
            "study": ["e1", "e1", "e2", "e3", "h1", "h2", "h3", "h4"],
            "label": [1, 1, 0, 0, 1, 1, 1, 0],
        }
    )
    table = mura_part_class_weights(train)
    np.testing.assert_allclose(table[PARTS.index("XR_ELBOW")], [1 / 3, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(table[PARTS.index("XR_HAND")], [3 / 4, 1 / 4], rtol=1e-6)
    np.testing.assert_allclose(table[PARTS.index("XR_WRIST")], [1, 1])  # no studies: unused
    with pytest.raises(ConfigError, match="cannot weight XR_HAND by class: .* all abnormal"):
        mura_part_class_weights(train[train["label"] == 1].assign(part="XR_HAND"))


def test_per_part_weights_reach_every_training_image(synthetic_dir):
    """Each training image of `--class-weights-by-part` carries its part's weight of its label."""
    import tensorflow as tf

    from mura_tf.data.mura import load_mura
    from mura_tf.data.parts import PARTS
    from mura_tf.data.splits import make_splits
    from mura_tf.runs.batches import fit_data
    from mura_tf.runs.supervised import Experiment
    from mura_tf.training.train import mura_part_class_weights

    exp = Experiment(recipe="r", backbone="resnet18", part="elbow,hand", image_size=32,
                     batch_size=4, class_weights_by_part=True, augment=())  # fmt: skip
    splits = make_splits(load_mura(synthetic_dir, exp.part), 0.2, 0)
    table = mura_part_class_weights(splits.train)
    data = fit_data(exp, splits, "imagenet", tf.distribute.get_strategy(), class_weight=table)
    seen = []
    for _, labels, weights in data.train:
        seen += list(zip(labels.numpy()[:, 0], weights.numpy(), strict=True))
    assert len(seen) == len(splits.train)
    expected = sorted(
        (float(row.label), float(table[PARTS.index(row.part), int(row.label)]))
        for row in splits.train.itertuples()
    )
    np.testing.assert_allclose(sorted(map(tuple, np.array(seen, float))), expected, rtol=1e-6)
