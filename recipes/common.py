"""The command line shared by every recipe: common flags over a recipe's `Experiment`."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Sequence

from mura_tf.cli import ArgumentParser, positive_int
from mura_tf.cli import run as run_cli
from mura_tf.experiment import Experiment

# Report 000 (ResNet18 transfer learning): what its four experiments share. Its recipes
# replace only the fields in which they differ. The report gives no batch size: 32 is used.
REPORT_000 = Experiment(
    recipe="report_000",
    backbone="resnet18",
    head="linear",
    freeze_backbone=True,
    optimizer="adam",
    learning_rate=1e-3,
    epochs=10,
    batch_size=32,
    eval_batch_size=64,
    image_size=256,
    augment=("autocontrast", "hflip"),
    dev_fraction=0.10,
    patience=4,
    part="all",
)

# flag -> (Experiment field, argparse keyword arguments)
FLAGS: dict[str, tuple[str, dict]] = {
    "--part": (
        "part",
        dict(
            help="body part (elbow, finger, forearm, hand, humerus, shoulder, wrist), "
            "a comma list, or all"
        ),
    ),
    "--data-dir": ("data_dir", dict(help="MURA-v1.1/ or its parent (default: $MURA_DATA_DIR)")),
    "--epochs": ("epochs", dict(type=positive_int)),
    "--batch-size": ("batch_size", dict(type=positive_int, help="training batch size")),
    "--eval-batch-size": ("eval_batch_size", dict(type=positive_int)),
    "--image-size": ("image_size", dict(type=positive_int, help="square input side in pixels")),
    "--lr": ("learning_rate", dict(type=float, help="learning rate (the first one of a schedule)")),
    "--weights": ("weights", dict(help="imagenet, none, or a path to a weights file")),
    "--seed": ("seed", dict(type=int)),
    "--dev-fraction": (
        "dev_fraction",
        dict(type=float, help="share of train held out (by patient) for model selection"),
    ),
    "--augment": (
        "augment",
        dict(help="comma list of autocontrast, hflip, rotate, translate, scale; or none"),
    ),
    "--monitor": (
        "monitor",
        dict(
            choices=["val_accuracy", "val_auc", "val_loss"],
            help="dev metric for early stopping and the best checkpoint",
        ),
    ),
    "--fraction": (
        "label_fraction",
        dict(type=float, help="share of labelled training studies to use (0.01, 0.1, 1.0)"),
    ),
    "--encoder": (
        "weights",
        dict(help="a simclr_pretrain run folder (or its encoder.keras) to start from"),
    ),
    "--mode": (
        "freeze_backbone",
        dict(choices=["finetune", "linear"], help="train the whole network, or a linear head only"),
    ),
    "--patience": ("patience", dict(type=int, help="early-stopping patience in epochs (0: off)")),
    "--max-steps": (
        "max_steps",
        dict(type=positive_int, help="cap steps per epoch (and dev steps) for a quick smoke run"),
    ),
    "--intermediate-epochs": (
        "intermediate_epochs",
        dict(type=int, help="epochs of the body-part task before the binary one"),
    ),
    "--cache": ("cache", dict(help="cache decoded images: memory, or a file prefix")),
    "--jit-compile": (
        "jit_compile",
        dict(choices=["auto", "true", "false"], help="XLA compilation of the train step"),
    ),
    "--strategy": (
        "strategy",
        dict(
            choices=["auto", "one_device", "mirrored", "multi_worker"],
            help="tf.distribute strategy; auto is mirrored when several GPUs are visible; "
            "multi_worker reads the cluster from TF_CONFIG (README: Scaling out)",
        ),
    ),
    "--out": ("out", dict(help="root folder of run outputs")),
    "--run": (
        "run_name",
        dict(
            help="run folder name (default: seed and a hash of the settings, "
            "so the same command resumes)"
        ),
    ),
}
SWITCHES: dict[str, tuple[str, str]] = {
    "--synthetic": (
        "synthetic",
        "generate (once) and use the embedded synthetic MURA; shrinks the run to CPU size",
    ),
    "--class-weights": (
        "class_weights",
        "weight the loss by the MURA paper's |N|/(|A|+|N|) scheme",
    ),
    "--reduce-lr-on-plateau": (
        "reduce_lr_on_plateau",
        "divide the learning rate by 10 when dev accuracy stalls",
    ),
    "--mixed-precision": ("mixed_precision", "float16 compute (helps on GPUs with tensor cores)"),
    "--keep-aspect": ("keep_aspect", "pad to square instead of stretching"),
    "--overwrite": ("overwrite", "train again over a finished run folder"),
    "--strict": ("strict", "fail on an unreadable PNG instead of skipping it with a warning"),
    "--deterministic": (
        "deterministic",
        "deterministic ops: the same seed gives the same batches and metrics (slower on GPU)",
    ),
}


def build_parser(experiment: Experiment, description: str) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=f"python -m recipes.{experiment.recipe}", description=description)
    for flag, (name, kwargs) in FLAGS.items():
        default = getattr(experiment, name)
        if isinstance(default, tuple):
            default = ",".join(default) or "none"
        if flag == "--mode":
            default = "linear" if default else "finetune"
        kwargs = dict(kwargs)  # FLAGS is shared by every parser built in this process
        help_text = kwargs.pop("help", name.replace("_", " "))
        if "(default:" not in help_text:
            help_text = f"{help_text} (default: {default})"
        parser.add_argument(flag, dest=name, default=None, help=help_text, **kwargs)
    freeze = "frozen" if experiment.freeze_backbone else "trainable"
    parser.add_argument(
        "--freeze",
        dest="freeze_backbone",
        default=None,
        action=argparse.BooleanOptionalAction,
        help=f"freeze the backbone (default: {freeze})",
    )
    for flag, (name, help_text) in SWITCHES.items():
        parser.add_argument(flag, dest=name, default=None, action="store_true", help=help_text)
    return parser


def configure(experiment: Experiment, argv: Sequence[str] | None, description: str) -> Experiment:
    """Apply the command line to `experiment` (and the synthetic preset when asked)."""
    from mura_tf.data.augment import parse_augmentations
    from mura_tf.experiment import apply_synthetic_preset

    args = vars(build_parser(experiment, description).parse_args(argv))
    given = {k: v for k, v in args.items() if v is not None}
    if given.get("freeze_backbone") in ("finetune", "linear"):  # --mode
        given["freeze_backbone"] = given["freeze_backbone"] == "linear"
    if "augment" in given:
        given["augment"] = parse_augmentations(given["augment"])
    exp = dataclasses.replace(experiment, **given)
    if exp.synthetic:
        exp = apply_synthetic_preset(exp, frozenset(given))
    return exp


def describe_selection(selected: dict) -> str:
    """`metrics.json`'s `selected_epoch` as one phrase: which epoch, and why."""
    how = "early stopping" if selected["stopped_early"] else "all epochs run"
    return (
        f"epoch {selected['epoch']} of {selected['epochs_run']} ({how}), the best dev "
        f"{selected['monitor']} = {selected['value']:.4f}"
    )


