"""The MURA paper's model (Rajpurkar et al., arXiv 1712.06957): DenseNet169 from ImageNet
weights, one sigmoid output, all seven parts in one model; 320 x 320 images with ImageNet mean
and std, random lateral flips and rotations up to 30 degrees; Adam (0.9, 0.999) at 1e-4,
divided by 10 each time the dev loss plateaus (here: 2 epochs without improvement); batch 8;
binary cross-entropy weighted per body part by that part's training studies; a study's
probability is the mean of its views', at 0.5. The paper gives no epoch count: 30 here,
handing over the epoch of the lowest dev loss."""

from mura_tf.runs.supervised import Experiment
from recipes.common import run

CONFIG = Experiment(
    recipe="mura_paper",
    label="MURA paper",
    backbone="densenet169",  # its normalisation is ImageNet mean and std
    head="linear",
    weights="imagenet",
    optimizer="adam",
    learning_rate=1e-4,
    reduce_lr_on_plateau=True,
    monitor="val_loss",
    patience=0,
    epochs=30,
    batch_size=8,
    eval_batch_size=16,
    image_size=320,
    augment=("hflip", "rotate"),
    rotation_degrees=30.0,
    class_weights_by_part=True,
    dev_fraction=0.1,
    part="all",
)

if __name__ == "__main__":
    raise SystemExit(run(CONFIG))
