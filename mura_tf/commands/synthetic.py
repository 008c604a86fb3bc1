"""Write a synthetic MURA-v1.1 folder: `mura-tf synthetic --out DIR`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mura_tf.cli import Progress, command_parser, positive_int, run
from mura_tf.data.synthetic import SyntheticConfig, generate_synthetic


def main(argv: Sequence[str] | None = None) -> int:
    defaults = SyntheticConfig()
    parser = command_parser(
        "synthetic",
        "Generate a small synthetic MURA-v1.1 (official layout and CSVs) with a "
        "learnable abnormality signal, for tests and quick starts.",
    )
    parser.add_argument("--out", required=True, help="folder to create MURA-v1.1/ in")
    parser.add_argument(
        "--patients-per-part",
        type=positive_int,
        default=defaults.patients_per_part,
        help="training patients per body part",
    )
    parser.add_argument(
        "--valid-patients-per-part",
        type=positive_int,
        default=defaults.valid_patients_per_part,
        help="valid (test) patients per part",
    )
    parser.add_argument(
        "--min-side", type=positive_int, default=defaults.min_side, help="smallest image side (px)"
    )
    parser.add_argument(
        "--max-side", type=positive_int, default=defaults.max_side, help="largest image side (px)"
    )
    parser.add_argument("--parts", default="all", help="comma-separated parts, e.g. elbow,hand")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing MURA-v1.1/")
    args = parser.parse_args(argv)
    config = SyntheticConfig(
        patients_per_part=args.patients_per_part,
        valid_patients_per_part=args.valid_patients_per_part,
        min_side=args.min_side,
        max_side=args.max_side,
        parts=args.parts,
        seed=args.seed,
    )
    root = generate_synthetic(
        args.out, config, overwrite=args.overwrite, progress=Progress("writing studies")
    )
    n = sum(1 for _ in root.rglob("*.png"))
    print(f"wrote {n} images to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