def run(
    experiment: Experiment, description: str | None = None, argv: Sequence[str] | None = None
) -> int:
    """Parse the common flags, train, evaluate and export; print where everything went."""
    description = description or (sys.modules["__main__"].__doc__ or "").strip()

    def main(args: Sequence[str] | None) -> int:
        from mura_tf.experiment import run_experiment
        from mura_tf.metrics import metrics_table

        exp = configure(experiment, args, description)
        for note in exp.notes:
            print(note)
        result = run_experiment(exp)
        if not result.metrics:  # a multi-worker run's other workers; worker 0 reports
            print(f"worker finished; worker 0 writes the run's results ({result.run_dir})")
            return 0
        print("\nTest metrics (MURA valid split; study = mean of the views' probabilities)")
        print(metrics_table(result.metrics).to_string())
        if "body_part" in result.extra:
            stage = result.extra["body_part"]
            print(
                f"\nbody-part task: macro F1 {stage['macro_f1']:.3f} "
                f"({describe_selection(stage['selected_epoch'])})"
            )
        print(f"\nmodel handed over: {describe_selection(result.metrics['selected_epoch'])}")
        run_dir = result.run_dir
        print(f"\nrun folder:   {run_dir}")
        print(f"SavedModel:   {run_dir / 'export'}")
        print(f"TensorBoard:  tensorboard --logdir {shlex.quote(str(run_dir / 'logs'))}")
        if exp.synthetic:
            from mura_tf.experiment import resolve_data_dir

            data = shlex.quote(resolve_data_dir(exp))
        else:  # $MURA_DATA_DIR stays a variable for the shell to expand
            data = shlex.quote(exp.data_dir) if exp.data_dir else '"$MURA_DATA_DIR"'
        model = shlex.quote(str(run_dir / "export"))
        print(f"evaluate:     python -m mura_tf.evaluate --model {model} --data-dir {data}")
        return 0

    return run_cli(main, argv)
