"""A trained model in use: the SavedModel export and its signatures (`export`), loading it
with TensorFlow alone (`load`), predictions on a user's films (`predict`) and Grad-CAM
(`gradcam`)."""

import importlib


def __getattr__(name: str):
    # `from mura_tf.serving import load_serving`, from when `serving` was the module `load` is.
    load = importlib.import_module("mura_tf.serving.load")

    try:
        return getattr(load, name)
    except AttributeError:
        raise AttributeError(f"module 'mura_tf.serving' has no attribute {name!r}") from None
