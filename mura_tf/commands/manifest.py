"""`mura-tf manifest --data-dir DIR --out manifest.csv`: any dataset the project reads, as a
manifest (`mura_tf.data.manifest`).

MURA, FracAtlas, the synthetic set, a folder of classes or another manifest is written as one
CSV of `path,label,patient,study,part,split,view` (paths relative to the CSV), the catalogue
every recipe and command reads; `--data-dir manifest.csv` then reads the same films, labels,
studies and splits. Unreadable films are left out, with the reader's warnings.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mura_tf.cli import Progress, add_mura_folder, command_parser, mura_folder, run
from mura_tf.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser(
        "manifest",
        "Write a dataset (MURA, FracAtlas, a folder of classes or a manifest) as a CSV manifest "
        "of path,label,patient,study,part,split,view.",
    )
    add_mura_folder(parser)
    parser.add_argument("--out", required=True, help="the CSV file to write")
    parser.add_argument("--part", default="all", help="a part (elbow ...), a comma list, or all")
    parser.add_argument(
        "--strict", action="store_true", help="fail on an unreadable film instead of leaving it out"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    args.data_dir = mura_folder(args)
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"--out {out}: a manifest is a .csv file")
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists: pass --overwrite, or another --out")

    # After parsing: --help and a wrong flag answer before TensorFlow loads.
    from mura_tf.data.catalogue import load_catalogue
    from mura_tf.data.manifest import write_manifest

    frame = load_catalogue(
        args.data_dir,
        args.part,
        positive=args.positive,
        strict=args.strict,
        progress=Progress("checking films"),
    )
    write_manifest(frame, out)
    counts = frame.groupby("split", sort=False).size()
    print(
        f"wrote {out} ({len(frame)} films: "
        + ", ".join(f"{split} {n}" for split, n in counts.items())
        + f"); train from it with --data-dir {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
