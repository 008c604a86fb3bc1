"""DICOM films as the model was trained on them: 8-bit greyscale, white = bone.

A radiograph on a PACS is a DICOM object, not a PNG. `film_png` turns one into the PNG bytes
every other path of the project takes (the export's image-bytes signature, Grad-CAM sheets),
following the DICOM standard's order of grey-scale transforms (PS3.3 C.11, PS3.4 N.2):

1. the modality LUT: Rescale Slope / Intercept (or a Modality LUT Sequence) to modality units;
2. the VOI LUT: a VOI LUT Sequence when the file has one, else the first Window Center / Width
   with its VOI LUT Function (LINEAR, LINEAR_EXACT, SIGMOID), else the full range: 0-255 for
   an 8-bit film (display values already, as in a PNG), the film's own minimum to maximum
   for more bits (stretched over its bits' range, a 12-bit film is a grey wash);
3. MONOCHROME1 (white = air) inverted, so that white is dense tissue as in MONOCHROME2;
4. 0-1 to 0-255, rounded.

Objects that are not a single greyscale film (no pixel data, several frames, colour such as
ultrasound or a secondary capture) are `NotAFilm`, with the reason, and the commands skip them
with one warning line each, as they skip an unreadable PNG. Compressed transfer syntaxes decode
where pydicom has a handler: JPEG Baseline, JPEG 2000 and RLE with Pillow and numpy alone;
JPEG Lossless and JPEG-LS with `pip install "mura-tf[dicom]"` (pylibjpeg and its plug-ins).

pydicom is an optional dependency (`mura-tf[dicom]`), imported only when a DICOM file is met.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from mura_tf.data.limits import size_problem
from mura_tf.errors import MuraDataError

DICOM_SUFFIXES = (".dcm", ".dicom")
INSTALL = 'pip install "mura-tf[dicom]"'  # pydicom and the decoders of compressed films


class NotAFilm(MuraDataError):
    """A DICOM object this project cannot read as a radiograph; the message says why."""


@dataclass(frozen=True)
class DicomInfo:
    """What a DICOM file says about its study: the ids that group views into studies and the
    descriptions a person recognises ("" where the file has none)."""

    study_uid: str
    study_description: str
    series_description: str


def has_preamble(data: bytes) -> bool:
    """Whether `data` (a file's first 132 bytes or more) starts as a DICOM file: "DICM" at
    byte 128."""
    return data[128:132] == b"DICM"


def dicom_paths(paths: Iterable[str]) -> list[str]:
    """The catalogue paths among `paths` that are DICOM files (by suffix: a catalogue names its
    films, so no file is opened)."""
    return [p for p in paths if p.lower().endswith(DICOM_SUFFIXES)]


def is_dicom(path: Path) -> bool:
    """A `.dcm` file, or any file with the DICOM preamble."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return has_preamble(f.read(132))
    except OSError:
        return False


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise MuraDataError(f"reading DICOM films needs pydicom: {INSTALL}") from None
    return pydicom


def _read(path: Path | BinaryIO, pixels: bool):
    pydicom = _pydicom()
    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels, force=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # pydicom raises many kinds on a damaged file
        raise NotAFilm(f"not a readable DICOM file ({_first_line(e)})") from None


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def dicom_info(path: Path) -> DicomInfo:
    """The study id and descriptions in `path`'s header (the pixels are not read)."""
    ds = _read(path, pixels=False)
    return DicomInfo(
        str(ds.get("StudyInstanceUID", "") or ""),
        str(ds.get("StudyDescription", "") or ""),
        str(ds.get("SeriesDescription", "") or ""),
    )


def film_pixels(path: Path | BinaryIO) -> np.ndarray:
    """The film in `path` (a file, or its bytes in a file object) as displayed: uint8
    `[H, W]`, white = dense tissue.

    Raises:
        NotAFilm: no pixel data, several frames, colour, or pixel data no installed handler
            decodes (the message names the transfer syntax and what to install).
        MuraDataError: pydicom is not installed.
    """
    ds = _read(path, pixels=True)
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise NotAFilm("no pixel data (not an image object)")
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        raise NotAFilm(f"Number of Frames {ds.NumberOfFrames!r} is not a number") from None
    if frames > 1:
        raise NotAFilm(f"{frames} frames (a film has one)")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise NotAFilm(f"{photometric} colour image, not a greyscale radiograph")
    try:  # the header's size, checked before pydicom allocates the pixels
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    except (TypeError, ValueError):
        raise NotAFilm("Rows or Columns is not a number") from None
    too_large = size_problem(columns, rows)
    if too_large:
        raise NotAFilm(too_large)
    try:
        stored = ds.pixel_array
    except Exception:  # pydicom's handlers raise many kinds
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", "its transfer syntax")
        raise NotAFilm(f"pixel data in {name} cannot be decoded here: {INSTALL}") from None
    return to_display(stored, ds)


def to_display(stored: np.ndarray, ds) -> np.ndarray:
    """Stored pixel values `[H, W]` through the modality LUT, the VOI LUT (or window, or the
    full range) and MONOCHROME1's inversion to uint8 `[H, W]` (module docstring)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(stored, ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        lut = ds.VOILUTSequence[0]
        bits = int(lut.LUTDescriptor[2])
        shown = apply_voi_lut(values, ds, prefer_lut=True).astype(np.float64) / (2**bits - 1)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        function = str(ds.get("VOILUTFunction", "LINEAR")).strip() or "LINEAR"
        shown = window(values, _first(ds.WindowCenter), _first(ds.WindowWidth), function)
    elif int(ds.get("BitsStored", 16)) <= 8 and not _rescaled(ds):
        # An 8-bit film holds display values already, as a PNG does.
        shown = values / 255.0
    else:
        # A 12- or 16-bit film rarely spans its bits' range; stretched over that range it
        # would be a grey wash, so its own range is the window.
        low, high = float(values.min()), float(values.max())
        shown = (values - low) / (high - low) if high > low else np.zeros_like(values)
    shown = np.clip(shown, 0.0, 1.0)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        shown = 1.0 - shown
    return np.round(shown * 255.0).astype(np.uint8)


def _rescaled(ds) -> bool:
    """Whether the modality LUT changes the stored values."""
    if "ModalityLUTSequence" in ds:
        return True
    return (
        float(ds.get("RescaleSlope", 1) or 1) != 1 or float(ds.get("RescaleIntercept", 0) or 0) != 0
    )


def _first(value) -> float:
    """The first of a multi-valued window attribute (the file's default view)."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """The VOI window of DICOM PS3.3 C.11.2.1.2 mapped to 0-1: LINEAR (the standard's
    `c - 0.5`, `w - 1` form), LINEAR_EXACT or SIGMOID."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if width < 1:
        raise NotAFilm(f"window width {width} is below 1 (DICOM requires at least 1)")
    if width == 1:  # the standard's step function
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def film_png(path: Path | BinaryIO) -> bytes:
    """`film_pixels(path)` encoded as an 8-bit greyscale PNG (lossless)."""
    buffer = io.BytesIO()
    Image.fromarray(film_pixels(path), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
