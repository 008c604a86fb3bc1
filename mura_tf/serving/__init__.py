"""A trained model in use: the SavedModel export and its signatures (`export`), loading it
with TensorFlow alone (`load`), predictions on a user's films (`predict`) and Grad-CAM
(`gradcam`)."""

from mura_tf._moved import forwarding

# Lazily, so importing one module of the package does not import the old module's first.
__getattr__ = forwarding(__name__, "mura_tf.serving.load")
