"""The one recipe contract: a recipe module is a config (`CONFIG`, a
`mura_tf.runs.config.RunConfig`) and `raise SystemExit(run(CONFIG))`. Its flags come from the
config's fields (`setting`)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from mura_tf.cli import ArgumentParser, number, whole_number
from mura_tf.cli import run as run_cli
from mura_tf.data.parts import PARTS, short_name
from mura_tf.errors import ConfigError, FieldError
from mura_tf.runs.config import RunConfig, flag_of, flags
from mura_tf.runs.kinds import kind_of_config
from mura_tf.runs.presets import synthetic_preset
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
    try:
        config = dataclasses.replace(config, **given)
        if notes:
            config = dataclasses.replace(config, notes=(*config.notes, *notes))
        return synthetic_preset(config, frozenset(given)) if config.synthetic else config
    except FieldError as e:  # the library names the field; the command line, its flag
        raise ConfigError(f"{flag_of(type(config), e.field)} {e.problem}") from None


def _other_datasets_parts(config: RunConfig, given: dict) -> list[str]:
    """A recipe's parts are MURA's (report 002 pre-trains on elbow, hand and shoulder); on
    another dataset, without --part, it takes all of that dataset's parts (noted)."""
    from mura_tf.data.catalogue import resolve_dataset

    if "part" in given or given.get("synthetic", config.synthetic):
        return []
    data_dir = given.get("data_dir", config.data_dir) or os.environ.get("MURA_DATA_DIR")
    dataset = resolve_dataset(
        given.get("dataset", config.dataset), data_dir, given.get("positive", config.positive)
    )
    if set(config.part) <= set(dataset.parts):
        return []
    given["part"] = "all"
    if config.parts_spec == "all":
        return []
    return [f"{dataset.title}: every part (the recipe's {config.parts_spec} are MURA's)"]


def run(
    config: RunConfig, description: str | None = None, argv: Sequence[str] | None = None
) -> int:
    """The one recipe contract: parse the flags over `config`, run it as its kind does
    (`mura_tf.runs.kinds`), print the kind's closing lines. `description` defaults to the
    recipe module's docstring."""
    description = description or (sys.modules["__main__"].__doc__ or "").strip()

    def main(args: Sequence[str] | None) -> int:
        chosen = configure(config, args, description)
        for note in chosen.notes:
            print(note)
        if getattr(chosen, "ensemble", 1) > 1:
            return _ensemble(chosen)
        kind = kind_of_config(type(chosen))
        result = kind.attribute(kind.run)(chosen)
        if not result.metrics:  # a multi-worker run's other workers; worker 0 reports
            print(f"worker finished; worker 0 writes the run's results ({result.run_dir})")
            return 0
        print("\n".join(kind.closing(result)))
        return 0

    return run_cli(main, argv)


def _ensemble(exp: Experiment) -> int:
    """`--ensemble K`: the K seeds, each resumable and kept as a run of its own (a finished one
    is not trained again), then their ensemble beside them."""
    from mura_tf.runs.config import read_run
    from mura_tf.runs.ensemble import build_ensemble, closing
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
    print("\n".join(closing(build_ensemble([m.run_dir() for m in members], out, exp.overwrite))))
    return 0
