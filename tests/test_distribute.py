"""tf.distribute: MirroredStrategy over two logical CPUs, two real workers on loopback, and
--deterministic. Device layouts must be set before TensorFlow starts, so runs are subprocesses."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from mura_tf.errors import ConfigError
from mura_tf.training.distribute import make_strategy, per_replica_batch
from recipes.common import REPORT_000, configure

REPO = Path(__file__).resolve().parents[1]
TINY = ["--image-size", "32", "--epochs", "2", "--max-steps", "2", "--weights", "none",
        "--batch-size", "8", "--eval-batch-size", "8"]  # fmt: skip

# Two logical CPU devices, then a recipe's command line; argv[1] names the recipe.
ON_TWO_CPUS = textwrap.dedent(
    """
    import importlib, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from recipes.common import run as run_recipe
    recipe = importlib.import_module("recipes." + sys.argv[1]).CONFIG
    sys.exit(run_recipe(recipe, argv=sys.argv[2:]))
    """
)


def environment(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def run_dirs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.rglob("metrics.json"))


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_a_global_batch_must_split_evenly_across_replicas():
    assert per_replica_batch(SimpleNamespace(num_replicas_in_sync=2), 8, "--batch-size") == 4
    with pytest.raises(ConfigError, match="--batch-size 9 cannot be split evenly across 2"):
        per_replica_batch(SimpleNamespace(num_replicas_in_sync=2), 9, "--batch-size")


def test_strategy_errors_are_one_line(monkeypatch):
    with pytest.raises(ConfigError, match="unknown --strategy 'tpu'"):
        make_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="multi_worker needs TF_CONFIG"):
        make_strategy("multi_worker")
    with pytest.raises(SystemExit):
        configure(REPORT_000, ["--strategy", "tpu"], "")
    assert isinstance(make_strategy("auto"), type(tf.distribute.get_strategy()))


@pytest.mark.slow
def test_mirrored_over_two_cpus_trains_exports_and_pretrains_simclr(synthetic_dir, tmp_path):
    data = ["--data-dir", str(synthetic_dir), "--out", str(tmp_path)]
    commands = [
        ["resnet18_linear", *data, *TINY, "--strategy", "mirrored"],
        ["simclr_pretrain", *data, "--backbone", "resnet18", "--parts", "elbow,hand",
         "--image-size", "32", "--epochs", "1", "--max-steps", "2", "--batch-size", "8",
         "--optimizer", "adam", "--lr", "1e-3", "--lr-scaling", "none", "--strategy", "mirrored"],
    ]  # fmt: skip
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-c", ON_TWO_CPUS, *command],
            capture_output=True, text=True, timeout=600, env=environment(), cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    classifier, simclr = run_dirs(tmp_path)
    for run_dir in (classifier, simclr):
        strategy = json.loads((run_dir / "config.json").read_text())["strategy"]
        assert strategy == {"name": "mirrored", "replicas": 2, "workers": 1}
    serve = tf.saved_model.load(str(classifier / "export")).signatures["serving_default"]
    out = next(iter(serve(tf.zeros([3, 32, 32, 3])).values())).numpy()
    assert out.shape == (3, 1) and np.all((out >= 0) & (out <= 1))
    metrics = json.loads((simclr / "metrics.json").read_text())
    assert np.isfinite(metrics["loss"]) and metrics["linear_probe"]["n_images"] > 0
    assert (simclr / "encoder.keras").is_file()


@pytest.mark.slow
def test_two_workers_on_loopback_train_together_and_the_chief_exports(synthetic_dir, tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    command = [sys.executable, "-m", "recipes.resnet18_linear", "--data-dir", str(synthetic_dir),
               "--out", str(tmp_path / "out"), *TINY, "--strategy", "multi_worker"]  # fmt: skip
    workers = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        log = open(tmp_path / f"worker{index}.log", "w")  # noqa: SIM115 - closed below
        workers.append(
            (
                subprocess.Popen(
                    command,
                    cwd=tmp_path,
                    env=environment(TF_CONFIG=config),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )  # fmt: skip
        )
    try:
        codes = [process.wait(timeout=600) for process, _ in workers]
    finally:
        for process, log in workers:
            process.kill()
            log.close()
    logs = [(tmp_path / f"worker{i}.log").read_text()[-3000:] for i in range(2)]
    assert codes == [0, 0], logs
    (chief,) = run_dirs(tmp_path / "out")
    other = chief / "worker1"
    assert (chief / "export" / "saved_model.pb").is_file()
    assert not (other / "metrics.json").exists() and not (other / "export").exists()
    for run_dir in (chief, other):
        strategy = json.loads((run_dir / "config.json").read_text())["strategy"]
        assert strategy == {"name": "multi_worker", "replicas": 2, "workers": 2}
    # Synchronous training: both workers log the same global loss and metrics every epoch.
    histories = [pd.read_csv(d / "history.csv") for d in (chief, other)]
    assert len(histories[0]) == 2
    pd.testing.assert_frame_equal(histories[0], histories[1], rtol=1e-5)
    predictions = pd.read_csv(chief / "predictions.csv")
    splits = pd.read_csv(chief / "splits.csv")
    assert len(predictions) == (splits["split"] == "test").sum()


@pytest.mark.slow
def test_deterministic_runs_repeat_splits_batches_and_metrics(synthetic_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        command = [sys.executable, "-m", "recipes.resnet18_mlp", "--data-dir",
                   str(synthetic_dir), "--out", str(tmp_path / name), *TINY,
                   "--deterministic", "--seed", "3"]  # fmt: skip
        runs.append(
            subprocess.Popen(
                command,
                cwd=tmp_path,
                env=environment(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
        )
    outputs = [process.communicate(timeout=600)[0] for process in runs]
    assert [p.returncode for p in runs] == [0, 0], [o[-2000:] for o in outputs]
    (a,), (b,) = run_dirs(tmp_path / "a"), run_dirs(tmp_path / "b")
    assert (a / "splits.csv").read_text() == (b / "splits.csv").read_text()
    metrics_a = json.loads((a / "metrics.json").read_text())
    metrics_b = json.loads((b / "metrics.json").read_text())
    assert metrics_a["first_batch_sha1"] == metrics_b["first_batch_sha1"]
    assert metrics_a == metrics_b
    assert (a / "predictions.csv").read_text() == (b / "predictions.csv").read_text()
    assert (a / "history.csv").read_text() == (b / "history.csv").read_text()


# The first steps of one model under MirroredStrategy over two logical CPUs and on one
# device, at the same global batch: the same losses and weights. Backbones frozen, so that
# batch norm (per replica under mirroring) plays no part; the heads train, the classifier's
# and an outline-guided one's (whose outline loss is divided across replicas by hand).
SAME_STEPS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from mura_tf.models.backbones import build_backbone
    from mura_tf.models.heads import build_classifier, classification_head
    from mura_tf.models.outline_guided import OutlineGuided
    from mura_tf.training.train import TrainConfig, compile_classifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 32, 32, 3)).astype("float32")
    y = (rng.uniform(size=(16, 1)) < 0.5).astype("float32")
    masks = (rng.uniform(size=(16, 8, 8, 1)) < 0.1).astype("float32")
    out = {}
    for name, strategy in (("one", tf.distribute.OneDeviceStrategy("/cpu:0")),
                           ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
        for guided in (False, True):
            keras.utils.set_random_seed(0)
            with strategy.scope():
                backbone = build_backbone("resnet18", 32, None)
                model = build_classifier(backbone, classification_head("mlp"), 32)
                backbone.trainable = False
                if guided:
                    model = OutlineGuided(model, backbone, 32, 1.0)
                compile_classifier(model, TrainConfig(learning_rate=1e-2, jit_compile=False))
            inputs = {"image": x, "mask": masks, "mask_known": np.ones(16, "float32")}
            data = tf.data.Dataset.from_tensor_slices((inputs if guided else x, y)).batch(8)
            history = model.fit(data, epochs=2, verbose=0).history
            out[f"{name}-{guided}"] = {
                "loss": history["loss"],
                "weights": [np.asarray(w).tolist() for w in model.trainable_weights],
            }
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_mirrored_steps_equal_one_device_steps_at_the_same_global_batch(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SAME_STEPS], capture_output=True, text=True, timeout=600,
        env=environment(), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for guided in ("False", "True"):
        one, mirrored = out[f"one-{guided}"], out[f"mirrored-{guided}"]
        np.testing.assert_allclose(mirrored["loss"], one["loss"], rtol=1e-5)
        assert len(mirrored["weights"]) == len(one["weights"]) == (4 if guided == "False" else 8)
        for a, b in zip(mirrored["weights"], one["weights"], strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    # Two epochs of two steps did move the weights: equal because both trained alike.
    assert out["one-False"]["loss"][1] != out["one-False"]["loss"][0]
