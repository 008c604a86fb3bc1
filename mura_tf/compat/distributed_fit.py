"""Two fixes to Keras 3.15's `Model.fit` under tf.distribute (keras-team/keras#20585, open).

Found with `keras.config.disable_traceback_filtering()`; tested with Keras 3.15.1 and
TensorFlow 2.21.0 (`tests/test_distribute.py` trains with two workers and with MirroredStrategy
over two CPUs; `tests/test_compat.py` checks the targets).

1. `TensorFlowTrainer._maybe_symbolic_build` hands the whole first batch, a tuple of
   `PerReplica` values, to `strategy.reduce("MEAN")`. The collective strategy of several
   workers converts it to a tensor, which fails with "Attempt to convert a value
   (PerReplica...) to a Tensor"; MirroredStrategy sums the replicas' images, which fails with
   "Inputs to operation AddN ... must have the same size" when the last dev batch splits
   unevenly. The batch only serves to build the model symbolically, so one replica's values
   are enough: the fix takes them and hands them to Keras's own function.
2. `reduce_per_replica` averages the step's logs with `strategy.reduce("MEAN", v, axis=0)`
   across workers; the logs are scalars, so axis 0 does not exist. Averaging across replicas
   (axis None) is what was meant; the fix does that under multi-worker training only and
   calls Keras's function in every other case.
"""

from __future__ import annotations

import inspect

import tensorflow as tf

from mura_tf.compat import incompatible

ISSUE = "keras-team/keras#20585"
WHAT = "mura_tf's fix for distributed Model.fit"


def _targets():
    """Keras's trainer module, checked to hold the two functions in the shape fixed here."""
    try:
        from keras.src.backend.tensorflow import trainer as tf_trainer
    except ImportError as e:
        raise incompatible(WHAT, ISSUE, f"cannot import its TensorFlow trainer ({e})") from None
    build = getattr(getattr(tf_trainer, "TensorFlowTrainer", None), "_maybe_symbolic_build", None)
    reduce = getattr(tf_trainer, "reduce_per_replica", None)
    expected = {
        "TensorFlowTrainer._maybe_symbolic_build": (build, ["self", "iterator", "data_batch"]),
        "reduce_per_replica": (reduce, ["values", "strategy", "reduction"]),
    }
    for name, (function, parameters) in expected.items():
        if function is None:
            raise incompatible(WHAT, ISSUE, f"{name} no longer exists")
        function = getattr(function, "__wrapped_by_mura_tf__", function)
        found = list(inspect.signature(function).parameters)
        if found != parameters:
            raise incompatible(WHAT, ISSUE, f"{name} now takes ({', '.join(found)})")
    return tf_trainer


def apply() -> None:
    """Install both fixes (once per process); see the module docstring."""
    tf_trainer = _targets()
    if getattr(tf_trainer, "_mura_tf_distributed_fit_fix", False):
        return
    trainer_class = tf_trainer.TensorFlowTrainer
    original_build = trainer_class._maybe_symbolic_build
    original_reduce = tf_trainer.reduce_per_replica

    def first_replica(strategy, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is not None and iterator is not None:
            for _, _, batches in iterator:
                batch = next(batches)
                data_batch = tf.nest.map_structure(lambda v: first_replica(strategy, v), batch)
                break
            iterator = None
        return original_build(self, iterator=iterator, data_batch=data_batch)

    def in_multi_worker_mode(strategy) -> bool:
        return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
            strategy.extended._in_multi_worker_mode()
        )

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and in_multi_worker_mode(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    maybe_symbolic_build.__wrapped_by_mura_tf__ = original_build
    reduce_per_replica.__wrapped_by_mura_tf__ = original_reduce
    trainer_class._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer._mura_tf_distributed_fit_fix = True
