"""FracAtlas as a TensorFlow Datasets builder, `fracatlas` (from a downloaded copy, offline)::

    mura-tf tfds-build --manual-dir DIR_WITH_FRACATLAS

then `tfds.load("fracatlas")` gives `train`, `valid` and `test` (`mura_tf.data.fracatlas`'s
fixed split), one example per film. The catalogue is the project's own `load_fracatlas`, so
TFDS and the recipes see the same films, labels and parts. Each film is stored as displayed
(EXIF orientation applied, `mura_tf.data.orientation`), losslessly as PNG, so the boxes line
up with it in any reader; the fracture boxes are TFDS bounding boxes on that film.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mura_tf.data.datasets import FRACATLAS
from mura_tf.data.fracatlas import find_fracatlas_root, load_fracatlas, load_outlines
from mura_tf.data.pipeline import decode_film

_DESCRIPTION = """\
FracAtlas: 4,083 musculoskeletal radiographs (hand, leg, hip, shoulder; films of several
regions are part `mixed`) from three hospitals in Bangladesh, 717 fractured, with
radiologists' fracture outlines. Licence: CC BY 4.0; changes: films stored with their EXIF
orientation applied; truncated films of the release skipped (see the build's warnings).
"""

_CITATION = """\
@article{abedeen2023fracatlas,
  title={FracAtlas: A Dataset for Fracture Classification, Localization and Segmentation of
         Musculoskeletal Radiographs},
  author={Abedeen, Iftekharul and Rahman, Md Ashiqur and Prottyasha, Fatema Zohra and
          Ahmed, Tasnim and Chowdhury, Tareque Mohmud and Shatabda, Swakkhar},
  journal={Scientific Data}, volume={10}, pages={521}, year={2023},
  doi={10.1038/s41597-023-02432-4}
}
"""


class Fracatlas(tfds.core.GeneratorBasedBuilder):
    """FracAtlas, read from a downloaded copy (`mura_tf.data.fracatlas`'s layout)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "The figshare release of 2023."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Download FracAtlas from figshare (doi:10.6084/m9.figshare.22363012) and unzip it into "
        "the manual folder (which then holds images/ and dataset.csv, or FracAtlas/)."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "label": tfds.features.ClassLabel(names=["not_fractured", "fractured"]),
                    "part": tfds.features.ClassLabel(names=list(FRACATLAS.parts)),
                    "fractures": tfds.features.Sequence(tfds.features.BBoxFeature()),
                    "path": tfds.features.Text(),  # relative to the folder: images/...
                }
            ),
            supervised_keys=("image", "label"),
            homepage=FRACATLAS.url,
            citation=_CITATION,
            license="CC BY 4.0",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = find_fracatlas_root(dl_manager.manual_dir).resolve()
        frame = load_fracatlas(root)
        outlines = load_outlines(root)
        return {
            split: self._generate_examples(frame[frame["split"] == split], root, outlines)
            for split in FRACATLAS.catalogue_splits
        }

    def _generate_examples(self, frame, root, outlines):

        for row in frame.itertuples(index=False):
            relative = Path(row.path).relative_to(root).as_posix()
            film = decode_film(tf.io.read_file(row.path)).numpy()
            h, w = film.shape[:2]
            outline = outlines.get(row.path)
            boxes = [
                tfds.features.BBox(
                    ymin=float(np.clip(y0 / h, 0, 1)),
                    xmin=float(np.clip(x0 / w, 0, 1)),
                    ymax=float(np.clip(y1 / h, 0, 1)),
                    xmax=float(np.clip(x1 / w, 0, 1)),
                )  # fmt: skip
                for x0, y0, x1, y1 in (outline.boxes if outline else ())
            ]
            yield (
                relative,
                {
                    "image": film,
                    "label": int(row.label),
                    "part": row.part,
                    "fractures": boxes,
                    "path": relative,
                },
            )
