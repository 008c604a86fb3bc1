"""`mura-tf ensemble RUN RUN ... --out DIR`: average finished runs into one model.

The ensemble is a run folder of its own (`mura_tf.runs.ensemble`): its export has the signatures of
a single run's, so `mura-tf evaluate` and `mura-tf predict` take it like any run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mura_tf.cli import command_parser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser(
        "ensemble", "Average finished runs (same input size, same test films) into one model."
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="finished run folders")
    parser.add_argument("--out", required=True, help="the ensemble's run folder")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished ensemble")
    args = parser.parse_args(argv)

    from mura_tf.runs.ensemble import build_ensemble, closing

    print("\n".join(closing(build_ensemble(args.runs, args.out, args.overwrite))))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
