"""DICOM films read as displayed (`mura_tf.data.dicom`): pydicom's own test files, written by
other software, and real FracAtlas films written as DICOM three ways, against Pillow."""

from pathlib import Path

import numpy as np
import pytest
from dev_packages import need

pydicom = need("pydicom")
from dicom_writer import KINDS, displayed, write_dicom  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

from mura_tf.data.dicom import NotAFilm, film_pixels, film_png, is_dicom, window  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "fracatlas" / "images"
# Real films: one stored rotated (EXIF orientation 3) and RGB, one RGB, one greyscale.
FILMS = ("Fractured/IMG0002588.jpg", "Fractured/IMG0000454.jpg", "Fractured/IMG0000453.jpg")


def _testdata(name: str) -> Path:
    return Path(get_testdata_file(name))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("film", FILMS)
def test_a_real_film_written_as_dicom_displays_as_pillow_shows_the_jpeg(film, kind, tmp_path):
    shown = displayed(SAMPLES / film)
    path = write_dicom(shown, tmp_path / "film.dcm", kind)
    np.testing.assert_array_equal(film_pixels(path), shown)
    # The PNG handed to the export decodes to the same pixels (Pillow, not this project).
    from io import BytesIO

    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(BytesIO(film_png(path)))), shown)


def test_the_window_is_the_standards_linear_function_by_hand():
    # c = 100, w = 51: below 100 - 0.5 - 25 = 74.5 black, above 124.5 white, linear between.
    values = np.array([0.0, 74.5, 75.0, 99.5, 124.5, 125.0, 1000.0])
    got = window(values, 100, 51)
    expected = [0.0, 0.0, (75 - 99.5) / 50 + 0.5, 0.5, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(window(np.array([100.0]), 100, 50, "SIGMOID"), [0.5])
    np.testing.assert_allclose(window(np.array([75.0, 125.0]), 100, 50, "LINEAR_EXACT"), [0, 1])


def test_pydicoms_files_window_as_pydicom_does():
    """MR_small (signed 16 bits, Window 600/1600): pydicom's own windowing, scaled from its
    output range (the signed 16-bit range) to 0-255, is what the film displays as."""
    from pydicom.pixels import apply_windowing

    path = _testdata("MR_small.dcm")
    ds = pydicom.dcmread(path)
    reference = apply_windowing(ds.pixel_array.astype(np.float64), ds)
    reference = np.round((reference + 32768) / 65535 * 255)
    assert np.abs(film_pixels(path).astype(int) - reference).max() <= 1


def test_a_film_without_a_window_spans_its_full_range_after_the_rescale():
    path = _testdata("CT_small.dcm")  # Rescale Slope/Intercept, no window
    ds = pydicom.dcmread(path)
    assert "WindowCenter" not in ds
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.round((hu - hu.min()) / (hu.max() - hu.min()) * 255)
    np.testing.assert_array_equal(film_pixels(path), expected)


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
             "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"],
)  # fmt: skip
def test_every_transfer_syntax_of_one_film_displays_alike(name):
    """The same MR slice stored RLE, big-endian, implicit VR, JPEG 2000 and JPEG-LS lossless
    (JPEG-LS needs `mura-tf[dicom]`'s pylibjpeg; without it, the one line says so)."""
    try:
        got = film_pixels(_testdata(name))
    except NotAFilm as e:
        need("libjpeg", reason=str(e))
        raise
    np.testing.assert_array_equal(got, film_pixels(_testdata("MR_small.dcm")))


@pytest.mark.parametrize(
    "name, reason",
    [
        ("rtstruct.dcm", "no pixel data"),
        ("SC_rgb_rle_2frame.dcm", "2 frames"),
        ("examples_ybr_color.dcm", "frames"),
        ("SC_rgb_jpeg_gdcm.dcm", "RGB colour image, not a greyscale radiograph"),
        ("examples_palette.dcm", "PALETTE COLOR colour image"),
        ("JPEG-lossy.dcm", "cannot be decoded"),  # 12-bit JPEG Extended: no handler here
    ],
)
def test_what_is_not_one_greyscale_film_is_refused_with_its_reason(name, reason):
    with pytest.raises(NotAFilm, match=reason):
        film_pixels(_testdata(name))


def test_dicom_is_recognised_by_its_preamble_without_a_suffix(tmp_path):
    plain = tmp_path / "IM0001"
    plain.write_bytes(_testdata("MR_small.dcm").read_bytes())
    assert is_dicom(plain) and not is_dicom(SAMPLES / FILMS[0])
    (tmp_path / "short").write_bytes(b"x")
    assert not is_dicom(tmp_path / "short")


def test_without_pydicom_a_dicom_film_says_how_to_install_it(monkeypatch, tmp_path):
    import sys

    from mura_tf.errors import MuraDataError

    path = write_dicom(displayed(SAMPLES / FILMS[2]), tmp_path / "film.dcm", "monochrome2")
    monkeypatch.setitem(sys.modules, "pydicom", None)  # as if it were not installed
    with pytest.raises(MuraDataError, match=r'needs pydicom: pip install "mura-tf\[dicom\]"'):
        film_pixels(path)
