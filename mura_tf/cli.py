"""Helpers for the command-line edges (`python -m mura_tf.*`, `python -m recipes.*`).

Library code raises `MuraError`; here it becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from mura_tf.errors import ConfigError, MuraError
from mura_tf.evaluators.thresholds import DEV_CHOICES, parse_threshold

EXIT_USAGE = 2


def start_tensorflow() -> None:
    """Start TensorFlow as the entry points want it: oneDNN on, without its C++ start-up log.

    Commands and recipes call this before anything imports TensorFlow; importing `mura_tf`
    itself changes no setting. TensorFlow turns its oneDNN kernels on by default only on CPUs
    with AVX-512 VNNI/BF16 or AMX; elsewhere (AVX2 machines) convolutions and their gradients
    fall back to Eigen and a ResNet18 training step is 1.4x slower, so the flag defaults to on
    here (`TF_ENABLE_ONEDNN_OPTS=0` in the environment still wins). TensorFlow reads it once,
    when it is first imported.

    `TF_CPP_MIN_LOG_LEVEL=0` or `1` in the environment (asking for TensorFlow's log) turns the
    quiet start off: then TensorFlow logs as it always does. A higher value of your own (`2`,
    `3`: the usual way to silence TensorFlow) is kept, and the start-up lines that no level
    hides are hidden too.
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
    # Messages logged before absl::InitializeLog (TensorFlow's import logs a dozen) go straight
    # to file descriptor 2, whatever TF_CPP_MIN_LOG_LEVEL says; hide it while TensorFlow loads.
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


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

    TensorFlow starts quietly (see `start_tensorflow`) unless it was imported before.
    """
    start_tensorflow()
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
