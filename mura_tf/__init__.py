"""mura_tf: Keras 3 / TensorFlow experiments on the MURA radiograph dataset.

The packages: `data` (reading, splitting, tf.data), `models` (networks, losses), `training`
(fit, callbacks, optimizers, precision, strategies), `runs` (settings, run folders, and one
module per run kind), `evaluators` (metrics, intervals, calibration, localisation, routing),
`serving` (export, loading, prediction, Grad-CAM), `report` (pages, tables, plots),
`commands` (the `mura-tf` commands), `compat` (workarounds for upstream bugs).

Importing the package changes nothing outside it: TensorFlow's start-up settings are made by
the entry points (`mura_tf.cli.start_tensorflow`), not here.
"""

__version__ = "0.1.0"
