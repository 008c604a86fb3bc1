"""The command line of every edge (`python -m mura_tf.*`, `python -m recipes.*`): the
parsers, their value types, and a recipe's flags built from its settings' fields
(`build_parser`, `configure`).

Library code raises `MuraError`; here it becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.abc
import importlib.machinery
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from mura_tf.errors import ConfigError, FieldError, MuraError
from mura_tf.evaluators.thresholds import DEV_CHOICES, parse_threshold

if TYPE_CHECKING:
    from mura_tf.runs.settings import RunConfig

C = TypeVar("C", bound="RunConfig")

EXIT_USAGE = 2


def quiet_tensorflow() -> None:
    """Settle how TensorFlow starts, without loading it: oneDNN on, and the first import of
    `tensorflow`, wherever it happens, without its C++ start-up log. A command that never
    needs TensorFlow (`--help`, `explore`, `report`) never pays for loading it.

    TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512 VNNI/BF16 or
    AMX; elsewhere (AVX2 machines) convolutions and their gradients fall back to Eigen and a
    ResNet18 training step is 1.4x slower, so the flag defaults to on here
    (`TF_ENABLE_ONEDNN_OPTS=0` in the environment still wins). TensorFlow reads it once, when
    it is first imported.

    `TF_CPP_MIN_LOG_LEVEL=0` or `1` in the environment (asking for TensorFlow's log) turns the
    quiet start off: then TensorFlow logs as it always does. A higher value of your own (`2`,
    `3`: the usual way to silence TensorFlow) is kept, and the start-up lines that no level
    hides are hidden too. Importing `mura_tf` itself changes no setting: the entry points call
    this (`run`, `recipes`).
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    asked = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip()
    if asked in ("0", "1"):
        return
    # 3 also hides "failed call to cuInit" on machines without a GPU, which TensorFlow logs as
    # an error; real failures still reach the user as Python exceptions.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = asked or "3"
    if not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def start_tensorflow() -> None:
    """`quiet_tensorflow`, then load TensorFlow now (for processes that will need it anyway
    and want its start-up cost up front: the benchmarks, the tests)."""
    quiet_tensorflow()
    import tensorflow  # noqa: F401


@contextlib.contextmanager
def _file_descriptor_2_hidden() -> Iterator[None]:
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the other finders would, and loads it with file descriptor 2
    hidden: messages logged before absl::InitializeLog (TensorFlow's import logs a dozen) go
    straight there, whatever TF_CPP_MIN_LOG_LEVEL says. One use: it leaves `sys.meta_path`
    when it finds TensorFlow."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        # TensorFlow sees its own loader, as without this wrapper.
        module.__loader__ = module.__spec__.loader = self.loader
        with _file_descriptor_2_hidden():
            self.loader.exec_module(module)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    return f"warning: {message}\n"


def command_name() -> str:
    """How the user started this process, for error lines: `python -m recipes.resnet18_mlp`,
    `mura-tf` (the entry point, also as `python -m mura_tf`), or the script's name."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name == "mura_tf.__main__":
        return "mura-tf"
    if spec is not None and spec.name:
        return f"python -m {spec.name}"
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "mura-tf"


def run(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> int:
    """Call `main(argv)`; turn a `MuraError` or Ctrl-C into one line and an exit status.

    TensorFlow starts quietly when something first imports it (`quiet_tensorflow`), unless it
    was imported before.
    """
    quiet_tensorflow()
    warnings.formatwarning = _one_line_warning
    prog = command_name()
    try:
        return int(main(argv) or 0)
    except MuraError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the flag, with a pointer to --help."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def command_parser(command: str, description: str) -> ArgumentParser:
    """The parser of `mura-tf COMMAND`, showing each flag's default."""
    return ArgumentParser(
        prog=f"mura-tf {command}",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def add_mura_folder(parser: argparse.ArgumentParser, flag: str = "--data-dir") -> None:
    """A flag naming the data (`$MURA_DATA_DIR` by default) and `--positive`, for a user's own
    films; after parsing, call `mura_folder(args, flag)`."""
    parser.add_argument(
        flag,
        default=os.environ.get("MURA_DATA_DIR"),
        help="MURA-v1.1/ or the folder holding it, a FracAtlas folder, a folder of classes or "
        "a CSV manifest (docs/own-films.md) (default: $MURA_DATA_DIR)",
    )
    parser.add_argument(
        "--positive",
        default=None,
        help="your own films: the label or class folder that is positive (default: 1, or the "
        "one named abnormal, fractured or positive)",
    )


def mura_folder(args: argparse.Namespace, flag: str = "--data-dir") -> str:
    """The parsed value of `add_mura_folder`'s flag; `ConfigError` when there is none."""
    value = getattr(args, flag.lstrip("-").replace("-", "_"))
    if not value:
        raise ConfigError(f"no data folder: pass {flag} or set MURA_DATA_DIR")
    return value


def whole_number(text: str) -> int:
    """argparse type: an integer (its range is the config's to check)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def number(text: str) -> float:
    """argparse type: a real number."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _int_at_least(minimum: int, wording: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {wording}, got {value}")
        return value

    return parse


positive_int = _int_at_least(1, "at least 1")  # argparse type: an integer >= 1
non_negative_int = _int_at_least(0, "0 or more")  # argparse type: an integer >= 0
at_least_two = _int_at_least(2, "at least 2")  # argparse type: an integer >= 2


def add_threshold(parser: argparse.ArgumentParser) -> None:
    """`--threshold`: the probability at which a study is called positive (parsed by
    `evaluators.thresholds.parse_threshold`; resolved against the model's run afterwards)."""

    def parsed(text: str) -> float | str:
        try:
            return parse_threshold(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parser.add_argument(
        "--threshold", type=parsed, default=None, metavar="P|dev",
        help="decide a study positive at probability >= P (default 0.5, MURA's protocol), or "
        "at a threshold the run chose on its dev split: " + ", ".join(DEV_CHOICES)
        + " (dev = dev-youden)",
    )  # fmt: skip


class Progress:
    """A `progress(done, total)` callback drawing a Keras progress bar on stderr."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if not sys.stderr.isatty() and total < 2000:
            return  # short jobs in logs and CI need no bar
        if self.bar is None:
            from keras.utils import Progbar

            print(self.label, file=sys.stderr)
            self.bar = Progbar(total, unit_name="file")
        self.bar.update(done)


# --- Flags from a run's settings (the recipes') ---------------------------------------------


def _kind(annotation: str) -> Callable[[str], object] | type[bool]:
    """The argparse type of a field annotated `annotation` (a string: postponed annotations).
    Comma lists stay text: the config parses them, and checks every range."""
    kinds = {"bool": bool, "int": whole_number, "float": number}
    return kinds.get(annotation.split(" | ")[0], str)


def _shown(value: object) -> str:
    from mura_tf.data.parts import PARTS, short_name  # as in `build_parser`

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
    """A recipe's flags, one per config field that has command-line metadata
    (`mura_tf.runs.settings.setting`); each shows the recipe's value as its default. Unset
    flags parse to None."""
    # Here, not at the top: every command imports this module, and `--help` should not wait
    # for numpy, Pillow and pandas (a recipe has them loaded already).
    from mura_tf.runs.settings import flags

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
    from mura_tf.runs.presets import synthetic_preset  # as in `build_parser`
    from mura_tf.runs.settings import flag_of

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
    from mura_tf.data.catalogue import resolve_dataset  # as in `build_parser`

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
