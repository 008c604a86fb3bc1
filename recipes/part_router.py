"""Report 000 §3.3's first stage as a run of its own: unfrozen ResNet18 + MLP learns the 7-way
body part (report 000's settings). The router of the part-router cascade
(`python -m mura_tf cascade`)."""

from mura_tf.runs.router import RouterConfig
from recipes.common import run

CONFIG = RouterConfig(
    recipe="part_router", label="Part router",
    backbone="resnet18", head="mlp", freeze_backbone=False,
    optimizer="adam", learning_rate=1e-3, epochs=10, batch_size=32, eval_batch_size=64,
    image_size=256, augment=("autocontrast", "hflip"), dev_fraction=0.10, patience=4,
    monitor="val_accuracy", part="all",
)  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(run(CONFIG))
