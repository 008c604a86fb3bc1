"""Report 000 §3.3: unfrozen ResNet18 + MLP learns the 7-way body part (macro F1), then the
backbone is frozen, the last layer replaced, and the binary abnormality head trained."""

from mura_tf.experiment import Experiment
from recipes.common import run

EXPERIMENT = Experiment(
    recipe="resnet18_bodypart",
    backbone="resnet18",
    head="mlp",
    freeze_backbone=True,
    intermediate_epochs=10,
    optimizer="adam",
    learning_rate=1e-3,
    epochs=10,
    batch_size=32,
    eval_batch_size=64,
    image_size=256,
    augment=("autocontrast", "hflip"),
    dev_fraction=0.10,
    part="all",
)

if __name__ == "__main__":
    raise SystemExit(run(EXPERIMENT))
