"""One module per experiment of the reports; run any with `python -m recipes.NAME --help`."""

from mura_tf.cli import start_tensorflow

# Every recipe is a command: TensorFlow starts quietly before any recipe module imports it.
start_tensorflow()
