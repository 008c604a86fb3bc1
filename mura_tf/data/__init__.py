"""Reading MURA and FracAtlas, splitting them, and feeding them to Keras.

`mura_tf.data.pipeline` (tf.data) is imported on its own so that the catalogue, splits and
synthetic generator work without loading TensorFlow.
"""

from mura_tf.data.catalogue import load_catalogue
from mura_tf.data.mura import load_mura
from mura_tf.data.splits import Splits, label_fraction, make_splits
from mura_tf.data.synthetic import SyntheticConfig, generate_synthetic, synthetic_dataset

__all__ = [
    "Splits",
    "SyntheticConfig",
    "generate_synthetic",
    "label_fraction",
    "load_catalogue",
    "load_mura",
    "make_splits",
    "synthetic_dataset",
]
