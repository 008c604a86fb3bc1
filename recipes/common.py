"""The one recipe contract: a recipe module is a config (`CONFIG`, a
`mura_tf.runs.config.RunConfig`) and `raise SystemExit(run(CONFIG))`. Its flags come from the
config's fields (`setting`)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from mura_tf.cli import ArgumentParser, number, whole_number
from mura_tf.cli import run as run_cli
from mura_tf.data.parts import PARTS, short_name
from mura_tf.runs.config import RunConfig, flags
from mura_tf.runs.presets import synthetic_preset
from mura_tf.runs.pretrain import PretrainConfig
from mura_tf.runs.router import RouterConfig
from mura_tf.runs.supervised import Experiment

C = TypeVar("C", bound=RunConfig)

# Report 000 (ResNet18 transfer learning): what its four experiments share. Its recipes
# replace only the fields in which they differ. The report gives no batch size: 32 is used.
# It stops early and hands over the epoch by dev accuracy; on real films the majority answer
# already scores 0.71 (MURA's forearm) to 0.82 (FracAtlas) there, so accuracy hands over the
# first epoch that says "normal" to everything. Dev AUROC is the default here instead
# (README, "Real films"); `--monitor val_accuracy` is the report's rule.
MONITOR = "val_auc"
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
    monitor=MONITOR,
    part="all",
)


def _kind(annotation: str) -> Callable[[str], object] | type[bool]:
    """The argparse type of a field annotated `annotation` (a string: postponed annotations).
    Comma lists stay text: the config parses them, and checks every range."""
    kinds = {"bool": bool, "int": whole_number, "float": number}
    return kinds.get(annotation.split(" | ")[0], str)


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        if set(value) == set(PARTS):
            return "all"
        return ",".join(short_name(v) if v in PARTS else str(v) for v in value) or "none"
    return str(value)


class _Choice(argparse.Action):
    """An alias flag whose choices map to the field's values (`--mode linear` -> True)."""

    def __call__(self, parser, namespace, value, option_string=None):
        setattr(namespace, self.dest, self.const[value])


def build_parser(config: RunConfig, description: str) -> argparse.ArgumentParser:
    """The recipe's flags, one per config field that has command-line metadata (`setting`);
    each shows the recipe's value as its default. Unset flags parse to None."""
    parser = ArgumentParser(prog=f"python -m recipes.{config.recipe}", description=description)
    for f, flag in flags(type(config)):
        name = flag.name or "--" + f.name.replace("_", "-")
        default = getattr(config, f.name)
        kind = _kind(f.type)
        if kind is bool and flag.negatable:
            text = f"{flag.help} (default: {'yes' if default else 'no'})"
            action = argparse.BooleanOptionalAction
            parser.add_argument(name, dest=f.name, action=action, default=None, help=text)
        elif kind is bool:
            parser.add_argument(
                name, dest=f.name, action="store_true", default=None, help=flag.help
            )
        else:
            text = flag.help
            if default is not None and "(default:" not in text:
                text = f"{text} (default: {_shown(default)})"
            parser.add_argument(
                name, dest=f.name, type=kind, choices=flag.choices, default=None, help=text
            )
        for alias in flag.aliases:
            if alias.values:
                parser.add_argument(
                    alias.flag, dest=f.name, action=_Choice, choices=list(alias.values),
                    const=alias.values, default=None, help=alias.help,
                )  # fmt: skip
            else:
                parser.add_argument(alias.flag, dest=f.name, type=kind, help=alias.help)
    return parser


def configure(config: C, argv: Sequence[str] | None, description: str = "") -> C:
    """Apply the command line to `config` (and the synthetic preset when asked)."""
    args = vars(build_parser(config, description).parse_args(argv))
    given = {k: v for k, v in args.items() if v is not None}
    notes = _other_datasets_parts(config, given)
    config = dataclasses.replace(config, **given)
    if notes:
        config = dataclasses.replace(config, notes=(*config.notes, *notes))
    return synthetic_preset(config, frozenset(given)) if config.synthetic else config


def _other_datasets_parts(config: RunConfig, given: dict) -> list[str]:
    """A recipe's parts are MURA's (report 002 pre-trains on elbow, hand and shoulder); on
    another dataset, without --part, it takes all of that dataset's parts (noted)."""
    from mura_tf.data.catalogue import resolve_dataset

    if "part" in given or given.get("synthetic", config.synthetic):
        return []
    data_dir = given.get("data_dir", config.data_dir) or os.environ.get("MURA_DATA_DIR")
    dataset = resolve_dataset(given.get("dataset", config.dataset), data_dir)
    if set(config.part) <= set(dataset.parts):
        return []
    given["part"] = "all"
    return [f"{dataset.title}: every part (the recipe's {config.parts_spec} are MURA's)"]


def describe_selection(selected: dict) -> str:
    """`metrics.json`'s `selected_epoch` as one phrase: which epoch, and why."""
    how = "early stopping" if selected["stopped_early"] else "all epochs run"
    return (
        f"epoch {selected['epoch']} of {selected['epochs_run']} ({how}), the best dev "
        f"{selected['monitor']} = {selected['value']:.4f}"
    )


