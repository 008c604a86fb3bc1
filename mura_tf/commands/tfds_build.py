"""Prepare a TFDS dataset offline from an unzipped MURA-v1.1 (`mura`), FracAtlas
(`fracatlas`, `mura_tf.data.tfds_fracatlas`) or a user's own films, a manifest or a folder of
classes (`own_films`, `mura_tf.data.tfds_own`): `mura-tf tfds-build --manual-dir DIR
--data-dir TFDS_DIR`; the layout of DIR says which.

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
        "Write MURA, FracAtlas or your own films as TensorFlow Datasets records (dataset "
        "name: mura, fracatlas or own_films, from the layout of --manual-dir).",
    )
    add_mura_folder(parser, "--manual-dir")
    parser.add_argument(
        "--data-dir", default=None, help="TFDS data folder (default: ~/tensorflow_datasets)"
    )
    args = parser.parse_args(argv)
    args.manual_dir = mura_folder(args, "--manual-dir")

    # After parsing: --help and a wrong flag answer before TensorFlow loads.
    import tensorflow_datasets as tfds

    from mura_tf.data.catalogue import detect_dataset, find_root, is_own_films
    from mura_tf.data.datasets import FRACATLAS

    dataset = detect_dataset(args.manual_dir, args.positive)
    find_root(args.manual_dir, dataset)  # a one-line error before TFDS starts
    if is_own_films(args.manual_dir):
        # After parsing: --help and a wrong flag answer before TensorFlow loads.
        from mura_tf.data.tfds_own import OwnFilms as Builder

        builder = Builder(dataset=dataset, positive=args.positive, data_dir=args.data_dir)
    else:
        if dataset is FRACATLAS:
            # After parsing: --help and a wrong flag answer before TensorFlow loads.
            from mura_tf.data.tfds_fracatlas import Fracatlas as Builder
        else:
            # After parsing: --help and a wrong flag answer before TensorFlow loads.
            from mura_tf.data.tfds_mura import Mura as Builder
        builder = Builder(data_dir=args.data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=args.manual_dir)
    )
    splits = builder.info.splits.items()
    counts = ", ".join(f"{name} {split.num_examples}" for name, split in splits)
    print(f"wrote {builder.data_dir} ({counts} images)")
    if builder.name == "own_films":  # its classes and parts are in the prepared folder
        print(f'load it with: tfds.builder_from_directory("{builder.data_dir}").as_dataset()')
    else:
        print(
            f'load it with: tfds.load("{builder.name}", data_dir=...) after importing '
            f"{Builder.__module__}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
