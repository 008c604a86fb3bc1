"""mura_tf: Keras 3 / TensorFlow experiments on the MURA radiograph dataset.

The packages: `data` (reading, splitting, tf.data), `models` (networks, losses), `training`
(fit, callbacks, optimizers, precision, strategies), `runs` (settings, run folders, and one
module per run kind), `evaluators` (metrics, intervals, calibration, localisation, routing),
`serving` (export, loading, prediction, Grad-CAM), `report` (pages, tables, plots),
`commands` (the `mura-tf` commands), `compat` (workarounds for upstream bugs).
"""

import os

# TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512 VNNI/BF16 or
# AMX; elsewhere (AVX2 machines such as the 2-core EPYC of benchmarks/README.md) convolutions
# and their gradients fall back to Eigen, and a ResNet18 training step is 1.4x slower. The flag
# is read once, when TensorFlow is first imported, so it is set here, before any submodule
# imports TensorFlow; `TF_ENABLE_ONEDNN_OPTS=0` in the environment still wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

from mura_tf import _moved  # noqa: E402 - old module paths (before 0.3) keep importing

_moved.install()
