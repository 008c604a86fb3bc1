import csv
import os
from pathlib import Path

import pytest
from PIL import Image

from mura_tf.data.mura import load_mura, png_problem
from mura_tf.data.parts import PARTS, canonical_part, parse_parts
from mura_tf.errors import ConfigError, MuraDataError, MuraDataWarning


def read_csv(path: Path) -> list[list[str]]:
    with path.open() as f:
        return [row for row in csv.reader(f) if row]


def test_one_row_per_csv_image_with_labels_from_the_studies_csv(synthetic_dir):
    root = synthetic_dir / "MURA-v1.1"
    frame = load_mura(synthetic_dir)
    expected = {}
    for split in ("train", "valid"):
        labels = {r[0]: int(r[1]) for r in read_csv(root / f"{split}_labeled_studies.csv")}
        for (rel,) in read_csv(root / f"{split}_image_paths.csv"):
            study = rel.rsplit("/", 1)[0] + "/"
            expected[str(synthetic_dir / rel)] = (split, labels[study])
    assert len(frame) == len(expected)
    got = {
        p: (s, lab) for p, s, lab in zip(frame["path"], frame["split"], frame["label"], strict=True)
    }
    assert got == expected
    assert list(frame.columns) == ["split", "part", "patient", "study", "view", "label", "path"]


def test_fields_are_parsed_from_the_path(synthetic_dir):
    frame = load_mura(synthetic_dir)
    row = frame.iloc[0]
    parts = Path(row["path"]).parts
    assert row["part"] == parts[-4] and row["patient"] == parts[-3]
    assert row["study"] == "/".join(parts[-5:-1])
    assert row["view"] == int(parts[-1][len("image") : -len(".png")])
    assert set(frame["part"]) == set(PARTS)
    # a study id is unique across parts and patients: its images share one label
    assert frame.groupby("study")["label"].nunique().max() == 1


def test_accepts_the_mura_folder_or_its_parent(synthetic_dir):
    a = load_mura(synthetic_dir, check_images=False)
    b = load_mura(synthetic_dir / "MURA-v1.1", check_images=False)
    assert a.equals(b)


def test_walking_folders_gives_the_same_catalogue_as_the_csvs(mura_copy):
    with_csv = load_mura(mura_copy, check_images=False)
    for f in mura_copy.glob("*.csv"):
        f.unlink()
    walked = load_mura(mura_copy, check_images=False)
    assert walked.equals(with_csv)


def test_label_that_disagrees_with_the_folder_is_an_error_naming_the_study(mura_copy):
    path = mura_copy / "train_labeled_studies.csv"
    rows = read_csv(path)
    rows[0][1] = str(1 - int(rows[0][1]))
    path.write_text("".join(f"{a},{b}\n" for a, b in rows))
    study = rows[0][0].removeprefix("MURA-v1.1/").rstrip("/")
    with pytest.raises(MuraDataError, match=study):
        load_mura(mura_copy, check_images=False)


@pytest.mark.parametrize("use_csv", [True, False])
def test_hidden_and_non_png_files_are_never_images(mura_copy, use_csv):
    before = load_mura(mura_copy, check_images=False)
    study = Path(before["path"].iloc[0]).parent
    junk = ["._image1.png", ".DS_Store", "notes.txt", "image9.jpg", ".hidden.png"]
    for name in junk:
        (study / name).write_bytes(b"\x00junk")
    if use_csv:
        rel = study.relative_to(mura_copy.parent).as_posix()
        with (mura_copy / "train_image_paths.csv").open("a") as f:
            f.writelines(f"{rel}/{name}\n" for name in junk)
    else:
        for f in mura_copy.glob("*.csv"):
            f.unlink()
    after = load_mura(mura_copy)  # also checks images: junk would be reported as corrupt
    assert after["path"].tolist() == before["path"].tolist()


