"""tf.distribute strategies for training on several devices or machines.

`make_strategy` picks a strategy by name; `distribute_batches` splits a global batch across the
strategy's replicas, each worker reading its own shard of the images. Training through
`Model.fit` under these strategies needs two corrections to Keras 3.15 (keras-team/keras#20585),
applied by `make_strategy`; see `mura_tf.compat.distributed_fit`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from mura_tf.compat import distributed_fit
from mura_tf.errors import ConfigError

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The strategy called `name`.

    `auto`: MirroredStrategy when more than one GPU is visible, else TensorFlow's default
    (no distribution). `one_device`: the first GPU, or the CPU. `mirrored`: every GPU of this
    machine, or every logical CPU device when there is no GPU. `multi_worker`: synchronous
    data parallelism over the machines listed in `TF_CONFIG`, each with its local devices;
    it must be created before TensorFlow runs any op in the process.
    """
    check_strategy(name)
    if name == "multi_worker":
        return _multi_worker_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        if len(gpus) > 1:
            distributed_fit.apply()
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = gpus or tf.config.list_logical_devices("CPU")
        distributed_fit.apply()
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    raise AssertionError(name)


def check_strategy(name: str) -> None:
    """A one-line error unless `name` is one of `STRATEGIES`."""
    if name not in STRATEGIES:
        raise ConfigError(f"unknown --strategy {name!r}: use one of {', '.join(STRATEGIES)}")


def _multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    if not cluster.get("worker"):
        raise ConfigError(
            "--strategy multi_worker needs TF_CONFIG listing the workers, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    distributed_fit.apply()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as e:
        first = str(e).splitlines()[0]
        raise ConfigError(f"cannot start multi-worker training: {first}") from None


def worker_index(strategy: tf.distribute.Strategy) -> int:
    """This process's task index in a multi-worker cluster; 0 everywhere else."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return 0
    return int(resolver.task_id or 0)


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """How many processes train together (1 unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    return max(1, len(resolver.cluster_spec().as_dict().get("worker", [])))


def worker_run_dir(run_dir: Path, strategy: tf.distribute.Strategy) -> Path:
    """Where this process writes: `run_dir` for the chief (worker 0), `run_dir/worker<i>`
    for the others, whose checkpoints and backups must not overwrite the chief's."""
    worker = worker_index(strategy)
    return run_dir if worker == 0 else run_dir / f"worker{worker}"


def describe(name: str, strategy: tf.distribute.Strategy) -> dict:
    """The strategy as a run's `config.json` records it."""
    return {
        "name": name,
        "replicas": strategy.num_replicas_in_sync,
        "workers": num_workers(strategy),
    }


def local_copy(model: keras.Model) -> keras.Model:
    """`model` rebuilt outside any strategy, with the same weights.

    Under multi-worker training, predicting with the distributed model would need every
    worker to take part; the chief evaluates this copy alone.
    """
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def per_replica_batch(strategy: tf.distribute.Strategy, global_batch: int, flag: str) -> int:
    """`global_batch` split evenly across replicas, or a one-line error naming `flag`."""
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ConfigError(
            f"{flag} {global_batch} cannot be split evenly across {replicas} replicas: "
            f"use a multiple of {replicas}"
        )
    return global_batch // replicas


def distribute_batches(
    strategy: tf.distribute.Strategy,
    make: Callable[[int, int, int], tf.data.Dataset],
    global_batch: int,
    flag: str = "--batch-size",
) -> tf.distribute.DistributedDataset:
    """Distribute an input pipeline built by `make(batch_size, shard, num_shards)`.

    Each worker calls `make` once, with the per-replica batch size and its own shard of the
    data, so images are read and decoded by one worker only (rather than by all, then
    discarded, as auto-sharding a file-less dataset does). `make` must return a dataset that
    repeats, so that every worker runs the same number of steps (collectives need that).
    """
    batch = per_replica_batch(strategy, global_batch, flag)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        return make(batch, context.input_pipeline_id, context.num_input_pipelines)

    return strategy.distribute_datasets_from_function(dataset_fn)
