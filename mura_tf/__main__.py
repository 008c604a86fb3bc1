"""`python -m mura_tf COMMAND [flags]`, installed as `mura-tf COMMAND`: every command in one place.

Each command is a module of `mura_tf.commands` with `main(argv)`; the experiments are the
recipes, `python -m recipes.NAME`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from mura_tf.cli import EXIT_USAGE, run

# command -> what it does; its module is mura_tf.commands.<command with _ for ->
COMMANDS: dict[str, str] = {
    "synthetic": "write a synthetic MURA-v1.1 folder (official layout)",
    "explore": "count studies and images per split and part; sample films",
    "manifest": "write any dataset the project reads as a CSV manifest (path,label,...)",
    "predict": "abnormality per study for your own films (PNG, JPEG, DICOM) or a MURA folder",
    "evaluate": "evaluate a run's export on a labelled set (MURA, FracAtlas, your own films)",
    "ensemble": "average finished runs into one model (a run folder with an export)",
    "cascade": "route each study to its body part's model (part router + per-part runs)",
    "report": "report 002's Table 4 and figures from finished runs, or one run's report.html",
    "tfds-build": "build a TFDS dataset offline (mura, fracatlas, or your own films)",
    "serve": "a run's export behind TF Serving's REST API and a reader page (127.0.0.1)",
}


def command_module(name: str) -> str:
    return "mura_tf.commands." + name.replace("-", "_")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return (
        "usage: python -m mura_tf COMMAND [flags]   (or: mura-tf COMMAND [flags])\n\n"
        "commands:\n" + "\n".join(lines) + "\n\n"
        "python -m mura_tf COMMAND --help shows a command's flags; "
        "the experiments are python -m recipes.NAME"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else EXIT_USAGE
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(
            f"mura-tf: error: unknown command {name!r}: use one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    command = importlib.import_module(command_module(name))
    return run(command.main, rest)


if __name__ == "__main__":
    sys.exit(main())
