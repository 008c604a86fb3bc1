"""MURA as a TensorFlow Datasets builder, `mura` (manual download: MURA needs registration).

Build it once from the unzipped folder, offline::

    tfds build mura --imports mura_tf.data.tfds_mura --manual_dir DIR_WITH_MURA-v1.1

then `tfds.load("mura")` gives the `train` and `valid` splits with one example per radiograph.
The catalogue (labels from the studies CSVs, unreadable PNGs skipped with a warning) is the
project's own `load_mura`, so TFDS and the recipes see the same images.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from mura_tf.data.datasets import MURA
from mura_tf.data.mura import find_mura_root, load_mura

_DESCRIPTION = """\
MURA (musculoskeletal radiographs), Stanford ML Group: 40,561 upper-limb radiographs from 14,863
studies of 12,173 patients, 7 body parts, each study labelled normal or abnormal by a
radiologist. `valid` is the public validation split (the test set of most papers).
"""

_CITATION = """\
@article{rajpurkar2017mura,
  title={MURA: Large Dataset for Abnormality Detection in Musculoskeletal Radiographs},
  author={Rajpurkar, Pranav and Irvin, Jeremy and Bagul, Aarti and Ding, Daisy and
          Duan, Tony and Mehta, Hershel and Yang, Brandon and Zhu, Kaylie and
          Laird, Dillon and Ball, Robyn L and others},
  journal={arXiv preprint arXiv:1712.06957},
  year={2017}
}
"""


class Mura(tfds.core.GeneratorBasedBuilder):
    """MURA-v1.1, read from a manually downloaded copy."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.1.0": "MURA-v1.1, the public release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Register at https://stanfordmlgroup.github.io/competitions/mura/, download "
        "MURA-v1.1.zip and unzip it into the manual folder (which then holds MURA-v1.1/)."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    # Stored as the original PNG bytes (L, LA, RGB, RGBA, 16-bit alike);
                    # decoding with 3 channels gives RGB, as the reports use.
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "label": tfds.features.ClassLabel(names=["normal", "abnormal"]),
                    "part": tfds.features.ClassLabel(names=list(MURA.parts)),
                    "patient": tfds.features.Text(),
                    "study": tfds.features.Text(),
                    "path": tfds.features.Text(),  # as in the CSVs: MURA-v1.1/train/...
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://stanfordmlgroup.github.io/competitions/mura/",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = find_mura_root(dl_manager.manual_dir)  # a MuraDataError says what is missing
        frame = load_mura(root)
        return {
            split: self._generate_examples(frame[frame["split"] == split], root)
            for split in ("train", "valid")
        }

    def _generate_examples(self, frame, root):
        for row in frame.itertuples(index=False):
            relative = "MURA-v1.1/" + Path(row.path).relative_to(root).as_posix()
            yield (
                relative,
                {
                    "image": row.path,
                    "label": int(row.label),
                    "part": row.part,
                    "patient": str(row.patient),
                    "study": str(row.study),
                    "path": relative,
                },
            )