def test_missing_root_says_where_mura_is_expected_and_how_to_get_it(tmp_path):
    with pytest.raises(MuraDataError) as e:
        load_mura(tmp_path / "nowhere")
    message = str(e.value)
    assert str(tmp_path / "nowhere") in message and "stanfordmlgroup" in message
    assert "--synthetic" in message and "\n" not in message


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(MuraDataError, match="neither MURA-v1.1"):
        load_mura(tmp_path)


def test_csv_row_whose_file_is_missing_is_an_error(mura_copy):
    victim = sorted(mura_copy.rglob("image1.png"))[0]
    victim.unlink()
    with pytest.raises(MuraDataError, match="missing on disk"):
        load_mura(mura_copy)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b""),  # zero bytes
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),  # truncated
        lambda p: p.write_bytes(b"GIF89a not a png at all"),
        lambda p: p.write_bytes(p.read_bytes()[:60] + b"\xff" * 8 + p.read_bytes()[68:]),  # bad CRC
        lambda p: Image.new("L", (20_000, 20_000)).save(p),  # a decompression bomb (400 MP)
        lambda p: Image.new("L", (8_000, 7_000)).save(p),  # over the 50 MP limit
    ],
    ids=["empty", "truncated", "not-png", "bit-flip", "bomb", "over-the-pixel-limit"],
)
def test_unreadable_png_is_skipped_with_a_warning_naming_it_or_fails_when_strict(mura_copy, damage):
    before = load_mura(mura_copy, check_images=False)
    victim = Path(before["path"].iloc[3])
    damage(victim)
    assert png_problem(victim) is not None
    rel = victim.relative_to(mura_copy).as_posix()
    with pytest.warns(MuraDataWarning, match=rf"skipped 1 unreadable PNG file\(s\): {rel}"):
        after = load_mura(mura_copy)
    assert len(after) == len(before) - 1 and str(victim) not in set(after["path"])
    with pytest.raises(MuraDataError, match=rel):
        load_mura(mura_copy, strict=True)


def test_a_film_over_the_pixel_limit_is_named_by_its_header_size(tmp_path):
    Image.new("L", (8_000, 7_000)).save(tmp_path / "big.png")
    Image.new("L", (20_000, 20_000)).save(tmp_path / "bomb.png")
    Image.new("L", (7_000, 7_000)).save(tmp_path / "under.png")  # 49 MP: a film
    assert png_problem(tmp_path / "big.png") == (
        "8,000 x 7,000 pixels, over the limit of 50 megapixels"
    )
    assert png_problem(tmp_path / "bomb.png") == (
        "its header claims 400,000,000 pixels, over the limit of 50 megapixels"
    )
    assert png_problem(tmp_path / "under.png") is None


def test_healthy_pngs_have_no_problem(synthetic_dir):
    frame = load_mura(synthetic_dir, check_images=False)
    assert all(png_problem(p) is None for p in frame["path"][:50])


def test_a_requested_part_with_no_images_is_an_error(mura_copy):
    for f in mura_copy.glob("*.csv"):
        f.unlink()
    for split in ("train", "valid"):
        for f in sorted((mura_copy / split / "XR_HUMERUS").rglob("*.png")):
            os.unlink(f)
    with pytest.raises(MuraDataError, match="no images of XR_HUMERUS"):
        load_mura(mura_copy, "humerus")
    assert "XR_HUMERUS" not in set(load_mura(mura_copy)["part"])


def test_short_part_names_are_accepted_everywhere(synthetic_dir):
    elbow = load_mura(synthetic_dir, "elbow", check_images=False)
    assert set(elbow["part"]) == {"XR_ELBOW"}
    both = load_mura(synthetic_dir, "Elbow, XR_HAND", check_images=False)
    assert set(both["part"]) == {"XR_ELBOW", "XR_HAND"}
    assert canonical_part("xr_wrist") == "XR_WRIST"
    assert parse_parts("all") == PARTS


def test_unknown_part_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown body part 'knee'.*elbow, finger"):
        parse_parts("knee")
