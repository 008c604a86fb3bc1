"""FracAtlas as a dataset of the project, on the vendored sample (`samples/fracatlas`) and, where
`FRACATLAS_DIR` names the whole release, on all of it: the catalogue against an independent
reading of the release's files, the split, the films' orientation against Pillow, the
SavedModel's bytes signature on real JPEGs in a process that never imports mura_tf, and the
outlines."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from mura_tf.data.catalogue import detect_dataset, load_catalogue
from mura_tf.data.datasets import FRACATLAS, MURA
from mura_tf.data.fracatlas import load_fracatlas, load_outlines
from mura_tf.data.mura import COLUMNS
from mura_tf.data.orientation import exif_orientation
from mura_tf.data.pipeline import decode_film, load_image
from mura_tf.data.splits import make_splits
from mura_tf.errors import ConfigError, MuraDataWarning

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "fracatlas"
FULL = os.environ.get("FRACATLAS_DIR")
needs_full = pytest.mark.skipif(
    not FULL or not Path(FULL).is_dir(),
    reason="FRACATLAS_DIR does not name a FracAtlas folder (CI sets it to "
    "../shared/data/fracatlas); the vendored sample is tested instead",
)


def release_files(root: Path) -> dict[str, dict]:
    """An independent reading of the release: dataset.csv rows by film, with the folder."""
    with open(root / "dataset.csv", newline="") as f:
        rows = {r["image_id"]: r for r in csv.DictReader(f)}
    for folder in ("Fractured", "Non_fractured"):
        for name in os.listdir(root / "images" / folder):
            rows[name]["folder"] = folder
    return rows


def truncated(path: Path) -> bool:
    """Pillow cannot decode all of it (the release has cut-off films)."""
    try:
        with Image.open(path) as im:
            im.load()
    except OSError:
        return True
    return False


def load_quietly(root, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_fracatlas(root, **kw)
    return frame, [str(w.message) for w in caught if w.category is MuraDataWarning]


def check_catalogue(root: Path) -> list[str]:
    frame, said = load_quietly(root)
    rows = release_files(root)
    assert list(frame.columns) == list(COLUMNS)
    bad = {n for n, r in rows.items() if truncated(root / "images" / r["folder"] / n)}
    assert set(frame["study"] + ".jpg") == set(rows) - bad
    assert frame["study"].is_unique and (frame["patient"] == frame["study"]).all()
    for r in frame.itertuples():
        row = rows[r.study + ".jpg"]
        assert r.label == (row["folder"] == "Fractured")  # the folder decides
        flagged = [p for p in ("hand", "leg", "hip", "shoulder") if row[p] == "1"]
        short = "mixed" if row["mixed"] == "1" or len(flagged) != 1 else flagged[0]
        assert r.part == FRACATLAS.canonical_part(short)
        assert Path(r.path) == (root / "images" / row["folder"] / row["image_id"]).resolve()
    disagree = [
        n for n, r in rows.items() if (r["folder"] == "Fractured") != (r["fractured"] == "1")
    ]
    for name in disagree:
        assert sum(name in s and "dataset.csv says fractured" in s for s in said) == 1
    if bad:
        assert any(f"skipped {len(bad)} unreadable JPEG" in s for s in said)
    return said


def check_split(root: Path) -> None:
    frame, _ = load_quietly(root)
    published = {}
    for name in ("train", "valid", "test"):
        with open(root / "Utilities" / "Fracture Split" / f"{name}.csv", newline="") as f:
            published.update({r["image_id"]: name for r in csv.DictReader(f)})
    fractured = frame[frame["label"] == 1]
    assert (fractured["split"] == (fractured["study"] + ".jpg").map(published)).all()
    again, _ = load_quietly(root)
    assert again.equals(frame)  # a pure function of the files
    splits = make_splits(frame, dev_fraction=0.3, seed=5)  # the fixed split, whatever they say
    assert [len(s) for s in (splits.train, splits.dev, splits.test)] == [
        (frame["split"] == n).sum() for n in ("train", "valid", "test")
    ]
    # The unfractured films of each part follow the published proportions (574 : 82 : 61),
    # counted before unreadable films are left out (so they do not move the others' split).
    shares = np.array([574, 82, 61]) / 717
    every, _ = load_quietly(root, check_images=False)
    assert every[every["path"].isin(frame["path"])].reset_index(drop=True).equals(frame)
    for _, group in every[every["label"] == 0].groupby("part"):
        counts = group["split"].value_counts().reindex(["train", "valid", "test"], fill_value=0)
        assert np.all(np.abs(counts.to_numpy() - shares * len(group)) <= 1)


def test_the_sample_reads_as_an_independent_reading_of_its_files_says():
    said = check_catalogue(SAMPLE)
    assert any("IMG0003298.jpg: in images/Fractured/" in s for s in said)
    assert any("IMG0004279.jpg (" in s for s in said)  # cut off in the release
    frame, _ = load_quietly(SAMPLE)
    assert set(frame["part"]) == set(FRACATLAS.parts)  # every part, mixed included
    assert set(frame["label"]) == {0, 1}


def test_the_sample_split_keeps_the_published_fracture_split():
    check_split(SAMPLE)


@needs_full
def test_the_whole_release_reads_and_splits_as_its_files_say():
    said = check_catalogue(Path(FULL))
    assert len([s for s in said if "dataset.csv says" in s]) == 1  # IMG0003298 alone
    check_split(Path(FULL))


def test_the_layout_is_recognised_and_parts_are_the_datasets_own(tmp_path):
    assert detect_dataset(SAMPLE) is FRACATLAS
    assert detect_dataset(tmp_path) is MURA
    legs = load_catalogue(SAMPLE, "leg", check_images=False)
    assert set(legs["part"]) == {"FA_LEG"}
    with pytest.raises(ConfigError, match="unknown body part 'elbow' of FracAtlas"):
        load_catalogue(SAMPLE, "elbow", check_images=False)
    copy = tmp_path / "download"
    shutil.copytree(SAMPLE, copy / "FracAtlas")  # figshare's zip holds FracAtlas/
    assert detect_dataset(copy) is FRACATLAS
    assert len(load_catalogue(copy, check_images=False)) == len(
        load_catalogue(SAMPLE, check_images=False)
    )


def test_a_contradiction_of_the_release_is_one_warning_line_and_nothing_is_dropped(tmp_path):
    root = tmp_path / "fa"
    shutil.copytree(SAMPLE, root)
    table = (root / "dataset.csv").read_text().splitlines()
    header = table[0].split(",")
    row = table[1].split(",")
    row[header.index("mixed")] = "0"
    for p in ("hand", "leg", "hip", "shoulder"):
        row[header.index(p)] = "1" if p in ("hand", "leg") else "0"
    table[1] = ",".join(row)
    (root / "dataset.csv").write_text("\n".join(table) + "\n")
    frame, said = load_quietly(root, check_images=False)
    lines = [s for s in said if s.startswith(row[0])]
    assert lines == [f"{row[0]}: dataset.csv flags hand, leg but not mixed; taken as part mixed"]
    assert frame.set_index("study").loc[row[0][:-4], "part"] == "FA_MIXED"


# --- Orientation ------------------------------------------------------------------------------


def exif_jpeg(pixels: np.ndarray, orientation: int, big_endian: bool) -> bytes:
    """A JPEG whose APP1 holds IFD0 with one Orientation entry, in either byte order (Pillow
    writes little-endian only, so the segment is written here by hand)."""
    order = ">" if big_endian else "<"
    tiff = (b"MM" if big_endian else b"II") + struct.pack(order + "HI", 42, 8)
    tiff += struct.pack(order + "H", 2)  # two entries: an unrelated tag, then Orientation
    tiff += struct.pack(order + "HHI", 0x010F, 2, 4) + b"ACME"
    tiff += struct.pack(order + "HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack(order + "I", 0)
    app1 = b"Exif\0\0" + tiff
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


@pytest.mark.parametrize("big_endian", [False, True])
def test_every_exif_orientation_turns_the_film_as_pillow_does(big_endian):
    pixels = np.random.default_rng(0).integers(0, 256, (23, 41, 3), dtype=np.uint8)
    for orientation in range(1, 9):
        data = exif_jpeg(pixels, orientation, big_endian)
        with Image.open(io.BytesIO(data)) as im:
            assert im.getexif().get(0x0112) == orientation  # Pillow reads what was written
            expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        assert int(exif_orientation(tf.constant(data))) == orientation
        got = decode_film(tf.constant(data)).numpy()
        assert got.shape == expected.shape, orientation
        np.testing.assert_array_equal(got, expected)


def test_malformed_exif_is_orientation_one():
    pixels = np.zeros((8, 8, 3), np.uint8)
    good = exif_jpeg(pixels, 6, False)
    for data in (good[:20], good[:40], b"\xff\xd8\xff\xe1\x00\x08Exif\0\0", b"", b"not a jpeg"):
        assert int(exif_orientation(tf.constant(data))) == 1


def test_every_sample_film_decodes_as_pillow_shows_it():
    films = sorted(p for p in SAMPLE.glob("images/*/*.jpg") if not truncated(p))
    modes, turned = set(), 0
    for path in films:
        with Image.open(path) as im:
            modes.add(im.mode)
            turned += (im.getexif().get(0x0112) or 1) != 1
            expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        got = decode_film(tf.io.read_file(str(path))).numpy()
        assert got.shape == expected.shape, path.name
        np.testing.assert_array_equal(got, expected, err_msg=path.name)
    assert modes == {"L", "RGB"} and turned >= 4  # the sample holds what this test is about


# --- The bytes signature on real films ----------------------------------------------------------

FRESH = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    out = loaded.serve_images(tf.constant([open(p, "rb").read() for p in sys.argv[3:]]))
    np.save(sys.argv[2], out.numpy())
    print(json.dumps({"mura_tf": any(m.startswith("mura_tf") for m in sys.modules)}))
    """
)


