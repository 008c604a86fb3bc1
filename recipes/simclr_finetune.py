"""Report 002: fine-tune a SimCLR encoder (--encoder RUN) on 1%, 10% or 100% of the labels
(--fraction), lr 0.1 (0.3 the alternative), 20 epochs; --mode finetune (whole network) or
linear (frozen encoder)."""

from dataclasses import replace

from recipes.common import REPORT_000, run

CONFIG = replace(
    REPORT_000, recipe="simclr_finetune", label="{mode} {pct}pct",
    backbone="resnet50", head="linear", freeze_backbone=False, weights="none",
    optimizer="lars", learning_rate=0.1, epochs=20, batch_size=32, image_size=224,
    augment=("hflip", "rotate", "translate"), dev_fraction=0.20, part="elbow", label_fraction=1.0,
)  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(run(CONFIG))
