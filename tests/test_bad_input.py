"""The bad-input corpus: every mistake a user can make at the command line gets one line on
stderr and exit status 2 (or a counted, named skip), never a traceback, and writes no result.

The README's troubleshooting table lists the same cases.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mura_tf.cli import run as run_cli
from recipes.common import run

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["--image-size", "32", "--epochs", "1", "--max-steps", "1", "--weights", "none"]


def recipe(name: str):
    import importlib

    return importlib.import_module(f"recipes.{name}").CONFIG


def one_line_error(capsys, code: int) -> str:
    assert code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in captured.out + captured.err, err
    return err


def csv_free(mura: Path) -> Path:
    """Catalogue by walking folders (as when the CSVs are lost), so files can be removed."""
    for f in mura.glob("*.csv"):
        f.unlink()
    return mura


def remove_part(mura: Path, part: str) -> None:
    for split in ("train", "valid"):
        for f in (csv_free(mura) / split / part).rglob("*.png"):
            f.unlink()


def remove_abnormal_training_studies(mura: Path, part: str) -> None:
    for f in (csv_free(mura) / "train" / part).rglob("*_positive/*.png"):
        f.unlink()


def first_image(mura: Path) -> Path:
    return sorted((mura / "train").rglob("*.png"))[0]


# (id, how the data is damaged, flags, what the one line says)
DATA_CASES = [
    ("empty-folder", lambda m: None, "EMPTY", "holds neither MURA-v1.1/ nor train/ or valid/"),
    ("missing-folder", lambda m: None, "/nonexistent/mura",
     "MURA data folder not found: /nonexistent/mura"),
    ("csv-lists-missing-file", lambda m: first_image(m).unlink(), None,
     "image(s) listed in the CSVs are missing on disk"),
    ("zero-byte-png-strict", lambda m: first_image(m).write_bytes(b""), None,
     "empty file"),
    ("part-without-images", lambda m: remove_part(m, "XR_HUMERUS"), None,
     "no images of XR_HUMERUS"),
    ("fraction-without-both-labels",
     lambda m: remove_abnormal_training_studies(m, "XR_ELBOW"), None,
     "cannot take a label fraction of XR_ELBOW: it has no abnormal study"),
]  # fmt: skip
EXTRA_FLAGS = {
    "zero-byte-png-strict": ["--strict"],
    "part-without-images": ["--part", "humerus"],
    "fraction-without-both-labels": ["--part", "elbow", "--fraction", "0.01"],
}


@pytest.mark.parametrize("case", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_is_one_line(case, mura_copy, tmp_path, capsys):
    name, damage, data_dir, message = case
    damage(mura_copy)
    if data_dir == "EMPTY":
        data_dir = str(tmp_path / "empty")
        os.mkdir(data_dir)
    argv = ["--data-dir", data_dir or str(mura_copy.parent), "--out", str(tmp_path / "out"),
            *SMOKE, *EXTRA_FLAGS.get(name, [])]  # fmt: skip
    err = one_line_error(capsys, run(recipe("resnet18_linear"), argv=argv))
    assert message in err
    assert not list((tmp_path / "out").rglob("metrics.json"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--part", "knee"], "unknown body part 'knee'"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--epochs", "-3"], "--epochs must be at least 1, got -3"),
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--batch-size", "x"], "argument --batch-size: expected a whole number, got 'x'"),
        (["--eval-batch-size", "-1"], "--eval-batch-size must be at least 1"),
        (["--max-steps", "0"], "--max-steps must be at least 1, got 0"),
        (["--augment", "blur"], "unknown augmentation 'blur'"),
        (["--image-size", "16"], "--image-size must be at least 32 for resnet18, got 16"),
        (["--lr", "-1"], "--lr must be positive"),
        (["--dev-fraction", "1.5"], "--dev-fraction must be in (0, 1)"),
        (["--fraction", "0"], "--fraction must be in (0, 1]"),
        (["--weights", "/nonexistent/w.h5"], "weights file not found: /nonexistent/w.h5"),
        (["--strategy", "tpu"], "argument --strategy: invalid choice: 'tpu'"),
        (["--strategy", "multi_worker"], "--strategy multi_worker needs TF_CONFIG"),
    ],
)
def test_bad_flags_are_one_line(argv, message, synthetic_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    base = ["--data-dir", str(synthetic_dir), "--out", str(tmp_path), "--max-steps", "1"]
    with pytest.raises(SystemExit) as e:
        raise SystemExit(run(recipe("resnet18_linear"), argv=[*base, *argv]))
    assert message in one_line_error(capsys, e.value.code)
    assert not any(tmp_path.rglob("metrics.json"))


def test_a_file_that_is_not_weights_is_one_line(synthetic_dir, tmp_path, capsys):
    bogus = tmp_path / "resnet18.weights.h5"
    bogus.write_bytes(b"not an HDF5 file")
    argv = ["--data-dir", str(synthetic_dir), "--out", str(tmp_path / "out"), *SMOKE,
            "--weights", str(bogus)]  # fmt: skip
    err = one_line_error(capsys, run(recipe("resnet18_linear"), argv=argv))
    assert f"cannot load weights {bogus} into resnet18" in err


def test_unknown_backbone_is_one_line(synthetic_dir, tmp_path, capsys):
    argv = ["--data-dir", str(synthetic_dir), "--out", str(tmp_path), "--backbone", "vgg16"]
    err = one_line_error(capsys, run(recipe("simclr_pretrain"), argv=argv))
    assert "unknown backbone 'vgg16': use one of densenet169, resnet50, resnet18" in err


def test_unwritable_out_is_one_line(synthetic_dir, tmp_path, capsys):
    blocker = tmp_path / "file"  # a file where a folder should be: unwritable even for root
    blocker.write_text("")
    argv = ["--data-dir", str(synthetic_dir), "--out", str(blocker / "x"), *SMOKE]
    err = one_line_error(capsys, run(recipe("resnet18_linear"), argv=argv))
    assert "choose a writable --out" in err


def test_a_folder_that_is_not_a_savedmodel_is_one_line(synthetic_dir, tmp_path, capsys):
    from mura_tf.commands.evaluate import main

    argv = ["--model", str(tmp_path), "--data-dir", str(synthetic_dir), "--out", str(tmp_path)]
    err = one_line_error(capsys, run_cli(main, argv))
    assert f"{tmp_path} is not a SavedModel (no saved_model.pb)" in err


def python_m(*args: str, env: dict | None = None, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )


@pytest.mark.parametrize("recipe_name", ["baseline_densenet", "resnet18_linear"])
def test_imagenet_weights_without_network_are_one_line(recipe_name, synthetic_dir, tmp_path):
    # Every request goes to a closed port on loopback: offline, without touching the network.
    offline = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
               "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
               "NO_PROXY": "", "no_proxy": "", "KERAS_HOME": str(tmp_path / "keras"),
               "KAGGLEHUB_CACHE": str(tmp_path / "kaggle")}  # fmt: skip
    result = python_m(
        f"recipes.{recipe_name}", "--data-dir", str(synthetic_dir), "--out", str(tmp_path),
        "--image-size", "32", "--max-steps", "1", "--weights", "imagenet",
        env=offline, cwd=tmp_path,
    )  # fmt: skip
    err = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "cannot download ImageNet weights" in err[-1] and "--weights none" in err[-1]


def test_unreadable_and_hidden_files_are_counted_named_skips(mura_copy, tmp_path):
    images = sorted((csv_free(mura_copy) / "train").rglob("*.png"))
    images[0].write_bytes(b"")  # zero bytes
    images[1].write_bytes(images[1].read_bytes()[:100])  # truncated
    (images[2].parent / f"._{images[2].name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    result = python_m("mura_tf", "explore", "--data-dir", str(mura_copy), "--out",
                      str(tmp_path / "explore"), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "skipped 2 unreadable PNG file(s)" in warnings[0]
    for victim in images[:2]:
        assert victim.relative_to(mura_copy).as_posix() in warnings[0]
    assert "._" not in result.stderr
    assert (tmp_path / "explore" / "summary.json").is_file()