def test_the_bytes_signature_turns_real_films_as_pillow_in_a_fresh_process(tmp_path):
    from test_serving import SIZE, tiny_classifier

    from mura_tf.serving.export import export_savedmodel

    turned = []
    for path in sorted(SAMPLE.glob("images/*/*.jpg")):
        with Image.open(path) as im:
            if (im.getexif().get(0x0112) or 1) != 1 and not truncated(path):
                turned.append(path)
                # The same film as displayed, with no EXIF to apply: a lossless PNG.
                ImageOps.exif_transpose(im).convert("RGB").save(tmp_path / f"{path.stem}.png")
    assert len(turned) >= 4
    pngs = [tmp_path / f"{p.stem}.png" for p in turned]
    export = export_savedmodel(tiny_classifier(), "imagenet", SIZE, tmp_path / "export")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    films = [str(p) for p in [*turned, *pngs]]
    result = subprocess.run(
        [sys.executable, "-c", FRESH, str(export), str(tmp_path / "out.npy"), *films],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"mura_tf": False}
    out = np.load(tmp_path / "out.npy")[:, 0]
    jpeg, png = out[: len(turned)], out[len(turned) :]
    np.testing.assert_allclose(jpeg, png, atol=1e-5)  # the JPEG turned as Pillow shows it
    assert np.ptp(png) > 1e-4  # different films, different answers
    # ... and as the training pipeline reads it.
    pixels = np.stack([load_image(str(p), SIZE).numpy() for p in turned])
    loaded = tf.saved_model.load(str(export))
    np.testing.assert_allclose(jpeg, loaded.serve(tf.constant(pixels, tf.float32)).numpy()[:, 0],
                               atol=1e-5)  # fmt: skip


