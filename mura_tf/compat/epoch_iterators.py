"""Resume a run with the batches its uninterrupted self would have drawn.

Each new iterator of a `tf.data.Dataset` draws the next seeds of every
`shuffle(reshuffle_each_iteration=True)` and `Dataset.random(rerandomize_each_iteration=True)`
in it: that is how epochs see new orders and new augmentations. A resumed process starts those
draws again from the first epoch, so without help it would train its later epochs on the first
epochs' batches. `replay_epochs` makes and drops, without reading a film, as many iterators as
`fit` made during the epochs already done.

How many that is belongs to Keras: `fit` over a dataset of known size makes two per epoch, one
when the epoch starts and one after its last batch (`EpochIterator._enumerate_iterator`,
keras/src/trainers/epoch_iterator.py). Not a bug, but an internal a Keras release may change:
tested with Keras 3.15.1 and TensorFlow 2.21.0 (`tests/test_compat.py` fails if the count is
no longer two). A dataset `fit` reads for a fixed number of steps is one iterator for the whole
run; `training.train` skips it ahead instead.
"""

from __future__ import annotations

import tensorflow as tf
from keras.src.trainers import epoch_iterator

from mura_tf.compat import incompatible

ITERATORS_PER_EPOCH = 2


def replay_epochs(data: tf.data.Dataset, epochs: int) -> None:
    """Draw the random numbers of `epochs` epochs of `fit` over `data` (its prefetch may read
    a batch, which is dropped)."""
    if not hasattr(epoch_iterator.EpochIterator, "_enumerate_iterator"):
        raise incompatible(
            "replaying a resumed run's batches", "mura_tf.compat.epoch_iterators",
            "keras.src.trainers.epoch_iterator.EpochIterator has no _enumerate_iterator",
        )  # fmt: skip
    for _ in range(ITERATORS_PER_EPOCH * epochs):
        iterator = iter(data)
        del iterator
