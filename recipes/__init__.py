"""One module per experiment of the reports; run any with `python -m recipes.NAME --help`."""

from mura_tf.cli import quiet_tensorflow

# Every recipe is a command: TensorFlow starts quietly whenever a recipe module first imports it.
quiet_tensorflow()
