"""Prepare a TFDS dataset offline from an unzipped MURA-v1.1 (`mura`) or FracAtlas
(`fracatlas`, `mura_tf.data.tfds_fracatlas`): `mura-tf tfds-build --manual-dir DIR --data-dir
TFDS_DIR`; the layout of DIR says which.

The same as `tfds build mura --imports mura_tf.data.tfds_mura --manual_dir DIR`, whose CLI in
tensorflow-datasets 4.9.10 imports apache-beam at start-up even for datasets that do not use it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mura_tf.cli import add_mura_folder, command_parser, mura_folder, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser(
        "tfds-build",
        "Write MURA or FracAtlas as TensorFlow Datasets records (dataset name: mura or "
        "fracatlas, from the layout of --manual-dir).",
    )
    add_mura_folder(parser, "--manual-dir")
    parser.add_argument(
        "--data-dir", default=None, help="TFDS data folder (default: ~/tensorflow_datasets)"
    )
    args = parser.parse_args(argv)
    args.manual_dir = mura_folder(args, "--manual-dir")

    import tensorflow_datasets as tfds

    from mura_tf.data.catalogue import detect_dataset, find_root
    from mura_tf.data.datasets import FRACATLAS

    dataset = detect_dataset(args.manual_dir)
    find_root(args.manual_dir, dataset)  # a one-line error before TFDS starts
    if dataset is FRACATLAS:
        from mura_tf.data.tfds_fracatlas import Fracatlas as Builder
    else:
        from mura_tf.data.tfds_mura import Mura as Builder
    builder = Builder(data_dir=args.data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir)
    )
    splits = builder.info.splits.items()
    counts = ", ".join(f"{name} {split.num_examples}" for name, split in splits)
    print(f"wrote {builder.data_dir} ({counts} images)")
    print(
        f'load it with: tfds.load("{builder.name}", data_dir=...) after importing '
        f"{Builder.__module__}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
