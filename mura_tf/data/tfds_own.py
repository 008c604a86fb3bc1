"""A user's own films (a manifest or a folder of classes) as a TensorFlow Datasets builder,
`own_films`, prepared offline::

    mura-tf tfds-build --manual-dir FOLDER_OR_MANIFEST [--positive CLASS]

then `tfds.load("own_films", data_dir=...)` gives the catalogue's splits (`train` and `test`
when they were drawn, or the manifest's), one example per film. The catalogue is the
project's own `manifest.load_own`, so TFDS and the recipes see the same films, labels, parts
and splits; each film is stored as the pipeline reads it (DICOM rendered as displayed,
`film_cache`), losslessly as PNG.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from mura_tf.data.datasets import DatasetInfo
from mura_tf.data.film_cache import displayed_file
from mura_tf.data.manifest import load_own


class OwnFilms(tfds.core.GeneratorBasedBuilder):
    """Own films, read from `source` (a manifest or a folder of classes)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "The films as listed when the dataset was built."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the manifest or folder of classes as --manual-dir."

    def __init__(self, *, dataset: DatasetInfo, positive: str | None = None, **kwargs) -> None:
        self.dataset = dataset
        self.positive = positive
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=f"{self.dataset.title}: label 1 is {self.dataset.positive}.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "label": tfds.features.ClassLabel(
                        names=[self.dataset.negative, self.dataset.positive]
                    ),
                    "part": tfds.features.ClassLabel(names=list(self.dataset.parts)),
                    "patient": tfds.features.Text(),
                    "study": tfds.features.Text(),
                    "path": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        frame = load_own(dl_manager.manual_dir, positive=self.positive)
        return {
            split: self._generate_examples(frame[frame["split"] == split])
            for split in self.dataset.catalogue_splits
            if (frame["split"] == split).any()
        }

    def _generate_examples(self, frame):
        import tensorflow as tf

        from mura_tf.data.pipeline import decode_film  # TensorFlow only while building

        for row in frame.itertuples(index=False):
            film = decode_film(tf.io.read_file(displayed_file(row.path))).numpy()
            yield (
                row.path,
                {
                    "image": film,
                    "label": int(row.label),
                    "part": row.part,
                    "patient": str(row.patient),
                    "study": str(row.study),
                    "path": row.path,
                },
            )
