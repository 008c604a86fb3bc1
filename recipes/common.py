"""The one recipe contract: a recipe module is a config (`CONFIG`, a
`mura_tf.runs.settings.RunConfig`) and `raise SystemExit(run(CONFIG))`. Its flags come from the
config's fields (`setting`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mura_tf.cli import build_parser, configure
from mura_tf.cli import run as run_cli
from mura_tf.runs.kinds import kind_of_config
from mura_tf.runs.settings import RunConfig
from mura_tf.runs.supervised import Experiment

__all__ = ["MONITOR", "REPORT_000", "build_parser", "configure", "run"]

# Report 000 (ResNet18 transfer learning): what its four experiments share. Its recipes
# replace only the fields in which they differ. The report gives no batch size: 32 is used.
# It stops early and hands over the epoch by dev accuracy; on real films the majority answer
# already scores 0.71 (MURA's forearm) to 0.82 (FracAtlas) there, so accuracy hands over the
# first epoch that says "normal" to everything. Dev AUROC is the default here instead
# (README, "Real films"); `--monitor val_accuracy` is the report's rule.
MONITOR = "val_auc"
REPORT_000 = Experiment(
    recipe="report_000",
    backbone="resnet18",
    head="linear",
    freeze_backbone=True,
    optimizer="adam",
    learning_rate=1e-3,
    epochs=10,
    batch_size=32,
    eval_batch_size=64,
    image_size=256,
    augment=("autocontrast", "hflip"),
    dev_fraction=0.10,
    patience=4,
    monitor=MONITOR,
    part="all",
)


def run(
    config: RunConfig, description: str | None = None, argv: Sequence[str] | None = None
) -> int:
    """The one recipe contract: parse the flags over `config`, run it as its kind does
    (`mura_tf.runs.kinds`), print the kind's summary lines. `description` defaults to the
    recipe module's docstring."""
    description = description or (sys.modules["__main__"].__doc__ or "").strip()

    def main(args: Sequence[str] | None) -> int:
        chosen = configure(config, args, description)
        for note in chosen.notes:
            print(note)
        if getattr(chosen, "ensemble", 1) > 1:  # as `mura-tf ensemble --recipe`
            from mura_tf.runs.ensemble import summary_lines, train_ensemble

            print("\n".join(summary_lines(train_ensemble(chosen, print))))
            return 0
        kind = kind_of_config(type(chosen))
        result = kind.attribute(kind.run)(chosen)
        if not result.metrics:  # a multi-worker run's other workers; worker 0 reports
            print(f"worker finished; worker 0 writes the run's results ({result.run_dir})")
            return 0
        print("\n".join(kind.summary_lines(result)))
        return 0

    return run_cli(main, argv)
