"""Report 002: SimCLR pre-training of a ResNet-50 on the training images of elbow, hand and
shoulder (labels unused), 50 epochs; temperature, projection head, LARS, lr 0.3 x B / 256 and
warm-up from google-research/simclr where the report is silent."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from mura_tf.cli import ArgumentParser, positive_int
from mura_tf.cli import run as run_cli
from mura_tf.pretrain import PretrainConfig

CONFIG = PretrainConfig()

FLAGS = {
    "--parts": ("parts", str, "comma list of body parts, or all"),
    "--backbone": ("backbone", str, "resnet50 (report 002), resnet18 or densenet169"),
    "--epochs": ("epochs", positive_int, "pre-training epochs"),
    "--batch-size": ("batch_size", positive_int, "images per batch (each gives two views)"),
    "--image-size": ("image_size", positive_int, "square input side in pixels"),
    "--lr": ("base_learning_rate", float, "base learning rate, scaled by --lr-scaling"),
    "--lr-scaling": ("lr_scaling", str, "linear (lr x B/256), sqrt (lr x sqrt(B)) or none"),
    "--optimizer": ("optimizer", str, "lars (official) or adam (small batches)"),
    "--warmup-epochs": ("warmup_epochs", int, "linear warm-up epochs (None: a tenth of training)"),
    "--weight-decay": ("weight_decay", float, "LARS weight decay"),
    "--temperature": ("temperature", float, "NT-Xent temperature"),
    "--min-crop-area": ("min_crop_area", float, "smallest share of the image a random crop keeps"),
    "--projection-layers": ("projection_layers", positive_int, "layers in the projection head"),
    "--seed": ("seed", int, "seed"),
    "--max-steps": ("max_steps", positive_int, "cap steps per epoch for a smoke run"),
    "--cache": ("cache", str, "cache decoded images: memory or a file prefix"),
    "--data-dir": ("data_dir", str, "MURA-v1.1/ or its parent (default: $MURA_DATA_DIR)"),
    "--out": ("out", str, "root folder of run outputs"),
    "--run": ("run_name", str, "run folder name"),
    "--strategy": ("strategy", str, "auto, one_device, mirrored or multi_worker (TF_CONFIG)"),
}


def configure(argv: Sequence[str] | None) -> PretrainConfig:
    from mura_tf.pretrain import apply_synthetic_preset

    parser = ArgumentParser(prog="python -m recipes.simclr_pretrain", description=__doc__)
    for flag, (name, kind, text) in FLAGS.items():
        default = getattr(CONFIG, name)
        parser.add_argument(
            flag, dest=name, type=kind, default=None, help=f"{text} (default: {default})"
        )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        default=None,
        help="use the embedded synthetic MURA; shrinks the run to CPU size",
    )
    parser.add_argument(
        "--overwrite", action="store_true", default=None, help="train again over a finished run"
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="deterministic ops: the same seed gives the same batches and losses",
    )
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    cfg = dataclasses.replace(CONFIG, **given)
    return apply_synthetic_preset(cfg, frozenset(given)) if cfg.synthetic else cfg


def main(argv: Sequence[str] | None = None) -> int:
    from mura_tf.pretrain import run_pretraining

    cfg = configure(argv)
    for note in cfg.notes:
        print(note)
    result = run_pretraining(cfg)
    m = result.metrics
    if not m:  # a multi-worker run's other workers; worker 0 reports
        print(f"worker finished; worker 0 writes the run's results ({result.run_dir})")
        return 0
    chosen = m["selected_epoch"]
    print(
        f"\nencoder handed over: epoch {chosen['epoch']} of {chosen['epochs_run']}, the best dev "
        f"NT-Xent {m['val_loss']:.3f} (train {m['loss']:.3f}), contrastive accuracy "
        f"{m['contrastive_accuracy']:.3f}"
    )
    if m["linear_probe"]:
        after, before = m["linear_probe"], m["linear_probe_at_init"]
        print(
            f"linear probe on the frozen encoder: image AUROC {after['image']['auc']:.3f} "
            f"(random init {before['image']['auc']:.3f}), study AUROC "
            f"{after['study']['auc']:.3f} (random init {before['study']['auc']:.3f})"
        )
    print(f"\nrun folder:   {result.run_dir}")
    print(f"encoder:      {result.run_dir / 'encoder.keras'}")
    print(f"TensorBoard:  tensorboard --logdir {result.run_dir / 'logs'}")
    print(
        f"fine-tune:    python -m recipes.simclr_finetune --encoder {result.run_dir} --fraction 0.1"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
