"""Report 002: SimCLR pre-training of a ResNet-50 on the training images of elbow, hand and
shoulder (labels unused), 50 epochs; temperature, projection head, LARS, lr 0.3 x B / 256 and
warm-up from google-research/simclr where the report is silent."""

from mura_tf.runs.pretrain import PretrainConfig
from recipes.common import run

CONFIG = PretrainConfig(
    recipe="simclr_pretrain",
    backbone="resnet50",
    part="elbow,hand,shoulder",
    epochs=50,
    batch_size=64,
    image_size=224,
    dev_fraction=0.1,
    base_learning_rate=0.3, lr_scaling="linear", optimizer="lars", weight_decay=1e-6,
    temperature=0.1, min_crop_area=0.08, projection_layers=3, projection_dim=128,
)  # fmt: skip

if __name__ == "__main__":
    raise SystemExit(run(CONFIG))
