"""`mura-tf cascade --router ROUTER --experts RUN... [--fallback RUN] --out DIR`: report 000's
part-router cascade assembled from finished runs (`mura_tf.runs.cascade`).

The router (`python -m recipes.part_router`) sends each study to the part its views vote
for; the expert of that part (a run trained on that part alone) scores it, or the fallback (a
run on every part) for a part without an expert. The cascade is a run folder with one
SavedModel holding them all, its test metrics and the router's confusion matrix.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mura_tf.cli import command_parser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser(
        "cascade",
        "Route each study to its body part's model: a part router, one expert run per part, "
        "a fallback for the rest.",
    )
    parser.add_argument("--router", required=True, help="a finished part_router run folder")
    parser.add_argument(
        "--experts", nargs="+", default=[], metavar="RUN",
        help="finished runs trained on one part each (their config says which)",
    )  # fmt: skip
    parser.add_argument(
        "--fallback", metavar="RUN", help="a finished all-parts run for parts without an expert"
    )
    parser.add_argument("--out", required=True, help="the cascade's run folder")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished cascade")
    args = parser.parse_args(argv)

    # After parsing: --help and a wrong flag answer before TensorFlow loads.
    from mura_tf.data.parts import short_name
    from mura_tf.runs.cascade import build_cascade, plan_cascade, summary_lines

    plan = plan_cascade(args.router, args.experts, args.fallback)
    for part in plan.parts:
        expert = plan.experts[part]
        kind = "fallback" if plan.fallback is expert else "expert"
        print(f"{short_name(part):>9} -> {kind} {expert.run_dir}")
    print("\n".join(summary_lines(build_cascade(plan, args.out, args.overwrite))))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
