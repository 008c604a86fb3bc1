"""Report 000 §3.3: unfrozen ResNet18 + MLP learns the 7-way body part (macro F1), then the
backbone is frozen, the last layer replaced, and the binary abnormality head trained."""

from dataclasses import replace

from recipes.common import REPORT_000, run

CONFIG = replace(
    REPORT_000, recipe="resnet18_bodypart",
    head="mlp", intermediate_epochs=10,
)  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(run(CONFIG))
