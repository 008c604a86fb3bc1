"""A trained model in use: the SavedModel export and its signatures (`export`), loading it
with TensorFlow alone (`load`), predictions on a user's films (`predict`) and Grad-CAM
(`gradcam`)."""
