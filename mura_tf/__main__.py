"""`python -m mura_tf COMMAND [flags]`, installed as `mura-tf COMMAND`: every command in one place.

The recipes stay `python -m recipes.NAME`; `python -m mura_tf.COMMAND` keeps working too.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from mura_tf.cli import EXIT_USAGE, run

# command -> (module with `main(argv)`, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "synthetic": ("mura_tf.synthetic", "write a synthetic MURA-v1.1 folder (official layout)"),
    "explore": ("mura_tf.explore", "count studies and images per split and part; sample films"),
    "evaluate": ("mura_tf.evaluate", "evaluate a run's export on a MURA folder"),
    "report": ("mura_tf.report", "report 002's Table 4 and figures from finished runs"),
    "tfds-build": ("mura_tf.tfds_build", "build the TFDS dataset `mura` offline"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
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
    command = importlib.import_module(COMMANDS[name][0])
    return run(command.main, rest)


if __name__ == "__main__":
    sys.exit(main())