def run(
    config: RunConfig, description: str | None = None, argv: Sequence[str] | None = None
) -> int:
    """The one recipe contract: parse the flags over `config`, run it, print where everything
    went. `description` defaults to the recipe module's docstring."""
    description = description or (sys.modules["__main__"].__doc__ or "").strip()

    def main(args: Sequence[str] | None) -> int:
        chosen = configure(config, args, description)
        for note in chosen.notes:
            print(note)
        if isinstance(chosen, PretrainConfig):
            return _run_pretraining(chosen)
        if isinstance(chosen, RouterConfig):
            return _router(chosen)
        return _experiment(chosen)

    return run_cli(main, argv)


def _print_where(run_dir: Path, model: tuple[str, Path] | None = None) -> None:
    """The closing printout's places: the run folder, what it hands over, its report and its
    TensorBoard command."""
    print(f"\nrun folder:   {run_dir}")
    if model is not None:
        print(f"{model[0]:<14}{model[1]}")
    print(f"report:       {run_dir / 'report.html'}")
    print(f"TensorBoard:  tensorboard --logdir {shlex.quote(str(run_dir / 'logs'))}")


def _ensemble(exp: Experiment) -> int:
    """`--ensemble K`: the K seeds, each resumable and kept as a run of its own (a finished one
    is not trained again), then their ensemble beside them."""
    from mura_tf.commands.ensemble import print_ensemble
    from mura_tf.runs.config import read_run
    from mura_tf.runs.ensemble import build_ensemble
    from mura_tf.runs.supervised import run_experiment

    members = [dataclasses.replace(exp, seed=exp.seed + k, ensemble=1) for k in range(exp.ensemble)]
    for k, member in enumerate(members, 1):
        if read_run(member.run_dir()) is not None and not exp.overwrite:
            print(f"member {k}/{exp.ensemble}: seed {member.seed} already finished")
            continue
        print(f"member {k}/{exp.ensemble}: seed {member.seed}")
        run_experiment(member)
    first = members[0].run_dir()
    out = first.with_name(f"ensemble{exp.ensemble}-{first.name}")
    result = build_ensemble([m.run_dir() for m in members], out, exp.overwrite)
    print_ensemble(result, f"{exp.ensemble} seeds")
    return 0


def _experiment(exp: Experiment) -> int:
    from mura_tf.evaluators.metrics import interval_table, metrics_table
    from mura_tf.runs.supervised import run_experiment

    if exp.ensemble > 1:
        return _ensemble(exp)
    result = run_experiment(exp)
    if not result.metrics:  # a multi-worker run's other workers; worker 0 reports
        print(f"worker finished; worker 0 writes the run's results ({result.run_dir})")
        return 0
    info = exp.data_info
    print(
        f"\nTest metrics ({info.title} {info.test_split} split; study = mean of the views' "
        "probabilities)"
    )
    print(metrics_table(result.metrics).to_string())
    intervals = interval_table(result.metrics)
    if not intervals.empty:
        print(f"\n95% intervals ({result.metrics['intervals']['method']})")
        print(intervals.to_string())
    if "body_part" in result.extra:
        stage = result.extra["body_part"]
        print(
            f"\nbody-part task: macro F1 {stage['macro_f1']:.3f} "
            f"({describe_selection(stage['selected_epoch'])})"
        )
    print(f"\nmodel handed over: {describe_selection(result.metrics['selected_epoch'])}")
    run_dir = result.run_dir
    _print_where(run_dir, ("SavedModel:", run_dir / "export"))
    if exp.synthetic:
        data = shlex.quote(exp.data_folder())
    else:  # $MURA_DATA_DIR stays a variable for the shell to expand
        data = shlex.quote(exp.data_dir) if exp.data_dir else '"$MURA_DATA_DIR"'
    model = shlex.quote(str(run_dir / "export"))
    print(f"evaluate:     python -m mura_tf evaluate --model {model} --data-dir {data}")
    print(f"predict:      python -m mura_tf predict --model {shlex.quote(str(run_dir))} FILMS...")
    return 0


def _router(cfg: RouterConfig) -> int:
    from mura_tf.evaluators.routing import confusion_frame
    from mura_tf.runs.router import run_router

    result = run_router(cfg)
    routing = result.metrics["router"]
    print("\nBody-part routing of the test films (MURA valid split)")
    print(
        f"views:   accuracy {routing['image']['accuracy']:.3f}, macro F1 "
        f"{routing['image']['macro_f1']:.3f} ({routing['image']['n']} films)"
    )
    print(
        f"studies: accuracy {routing['study']['accuracy']:.3f} by majority vote of the views "
        f"({routing['wrong_part_studies']} of {routing['studies']} to the wrong part; views "
        f"disagreed in {routing['views_disagreed_studies']})"
    )
    print(confusion_frame(routing).to_string())
    print(f"\nmodel handed over: {describe_selection(result.metrics['selected_epoch'])}")
    _print_where(result.run_dir)
    print(
        f"cascade:      python -m mura_tf cascade --router {shlex.quote(str(result.run_dir))} "
        "--experts PART_RUN... [--fallback ALL_PARTS_RUN] --out DIR"
    )
    return 0


def _run_pretraining(cfg: PretrainConfig) -> int:
    from mura_tf.runs.pretrain import run_pretraining

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
    run_dir = shlex.quote(str(result.run_dir))
    _print_where(result.run_dir, ("encoder:", result.run_dir / "encoder.keras"))
    print(f"fine-tune:    python -m recipes.simclr_finetune --encoder {run_dir} --fraction 0.1")
    return 0
