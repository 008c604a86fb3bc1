import csv
import json
import subprocess
import sys
from collections import defaultdict

import pytest
from PIL import Image

from mura_tf.commands import explore
from mura_tf.data.summary import SUMMARY_KEYS


def independent_counts(root):
    """Counts straight from the CSVs with the csv module, not through the catalogue."""
    out = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for split in ("train", "valid"):
        with open(root / f"{split}_labeled_studies.csv") as f:
            labels = dict(csv.reader(f))
        patients = defaultdict(set)
        for study, label in labels.items():
            part, patient = study.split("/")[2:4]
            kind = "abnormal" if label == "1" else "normal"
            out[split][part]["studies"] += 1
            out[split][part][f"{kind}_studies"] += 1
            patients[part].add(patient)
        with open(root / f"{split}_image_paths.csv") as f:
            for (path,) in csv.reader(f):
                part = path.split("/")[2]
                kind = "abnormal" if labels[path.rsplit("/", 1)[0] + "/"] == "1" else "normal"
                out[split][part]["images"] += 1
                out[split][part][f"{kind}_images"] += 1
        for part, ids in patients.items():
            out[split][part]["patients"] = len(ids)
    return json.loads(json.dumps(out))


def test_explore_prints_tables_and_writes_summary_and_figures(synthetic_dir, tmp_path, capsys):
    assert explore.main(["--data-dir", str(synthetic_dir), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for title in (
        "train split, by studies",
        "train split, by images",
        "valid split, by studies",
        "valid split, by images",
    ):
        assert title in printed
    assert "Part  Normal  Abnormal  Total" in printed
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == independent_counts(synthetic_dir / "MURA-v1.1")
    for counts in summary["train"].values():
        assert set(counts) == set(SUMMARY_KEYS) and all(isinstance(v, int) for v in counts.values())
    total_studies = sum(c["studies"] for c in summary["train"].values())
    assert str(total_studies) in printed
    for name in ("counts.png", "samples.png"):
        with Image.open(tmp_path / name) as im:
            im.load()
            assert im.format == "PNG" and min(im.size) > 200


def test_explore_one_part(synthetic_dir, tmp_path):
    explore.main(["--data-dir", str(synthetic_dir), "--out", str(tmp_path), "--part", "hand"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {split: list(parts) for split, parts in summary.items()} == {
        "train": ["XR_HAND"],
        "valid": ["XR_HAND"],
    }


def run_module(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=120, env=env
    )


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--data-dir", "/nonexistent/mura"], "MURA data folder not found: /nonexistent/mura"),
        (["--data-dir", "{data}", "--part", "knee"], "unknown body part 'knee'"),
    ],
)
def test_explore_bad_input_is_one_line_without_traceback(synthetic_dir, tmp_path, args, expected):
    args = [a.replace("{data}", str(synthetic_dir)) for a in args]
    result = run_module("mura_tf", "explore", *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_explore_unwritable_output_is_one_line(synthetic_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_module(
        "mura_tf", "explore", "--data-dir", str(synthetic_dir), "--out", str(blocker / "out")
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "choose a writable --out" in result.stderr.strip().splitlines()[-1]


def test_synthetic_cli_writes_a_dataset_explore_can_read(tmp_path):
    result = run_module(
        "mura_tf",
        "synthetic",
        "--out",
        str(tmp_path),
        "--patients-per-part",
        "2",
        "--valid-patients-per-part",
        "1",
        "--min-side",
        "32",
        "--max-side",
        "48",
        "--parts",
        "elbow,wrist",
    )
    assert result.returncode == 0, result.stderr
    n = len(list(tmp_path.rglob("*.png")))
    assert f"wrote {n} images to {tmp_path / 'MURA-v1.1'}" in result.stdout
    again = run_module("mura_tf", "synthetic", "--out", str(tmp_path))
    assert (
        again.returncode == 2
        and "already exists" in again.stderr
        and "Traceback" not in again.stderr
    )


def test_help_texts(synthetic_dir):
    for command in ("explore", "synthetic"):
        result = run_module("mura_tf", command, "--help")
        assert result.returncode == 0 and "usage: mura-tf " + command in result.stdout


@pytest.mark.parametrize("size", [(300, 120), (117, 512)])
def test_sample_thumbnails_keep_each_films_aspect_ratio(tmp_path, size):
    from mura_tf.evaluators.plots import preview

    path = tmp_path / "film.png"
    Image.new("L", size, 200).save(path)
    with Image.open(path) as im:
        im.thumbnail((128, 128))  # Pillow's own aspect-preserving fit, the reference
        expected = im.size
    shown = preview(str(path), size=128)
    assert (shown.shape[1], shown.shape[0]) == expected
