"""Report 002 baseline: DenseNet169 per body part, 15 epochs, lr 2e-5, batch 8 / 16, 20% dev."""

from mura_tf.runs.supervised import Experiment
from recipes.common import MONITOR, run

CONFIG = Experiment(
    recipe="baseline_densenet",
    label="Baseline",
    backbone="densenet169",
    head="linear",
    freeze_backbone=False,
    optimizer="adam",
    learning_rate=2e-5,
    epochs=15,
    batch_size=8,
    eval_batch_size=16,
    image_size=256,
    augment=("hflip", "rotate", "translate"),
    dev_fraction=0.20,
    monitor=MONITOR,  # report 002 names no dev metric; see recipes.common
    part="elbow",
)

if __name__ == "__main__":
    raise SystemExit(run(CONFIG))
