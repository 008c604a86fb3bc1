"""Prepare the TFDS `mura` dataset offline from an unzipped MURA-v1.1:
`python -m mura_tf.tfds_build --manual-dir DIR --data-dir TFDS_DIR`.

The same as `tfds build mura --imports mura_tf.data.tfds_mura --manual_dir DIR`, whose CLI in
tensorflow-datasets 4.9.10 imports apache-beam at start-up even for datasets that do not use it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mura_tf.cli import ArgumentParser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m mura_tf.tfds_build",
        description="Write MURA as TensorFlow Datasets records (dataset name: mura).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--manual-dir",
        default=os.environ.get("MURA_DATA_DIR"),
        help="the folder holding MURA-v1.1/ (default: $MURA_DATA_DIR)",
    )
    parser.add_argument(
        "--data-dir", default=None, help="TFDS data folder (default: ~/tensorflow_datasets)"
    )
    args = parser.parse_args(argv)
    if not args.manual_dir:
        parser.error("--manual-dir is required (or set MURA_DATA_DIR)")

    import tensorflow_datasets as tfds

    from mura_tf.data.mura import find_mura_root
    from mura_tf.data.tfds_mura import Mura

    find_mura_root(args.manual_dir)  # a one-line error before TFDS starts
    builder = Mura(data_dir=args.data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir)
    )
    splits = builder.info.splits.items()
    counts = ", ".join(f"{name} {split.num_examples}" for name, split in splits)
    print(f"wrote {builder.data_dir} ({counts} images)")
    print('load it with: tfds.load("mura", data_dir=...) after importing mura_tf.data.tfds_mura')
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
