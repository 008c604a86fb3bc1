"""mura_tf: Keras 3 / TensorFlow experiments on the MURA radiograph dataset."""

__version__ = "0.1.0"
