"""Report 000 §3.4: ResNet18 + Linear + Linear on one part (humerus), Adam at 0.01 for 1000
steps, then 0.001."""

from mura_tf.experiment import Experiment
from recipes.common import run

EXPERIMENT = Experiment(
    recipe="resnet18_per_part",
    backbone="resnet18",
    head="mlp",
    freeze_backbone=True,
    optimizer="adam",
    learning_rate=0.01,
    lr_boundaries=(1000,),
    lr_values=(0.01, 0.001),
    epochs=20,
    batch_size=32,
    eval_batch_size=64,
    image_size=256,
    augment=("autocontrast", "hflip"),
    dev_fraction=0.10,
    part="humerus",
)

if __name__ == "__main__":
    raise SystemExit(run(EXPERIMENT))
