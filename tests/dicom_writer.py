"""DICOM files written from a film's pixels with pydicom, as a PACS export would hold them: the
test side of `mura_tf.data.dicom` (never imported by the library)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Digital X-Ray Image Storage - For Presentation
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
KINDS = ("monochrome2", "monochrome1", "12bit-window")


def displayed(jpeg: Path) -> np.ndarray:
    """A JPEG film as a radiologist saw it: EXIF orientation applied, greyscale uint8 [H, W]."""
    with Image.open(jpeg) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("L"))


def write_dicom(
    pixels: np.ndarray,
    path: Path,
    kind: str,
    study_uid: str | None = None,
    description: str = "",
) -> Path:
    """Write uint8 `pixels` [H, W] as a single-frame DX film whose display is `pixels`:

    - monochrome2: 8 bits as they are;
    - monochrome1: 8 bits inverted (white = air), MONOCHROME1;
    - 12bit-window: 12 bits stored (0-4095), Rescale Slope 2 / Intercept -1000, and the
      Window Center / Width that maps the rescaled range back onto 0-255.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = DX_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    if description:
        ds.StudyDescription = description
        ds.SeriesDescription = f"{description} series"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PixelRepresentation = 0
    if kind == "12bit-window":
        stored = np.round(pixels.astype(np.float64) * 4095 / 255).astype(np.uint16)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
        # rescaled -1000..7190 onto 0..1: c - 0.5 -/+ (w - 1) / 2 = -1000 / 7190
        ds.WindowCenter, ds.WindowWidth = 3095.5, 8191
        ds.PixelData = stored.tobytes()
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        inverted = kind == "monochrome1"
        ds.PhotometricInterpretation = "MONOCHROME1" if inverted else "MONOCHROME2"
        ds.PixelData = (255 - pixels if inverted else pixels).astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