# --- Outlines -----------------------------------------------------------------------------------


def test_outlines_are_on_the_film_as_displayed():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outlines = load_outlines(SAMPLE)
    assert not [w for w in caught if w.category is MuraDataWarning]
    coco = json.loads(
        (SAMPLE / "Annotations" / "COCO JSON" / "COCO_fracture_masks.json").read_text()
    )
    assert len(outlines) == len(coco["images"])
    counts = {}
    for a in coco["annotations"]:
        counts[a["image_id"]] = counts.get(a["image_id"], 0) + 1
    for image in coco["images"]:
        path = next(SAMPLE.glob(f"images/*/{image['file_name']}")).resolve()
        outline = outlines[str(path)]
        with Image.open(path) as im:
            shown = ImageOps.exif_transpose(im).size
        assert outline.size == shown
        assert len(outline.boxes) == counts[image["id"]]
        for polygon, (x0, y0, x1, y1) in zip(outline.polygons, outline.boxes, strict=False):
            assert polygon[:, 0].min() >= x0 - 1 and polygon[:, 0].max() <= x1 + 1
            assert polygon[:, 1].min() >= y0 - 1 and polygon[:, 1].max() <= y1 + 1
    # IMG0002628 is stored 373 x 454, turned by EXIF, and annotated at 454 x 373.
    rotated = next(p for p in outlines if p.endswith("IMG0002628.jpg"))
    assert outlines[rotated].size == (454, 373)


def test_an_outline_drawn_at_another_size_is_scaled_with_one_warning(tmp_path):
    root = tmp_path / "fa"
    shutil.copytree(SAMPLE, root)
    path = root / "Annotations" / "COCO JSON" / "COCO_fracture_masks.json"
    coco = json.loads(path.read_text())
    image = coco["images"][0]
    truth = load_outlines(SAMPLE)
    image["width"], image["height"] = image["width"] * 2, image["height"] * 2
    for a in coco["annotations"]:
        if a["image_id"] == image["id"]:
            a["segmentation"] = [[2 * v for v in s] for s in a["segmentation"]]
            a["bbox"] = [2 * v for v in a["bbox"]]
    path.write_text(json.dumps(coco))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scaled = load_outlines(root)
    lines = [str(w.message) for w in caught if w.category is MuraDataWarning]
    assert len(lines) == 1 and lines[0].startswith(image["file_name"]) and "scaled" in lines[0]
    name = image["file_name"]
    before = next(v for k, v in truth.items() if k.endswith(name))
    after = next(v for k, v in scaled.items() if k.endswith(name))
    np.testing.assert_allclose(after.boxes, before.boxes, rtol=1e-9)
