"""`mura-tf ensemble RUN RUN ... --out DIR`: average finished runs into one model;
`mura-tf ensemble --recipe NAME --members K [RECIPE FLAGS]`: train a recipe's K seeds first
(the recipe's `--ensemble K` does the same).

The ensemble is a run folder of its own (`mura_tf.runs.ensemble`): its export has the signatures of
a single run's, so `mura-tf evaluate` and `mura-tf predict` take it like any run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mura_tf.cli import at_least_two, command_parser, configure, run
from mura_tf.errors import ConfigError
from mura_tf.runs.kinds import kind_of_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser(
        "ensemble", "Average finished runs (same input size, same test films) into one model."
    )
    given_argv = list(sys.argv[1:] if argv is None else argv)
    training = "--recipe" in given_argv
    if not training:  # with --recipe, the recipe's own flags follow: no RUN positionals
        parser.add_argument("runs", nargs="+", metavar="RUN", help="finished run folders")
    parser.add_argument(
        "--out",
        help="the ensemble's run folder (with RUN folders); with --recipe, the runs' root folder "
        "(the recipe's --out)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a finished ensemble")
    if not training:
        parser.add_argument(
            "--data-dir",
            help="with RUN folders: where their data is now, if not where their config.json says "
            "(there, the ensemble's maps are scored on the films' outlines)",
        )
    parser.add_argument(
        "--recipe", help="instead of RUN folders: train this recipe's seeds (its flags follow)"
    )
    parser.add_argument(
        "--members", type=at_least_two, default=5,
        help="with --recipe: how many seeds, from --seed on",
    )  # fmt: skip
    if not training:
        args = parser.parse_args(given_argv)
        if args.out is None:
            parser.error("give finished RUN folders and --out, or --recipe NAME")
        # After parsing: --help and a wrong flag answer before TensorFlow loads.
        from mura_tf.runs.ensemble import build_ensemble, summary_lines

        built = build_ensemble(args.runs, args.out, args.overwrite, args.data_dir)
        print("\n".join(summary_lines(built)))
        return 0
    # The flags this parser does not know are the recipe's: its own parser checks them.
    args, rest = parser.parse_known_args(given_argv)
    base = recipe_config(args.recipe)
    given = [*rest, "--ensemble", str(args.members)] + (["--overwrite"] * args.overwrite)
    if args.out:
        given += ["--out", args.out]
    exp = configure(base, given, f"the seeds of recipes.{args.recipe}")
    if kind_of_config(type(exp)).section != "experiment":
        raise ConfigError(f"--recipe {args.recipe}: only supervised recipes are ensembled")
    from mura_tf.runs.ensemble import summary_lines, train_ensemble  # as above

    for note in exp.notes:
        print(note)
    print("\n".join(summary_lines(train_ensemble(exp, print))))
    return 0


def recipe_config(name: str):
    """The `CONFIG` of `recipes.<name>`."""
    import importlib

    try:
        return importlib.import_module(f"recipes.{name}").CONFIG
    except ModuleNotFoundError:
        raise ConfigError(f"--recipe {name}: no such recipe (python -m recipes.NAME)") from None


if __name__ == "__main__":
    sys.exit(run(main))
