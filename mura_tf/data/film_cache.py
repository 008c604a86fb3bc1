"""DICOM films rendered once, as the standard displays them, for the tf.data pipeline.

TensorFlow decodes PNG and JPEG in the graph; a DICOM film needs pydicom and the grey-scale
transforms of `mura_tf.data.dicom`. As TFDS prepares a dataset once, each DICOM film is
rendered once (`dicom.film_png`) into a PNG in a cache keyed by the file's content and the
rendering's version, so training, evaluation and the export (which renders a DICOM request
with the same `film_png`) see the same pixels, and an edited file is rendered again.

The cache is `$MURA_TF_CACHE/films`, by default `~/.cache/mura_tf/films`; deleting it costs
only the rendering.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path

from mura_tf.data.dicom import film_png, is_dicom
from mura_tf.files import write_with

# Raised whenever `dicom.film_png` would render a film differently, so old renderings are
# not reused.
RENDERING = "1"


def cache_folder() -> Path:
    """Where rendered films are kept (`$MURA_TF_CACHE/films`, else `~/.cache/mura_tf/films`)."""
    root = os.environ.get("MURA_TF_CACHE") or Path.home() / ".cache" / "mura_tf"
    return Path(root) / "films"


def displayed_file(path: str) -> str:
    """`path` itself for a PNG or JPEG film; for a DICOM film, the cached PNG of it as
    displayed, rendered now if it is not cached yet.

    Raises:
        MuraDataError: the DICOM object is not a film (`dicom.NotAFilm`) or pydicom is absent.
    """
    if not is_dicom(Path(path)):
        return path
    data = Path(path).read_bytes()
    key = hashlib.sha256(RENDERING.encode() + b"\0" + data).hexdigest()
    out = cache_folder() / key[:2] / f"{key}.png"
    if not out.is_file():
        png = film_png(io.BytesIO(data))
        write_with(out, lambda tmp: tmp.write_bytes(png))
    return str(out)


def displayed_files(paths: Iterable[str]) -> list[str]:
    """`displayed_file` of each path, in order."""
    return [displayed_file(str(p)) for p in paths]
