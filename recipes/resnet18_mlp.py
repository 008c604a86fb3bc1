"""Report 000 §3.2: frozen ResNet18 + Linear(512, 512) + Linear(512, 1), Adam 1e-3, 10 epochs."""

from mura_tf.experiment import Experiment
from recipes.common import run

EXPERIMENT = Experiment(
    recipe="resnet18_mlp",
    backbone="resnet18",
    head="mlp",
    freeze_backbone=True,
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
