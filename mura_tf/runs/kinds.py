"""The list of run kinds: each is one module and one line here.

A kind's module declares its settings (a `RunConfig` subclass, for the kinds a recipe trains;
ensembles and cascades are assembled from finished runs by a command instead), a function that
runs it and returns a `mura_tf.runs.result.RunResult`, and `summary_lines(result) -> list[str]`, the
lines a command prints when it is done. Everything else that differs between kinds is read
from the line below: the key of its settings in `config.json`, whether its export answers
"is this study abnormal?", and the sections of its `report.html`.

Only names are imported here, so that reading finished runs (`mura-tf report`) stays free of
TensorFlow; `RunKind.attribute` imports the module when a kind is run.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RunKind:
    """One kind of run.

    `section`: config.json's key for its settings; `module`: where it is declared;
    `config`: its settings class in that module (None: assembled from finished runs);
    `run`: the function in that module that runs a config; `abnormality`: its export answers
    "is this study abnormal?" (so it can be evaluated, ensembled, routed to, compared);
    `report`: the sections of its report page, in order (`mura_tf.runs.page`).
    """

    section: str
    title: str
    module: str
    config: str | None
    run: str | None
    abnormality: bool
    report: tuple[str, ...]

    def attribute(self, name: str) -> Any:
        """`name` of the kind's module (imported now)."""
        return getattr(importlib.import_module(self.module), name)

    def summary_lines(self, result: Any) -> list[str]:
        """The lines a command prints when a run of this kind is done."""
        return self.attribute("summary_lines")(result)


KINDS = (
    RunKind("experiment", "supervised run (fine-tuning included)", "mura_tf.runs.supervised",
            "Experiment", "run_experiment", True, ("abnormality",)),
    RunKind("router", "body-part router", "mura_tf.runs.router",
            "RouterConfig", "run_router", False, ("routing",)),
    RunKind("pretrain", "SimCLR pre-training", "mura_tf.runs.pretrain",
            "PretrainConfig", "run_pretraining", False, ("pretrain",)),
    RunKind("ensemble", "ensemble of finished runs", "mura_tf.runs.ensemble",
            None, None, True, ("abnormality",)),
    RunKind("cascade", "part-router cascade", "mura_tf.runs.cascade",
            None, None, True, ("abnormality", "routing")),
)  # fmt: skip

SECTIONS = tuple(kind.section for kind in KINDS)
# The kinds whose export answers "is this study abnormal?".
ABNORMALITY_SECTIONS = tuple(kind.section for kind in KINDS if kind.abnormality)


def kind_of_section(section: str) -> RunKind:
    """The kind whose settings sit under `section` in config.json."""
    return next(kind for kind in KINDS if kind.section == section)


def kind_of_config(config_type: type) -> RunKind:
    """The kind a settings class (or a subclass of one) declares: the class its module names
    `config` (imported now; a kind's module may take its settings from another)."""
    for cls in config_type.__mro__:
        for kind in KINDS:
            named = kind.config is not None and cls.__name__ == kind.config
            if named and kind.attribute(kind.config) is cls:
                return kind
    raise TypeError(f"{config_type.__name__} is not the settings of a run kind in KINDS")
