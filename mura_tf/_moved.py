"""Module paths from before the packages (0.2 and earlier), kept importing for users' scripts:
`import mura_tf.experiment` gives `mura_tf.runs.supervised`, the same module object, with a
DeprecationWarning naming the new place."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "mura_tf.io": "mura_tf.files",
    "mura_tf.parts": "mura_tf.data.parts",
    "mura_tf.metrics": "mura_tf.evaluators.metrics",
    "mura_tf.losses": "mura_tf.models.losses",
    "mura_tf.optimizers": "mura_tf.training.optimizers",
    "mura_tf.precision": "mura_tf.training.precision",
    "mura_tf.distribute": "mura_tf.training.distribute",
    "mura_tf.train": "mura_tf.training.train",
    "mura_tf.callbacks": "mura_tf.training.callbacks",
    "mura_tf.probe": "mura_tf.training.probe",
    "mura_tf.run_folder": "mura_tf.runs.folder",
    "mura_tf.resume": "mura_tf.runs.resume",
    "mura_tf.presets": "mura_tf.runs.presets",
    "mura_tf.experiment": "mura_tf.runs.supervised",
    "mura_tf.pretrain": "mura_tf.runs.pretrain",
    "mura_tf.router": "mura_tf.runs.router",
    "mura_tf.ensemble": "mura_tf.runs.ensemble",
    "mura_tf.cascade": "mura_tf.runs.cascade",
    "mura_tf.export": "mura_tf.serving.export",
    "mura_tf.predict": "mura_tf.serving.predict",
    "mura_tf.gradcam": "mura_tf.serving.gradcam",
    "mura_tf.run_report": "mura_tf.report.run",
    "mura_tf.comparison": "mura_tf.report.comparison",
    "mura_tf.results_table": "mura_tf.report.table",
    "mura_tf.published": "mura_tf.report.published",
    "mura_tf.plots": "mura_tf.report.plots",
}
# `mura_tf.runs` and `mura_tf.serving` were modules and are packages now: each answers for
# its old module's names (`forwarding`: `runs.config`, `serving.load`).


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}: import it from there",
            DeprecationWarning,
            stacklevel=2,  # the importing code's line: warnings skips importlib's frames
        )
        return importlib.import_module(new)

    def exec_module(self, module) -> None:
        pass  # the new module ran when it was imported


def forwarding(package: str, module: str):
    """A package's `__getattr__` that gives the names of `module`, imported on first use: the
    package `mura_tf.runs` answers for the old module `runs` (now `runs.config`), and
    `mura_tf.serving` for the old `serving` (now `serving.load`)."""

    def __getattr__(name: str):
        if importlib.util.find_spec(f"{package}.{name}") is not None:
            # a submodule of the package: let the import system load it, never shadow it
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = importlib.import_module(module)
        try:
            return getattr(target, name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__


def install() -> None:
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
