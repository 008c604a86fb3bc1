"""Where mura_tf works around Keras: nothing else in the project touches Keras's internals.

Tested with Keras 3.15.1, keras-hub 0.32.0 and TensorFlow 2.21.0 (CPU); `pyproject.toml` bounds
Keras and keras-hub to the minor versions tested. Each workaround checks, when it is applied,
that what it replaces is still there in the shape it was written for, and otherwise stops with
one line naming the upstream issue and the installed Keras (`KerasCompatError`), instead of a
traceback from deep inside Keras or a silent slowdown.

- `distributed_fit`: two fixes to `Model.fit` under MirroredStrategy and
  MultiWorkerMirroredStrategy (keras-team/keras#20585, open upstream).
- `fused_batch_norm`: Keras's `BatchNormalization` computed by TensorFlow's fused kernel
  (Keras 3 on TensorFlow builds it from separate ops; benchmarks/README.md).
- `fused_adam`: Keras's `Adam` updates computed by TensorFlow's fused `ResourceApplyAdam`
  (Keras 3 builds each update from separate ops; keras-team/keras#19307, closed, reported
  the slowdown against tf.keras's legacy optimizers).
- `empty_batch`: a model skipped on an empty slice, where TensorFlow's CPU conv2d returns a
  zero-image batch unchanged (a cascade's expert that no film in a batch goes to).
- `export_archive`: a Keras `ExportArchive` written with each endpoint traced once (Keras's
  `write_out` traces each twice).
- `epoch_iterators`: a resumed run replays the iterators `fit` made in the epochs done, so
  its later epochs see the shuffles and augmentations of an uninterrupted run.

To try a newer Keras: `pip install "keras==X.Y.*"` beside this checkout, then
`python -m pytest tests/test_compat.py tests/test_batch_norm.py tests/test_distribute.py`; if
they pass, widen the bound in `pyproject.toml` and the versions above.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import keras

from mura_tf.errors import MuraError

TESTED_KERAS = "3.15"


class KerasCompatError(MuraError):
    """A Keras internal that a workaround replaces is missing or has changed."""


def incompatible(what: str, issue: str, problem: str) -> KerasCompatError:
    """The one-line error for a workaround that does not fit the installed Keras."""
    return KerasCompatError(
        f"{what} ({issue}) does not fit the installed Keras {keras.__version__}: {problem}. "
        f"mura_tf was tested with Keras {TESTED_KERAS}.x: pip install 'keras=={TESTED_KERAS}.*'"
    )


def shadow(obj, name: str, function: Callable) -> None:
    """Make `function` (taking `obj` first) the method `name` of this one object.

    An instance attribute shadows the class's method, which Keras looks up on the instance
    (`Layer.__call__` calls `self.call`, the TensorFlow optimizer `self.update_step`); the
    object keeps its class, config and weights. `object.__setattr__` skips Keras's attribute
    tracking, which has nothing to track.
    """
    object.__setattr__(obj, name, types.MethodType(function, obj))


def is_shadowed(obj, name: str, function: Callable) -> bool:
    """Whether `shadow(obj, name, function)` has been applied."""
    method = obj.__dict__.get(name)
    return getattr(method, "__func__", None) is function
