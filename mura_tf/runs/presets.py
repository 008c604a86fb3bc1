"""The CPU presets of `--synthetic`: what a run of the embedded synthetic set changes.

The synthetic set (`mura_tf.runs.settings.SYNTHETIC_DATA`) has a few hundred films per part and this
project's machines have 2 cores and no GPU, so `--synthetic` shrinks a recipe to that size.
Every change is noted in the config (`notes`, printed and kept in `config.json`), and a setting
the user gave explicitly is never changed.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only the base: the kinds import this module for their changes
    from mura_tf.runs.settings import RunConfig

SYNTHETIC_IMAGE_SIZE = 64
SYNTHETIC_MAX_EPOCHS = 8
SYNTHETIC_MAX_PRETRAIN_EPOCHS = 10
# Report 002's 2e-5 is a fine-tuning rate for ImageNet weights; from random weights (all that
# is available offline) nothing moves at that rate, so the synthetic preset trains at 1e-3.
SYNTHETIC_MIN_LR = 1e-3
SYNTHETIC_MAX_BATCH = 8
SYNTHETIC_MAX_PRETRAIN_BATCH = 32
SYNTHETIC_MIN_DEV_FRACTION = 0.2


def synthetic_preset(config: RunConfig, explicit: frozenset[str] = frozenset()) -> RunConfig:
    """`config` shrunk to the synthetic set on a CPU, each change noted; the fields named in
    `explicit` (given on the command line) are kept."""
    changes = {"image_size": min(config.image_size, SYNTHETIC_IMAGE_SIZE)}
    changes.update(config.synthetic_changes(explicit))
    changes = {
        name: value
        for name, value in changes.items()
        if name not in explicit and value != getattr(config, name)
    }
    notes = [
        f"synthetic preset: {name} {getattr(config, name)} -> {value}"
        for name, value in changes.items()
    ]
    if config.cache is None and "cache" not in explicit:
        changes["cache"] = "memory"
    return dataclasses.replace(config, notes=(*config.notes, *notes), **changes)


def supervised_changes(exp: RunConfig, explicit: frozenset[str]) -> dict[str, Any]:
    """What the preset changes in a supervised run (`Experiment.synthetic_changes`)."""
    changes: dict[str, Any] = {"epochs": min(exp.epochs, SYNTHETIC_MAX_EPOCHS)}
    weights = exp.weights if "weights" in explicit or exp.weights != "imagenet" else "none"
    changes["weights"] = weights
    if weights == "none":
        changes["learning_rate"] = max(exp.learning_rate, SYNTHETIC_MIN_LR)
        if exp.freeze_backbone and not exp.intermediate_epochs:
            # A frozen random backbone gives features of scale ~0.01 that a head barely learns
            # from; with ImageNet weights (--weights imagenet) it stays frozen as reported.
            changes["freeze_backbone"] = False
    # ~170 training images of a part make 5 steps an epoch at batch 32: 40 steps in all, too
    # few for weights (and batch-norm statistics) to move far from random.
    changes["batch_size"] = min(exp.batch_size, SYNTHETIC_MAX_BATCH)
    # 10% of a part's synthetic patients is ~6 patients, ~20 images: a model is selected on
    # noise (seen: dev AUC below 0.5 at every epoch while the test AUC reached 0.9).
    changes["dev_fraction"] = max(exp.dev_fraction, SYNTHETIC_MIN_DEV_FRACTION)
    if exp.monitor in ("val_accuracy", "val_auc"):
        # The synthetic dev split has a few dozen images: accuracy ties from the first epoch,
        # and AUC nearly so. The dev loss does not tie, and it scores the probabilities that
        # the 0.5 threshold (and so kappa) acts on, where AUC only scores their order; it is
        # also the MURA paper's criterion.
        changes["monitor"] = "val_loss"
    # A dev split of a few dozen images swings between epochs, so early stopping would end on
    # a random early dip; train all epochs and hand over the best one.
    changes["patience"] = 0
    return changes


def pretrain_changes(cfg: RunConfig, explicit: frozenset[str]) -> dict[str, Any]:
    """What the preset changes in a SimCLR pre-training (`PretrainConfig.synthetic_changes`)."""
    changes: dict[str, Any] = {
        "epochs": min(cfg.epochs, SYNTHETIC_MAX_PRETRAIN_EPOCHS),
        "batch_size": min(cfg.batch_size, SYNTHETIC_MAX_PRETRAIN_BATCH),
    }
    if cfg.backbone == "resnet50":
        changes["backbone"] = "resnet18"
    # At 64 px an 8% crop is an 18 px patch, and patches of different synthetic films look
    # alike; with half the image or more the positives are recognisable (measured: NT-Xent
    # falls within 48 steps at 32 px with crops of 50-100%, rises with 8-100%).
    changes["min_crop_area"] = max(cfg.min_crop_area, 0.5)
    # LARS exists for batches of thousands. At batch 32 linear scaling gives 0.3 x 32 / 256 =
    # 0.04, which its trust ratio turns into no learning, and sqrt scaling (batch 16, peak 1.0)
    # lowered NT-Xent but left a linear probe below that of the random encoder (112 steps);
    # Adam at 2e-3 lowers NT-Xent and lifts the probe above the random encoder's.
    if cfg.optimizer == "lars" and "optimizer" not in explicit:
        changes.update(optimizer="adam", base_learning_rate=2e-3, lr_scaling="none")
    return changes
