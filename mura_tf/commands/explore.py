"""Explore a dataset (MURA, FracAtlas, a folder of classes or a manifest):
`mura-tf explore --data-dir DIR --out OUT`.

Prints the reports' tables (Part / Normal / Abnormal / Total by studies and by images, per
split) and writes `summary.json`, `counts.png` and `samples.png` to OUT.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mura_tf.cli import Progress, add_mura_folder, command_parser, mura_folder, positive_int, run
from mura_tf.data.catalogue import load_catalogue
from mura_tf.data.summary import count_table, summarize
from mura_tf.evaluators.plots import plot_counts, plot_samples
from mura_tf.files import write_json


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser(
        "explore",
        "Tables, counts and sample images of a MURA-v1.1 or FracAtlas folder, a folder of "
        "classes or a CSV manifest.",
    )
    add_mura_folder(parser)
    parser.add_argument("--out", default="saved_models/explore", help="folder for the outputs")
    parser.add_argument("--part", default="all", help="a part (elbow ...), a comma list, or all")
    parser.add_argument(
        "--samples",
        type=positive_int,
        default=4,
        help="normal and abnormal images per part in samples.png",
    )
    parser.add_argument(
        "--strict", action="store_true", help="fail on an unreadable PNG instead of skipping it"
    )
    parser.add_argument("--seed", type=int, default=0, help="which sample images are shown")
    args = parser.parse_args(argv)
    args.data_dir = mura_folder(args)

    frame = load_catalogue(
        args.data_dir,
        args.part,
        positive=args.positive,
        strict=args.strict,
        progress=Progress("checking images"),
    )
    summary = summarize(frame)
    for split, counts in summary.items():
        for unit in ("studies", "images"):
            print(f"\n{split} split, by {unit}")
            print(count_table(counts, unit).to_string(index=False))
    out = Path(args.out)
    written = [
        write_json(out / "summary.json", summary),
        plot_counts(summary, out / "counts.png"),
        plot_samples(frame, out / "samples.png", per_class=args.samples, seed=args.seed),
    ]
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
