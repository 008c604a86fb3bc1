"""A user's own films: a folder of classes or a CSV manifest, PNG, JPEG and DICOM mixed, read
into the same catalogue as MURA and FracAtlas, with every bad input named in one line."""

from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mura_tf.cli import run as run_cli
from mura_tf.data.catalogue import detect_dataset, load_catalogue
from mura_tf.data.datasets import dataset_of_parts
from mura_tf.data.manifest import MAX_DROPPED_SHARE, write_manifest
from mura_tf.errors import ConfigError, MuraDataError, MuraDataWarning
from recipes.common import run
from tests.dev_packages import need
from tests.own_films import manifest_of, own_films, write_film

need("pydicom")
REPO = Path(__file__).resolve().parents[1]
SMOKE = ["--image-size", "32", "--epochs", "1", "--max-steps", "2", "--weights", "none"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test renders its DICOM films into a cache of its own."""
    monkeypatch.setenv("MURA_TF_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def films(synthetic_dir, tmp_path_factory):
    """The synthetic elbow and hand films as a folder of classes (normal/, abnormal/), one
    film in three each PNG, JPEG and DICOM; the written catalogue has `file` and `kind`."""
    folder = tmp_path_factory.mktemp("own") / "classes"
    source = load_catalogue(synthetic_dir, "elbow,hand")
    return folder, own_films(source, folder)


def test_a_folder_of_classes_is_read_with_its_labels_and_a_patient_split(films):
    folder, written = films
    frame = load_catalogue(folder)
    info = dataset_of_parts(frame["part"])
    assert (info.positive, info.negative, info.parts) == ("abnormal", "normal", ("OWN_FILMS",))
    truth = dict(zip(written["file"], written["label"], strict=True))
    assert (
        len(frame) == len(written) and frame["label"].tolist() == frame["path"].map(truth).tolist()
    )
    # Each film its own study and patient; the test split is drawn once, about a fifth.
    assert frame["study"].is_unique and (frame["patient"] == frame["study"]).all()
    assert set(frame["split"]) == {"train", "test"}
    assert 0.1 < (frame["split"] == "test").mean() < 0.3
    pd.testing.assert_frame_equal(frame, load_catalogue(folder))  # the same split every time
    test = frame[frame["split"] == "test"]
    assert set(test["label"]) == {0, 1}  # stratified by label


def test_dicom_films_are_trained_on_as_displayed(films):
    from mura_tf.data.film_cache import displayed_file
    from mura_tf.data.pipeline import PipelineConfig, make_dataset

    _, written = films
    dicom = written[written["kind"] == "dicom"].head(3)
    for row in dicom.itertuples():
        with Image.open(row.path) as source, Image.open(displayed_file(row.file)) as rendered:
            assert np.array_equal(np.asarray(rendered), np.asarray(source.convert("L")))
    # The pipeline reads the rendering; the predictions keep the DICOM file's own path.
    frame = dicom.assign(path=dicom["file"])
    config = PipelineConfig(image_size=32, normalization="raw")
    images, _, meta = next(iter(make_dataset(frame, config, batch_size=3, with_meta=True)))
    from mura_tf.data.pipeline import load_image

    for image, row in zip(images.numpy(), dicom.itertuples(), strict=True):
        expected = load_image(row.path, 32).numpy()  # the PNG the DICOM file was made from
        assert np.abs(image - expected).max() <= 1
    assert [p.decode() for p in meta["path"].numpy()] == dicom["file"].tolist()


def test_which_class_is_positive(films, tmp_path):
    _, written = films
    named = tmp_path / "named"
    for row in written.head(12).itertuples():
        write_film(row.path, named / ("bbb" if row.label else "aaa") / Path(row.file).stem, "png")
    with pytest.raises(ConfigError, match=r"is positive, aaa or bbb\? pass --positive"):
        detect_dataset(named)
    assert detect_dataset(named, positive="bbb").positive == "bbb"
    flipped = load_catalogue(named, positive="aaa", check_images=False)
    assert detect_dataset(named, positive="aaa").positive == "aaa"
    assert flipped["label"].tolist() == [int("/aaa/" in p) for p in flipped["path"]]
    with pytest.raises(ConfigError, match="--positive ccc: the labels of .* are aaa and bbb"):
        detect_dataset(named, positive="ccc")


def test_a_manifest_groups_studies_honours_its_split_and_names_its_parts(films, tmp_path):
    _, written = films
    source = written.assign(short=written["part"].str[3:].str.lower())
    path = manifest_of(
        source, tmp_path / "list.csv",
        patient=source["patient"], study=source["study"], part=source["short"],
        split=source["split"].map({"train": "train", "valid": "test"}),
    )  # fmt: skip
    frame = load_catalogue(path)
    assert sorted(set(frame["part"])) == ["OWN_ELBOW", "OWN_HAND"]
    assert frame.groupby("study")["path"].count().to_dict() == (
        source.groupby("study")["file"].count().to_dict()
    )
    assert (frame["split"] == "test").sum() == (source["split"] == "valid").sum()
    only = load_catalogue(path, "hand", ("test",))
    assert set(only["part"]) == {"OWN_HAND"} and set(only["split"]) == {"test"}


# --- Bad input: named, counted, never silently dropped --------------------------------------


def rows_of(written: pd.DataFrame, n: int = 60) -> pd.DataFrame:
    return written.head(n).reset_index(drop=True)


def warned(path: Path, **kwargs) -> tuple[pd.DataFrame, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_catalogue(path, **kwargs)
    return frame, [str(w.message) for w in caught if w.category is MuraDataWarning]


def test_each_bad_row_is_named_and_dropped(films, tmp_path):
    _, written = films
    rows = rows_of(written, 100)
    path = manifest_of(rows, tmp_path / "m" / "list.csv")
    table = pd.read_csv(path, dtype=str)
    table.loc[3, "path"] = "gone/film.png"  # a missing file: row 5 of the CSV
    table.loc[7, "label"] = "maybe"  # a label that is not one of the two
    table.loc[9, "path"] = table.loc[8, "path"]  # a duplicate
    broken = tmp_path / "m" / "broken.png"
    broken.write_bytes(Path(rows.loc[10, "file"]).read_bytes()[:100])  # does not decode
    table.loc[10, "path"] = "broken.png"
    table.to_csv(path, index=False)
    frame, messages = warned(path)
    assert len(frame) == len(rows) - 4
    said = "\n".join(messages)
    assert "list.csv:5 (no such file)" in said
    assert "list.csv:9 (label 'maybe' is not abnormal or normal)" in said
    assert "list.csv:11 (the same film as list.csv:10)" in said
    assert "dropped 1 film(s), does not decode: list.csv:12 (corrupt" in said
    assert all(len(m.splitlines()) == 1 for m in messages)
    with pytest.raises(MuraDataError, match=r"list.csv:9: label 'maybe' is not .* \(--strict\)"):
        load_catalogue(path, strict=True)


def test_too_many_problems_stop_the_run(films, tmp_path):
    _, written = films
    rows = rows_of(written, 40)
    path = manifest_of(rows, tmp_path / "list.csv")
    table = pd.read_csv(path, dtype=str)
    table.loc[: int(MAX_DROPPED_SHARE * 40) + 1, "path"] = "gone.png"
    table.to_csv(path, index=False)
    with pytest.raises(MuraDataError, match=r"films have problems .* over the 5% a run accepts"):
        warned(path)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda t: t.drop(columns="label"), r"lacks the column\(s\) label: a manifest has"),
        (lambda t: t.assign(label="normal"), r"every film is labelled normal: an empty class"),
        (
            lambda t: t.assign(patient="p1", split=["train"] * (len(t) - 1) + ["test"]),
            r"patient p1 is on both sides of the split \(list.csv:2 \(train\)",
        ),
        (
            lambda t: t.assign(study="s1"),
            r"study s1 has films of more than one label \(list.csv:2",
        ),
    ],
    ids=["no-label-column", "one-label-only", "patient-on-both-sides", "study-of-two-labels"],
)
def test_a_manifest_that_contradicts_itself_is_refused_in_one_line(
    damage, message, films, tmp_path
):
    _, written = films
    path = manifest_of(rows_of(written, 30), tmp_path / "list.csv")
    damage(pd.read_csv(path, dtype=str)).to_csv(path, index=False)
    with pytest.raises(MuraDataError, match=message):
        load_catalogue(path)


def test_an_empty_class_folder_is_refused(films, tmp_path):
    _, written = films
    for row in rows_of(written, 6).itertuples():
        write_film(row.path, tmp_path / "abnormal" / Path(row.file).stem, "png")
    (tmp_path / "normal").mkdir()
    (tmp_path / "normal" / "notes.txt").write_text("no films here")
    with pytest.raises(MuraDataError, match=r"normal holds no PNG, JPEG or DICOM film: an empty"):
        load_catalogue(tmp_path)


def test_bad_manifest_on_the_command_line_is_one_line(films, tmp_path, capsys):
    from mura_tf.commands.explore import main

    path = tmp_path / "list.csv"
    path.write_text("file,label\na.png,1\n")
    code = run_cli(main, ["--data-dir", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "lacks the column(s) path" in err and "Traceback" not in err


# --- The same data path ---------------------------------------------------------------------


def deterministic_run(data_dir: Path, out: Path) -> Path:
    argv = ["--data-dir", str(data_dir), "--out", str(out), "--deterministic", *SMOKE]
    assert run(importlib.import_module("recipes.resnet18_mlp").CONFIG, argv=argv) == 0
    (run_dir,) = [p for p in out.glob("*/*/*") if (p / "metrics.json").exists()]
    return run_dir


@pytest.mark.slow
def test_a_manifest_of_a_dataset_trains_byte_for_byte_as_the_dataset(synthetic_dir, tmp_path):
    from mura_tf.commands.manifest import main

    path = tmp_path / "lists" / "synthetic.csv"
    assert run_cli(main, ["--data-dir", str(synthetic_dir), "--out", str(path)]) == 0
    pd.testing.assert_frame_equal(load_catalogue(path), load_catalogue(synthetic_dir))
    folder = deterministic_run(synthetic_dir, tmp_path / "from-folder")
    manifest = deterministic_run(path, tmp_path / "from-manifest")
    for name in ("splits.csv", "predictions.csv", "metrics.json"):
        assert (folder / name).read_bytes() == (manifest / name).read_bytes(), name
    assert (
        json.loads((folder / "config.json").read_text())["data_dir"]
        != json.loads((manifest / "config.json").read_text())["data_dir"]
    )


def test_a_manifest_of_fracatlas_keeps_its_split_and_outlines(tmp_path):
    from mura_tf.data.catalogue import load_outlines

    sample = REPO / "samples" / "fracatlas"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MuraDataWarning)
        frame = load_catalogue(sample)
        path = write_manifest(frame, tmp_path / "fracatlas.csv")
        pd.testing.assert_frame_equal(load_catalogue(path), frame)
        assert load_outlines(path).keys() == load_outlines(sample).keys()
    assert detect_dataset(path).name == "fracatlas"


# Every recipe trains from these films (a folder of classes, and a manifest naming their
# parts) in `test_recipes.test_every_recipe_runs_end_to_end_on_tiny_images`.


# --- Every command ----------------------------------------------------------------------------


@pytest.mark.slow
def test_every_command_reads_own_films(films, tmp_path, capsys):
    """A run trained from the folder of classes; `evaluate` on it reproduces the run's test
    metrics; `predict` on a manifest of the test films, `explore`, `tfds-build` and the
    run's report use the classes' own names."""
    import tensorflow_datasets as tfds

    from mura_tf.commands import evaluate, explore, predict, tfds_build
    from mura_tf.runs.record import read_run

    folder, written = films
    argv = ["--data-dir", str(folder), "--out", str(tmp_path / "runs"), *SMOKE]
    assert run(importlib.import_module("recipes.resnet18_mlp").CONFIG, argv=argv) == 0
    printed = capsys.readouterr().out
    assert "Test metrics (your films" in printed and "study_auc" in printed
    (metrics_file,) = (tmp_path / "runs").glob("resnet18_mlp/own-all/*/metrics.json")
    run_dir = metrics_file.parent
    metrics = json.loads((run_dir / "metrics.json").read_text())

    out = tmp_path / "evaluation"
    argv = ["--model", str(run_dir / "export"), "--data-dir", str(folder), "--out", str(out)]
    assert run_cli(evaluate.main, argv) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["study"]["auc"] == pytest.approx(metrics["study"]["auc"], abs=1e-4)
    assert again["n_images"] == metrics["n_images"]

    test = load_catalogue(folder, splits=("test",))
    listed = manifest_of(
        written.set_index("file").loc[test["path"]].reset_index(), tmp_path / "test.csv",
        split="test",
    )  # fmt: skip
    argv = ["--model", str(run_dir), str(listed), "--out", str(tmp_path / "predicted")]
    assert run_cli(predict.main, argv) == 0
    predicted = pd.read_csv(tmp_path / "predicted" / "predictions.csv")
    assert sorted(predicted["path"]) == sorted(test["path"])
    assert (
        predicted["label"].tolist()
        == predicted["path"].map(dict(zip(test["path"], test["label"], strict=True))).tolist()
    )

    argv = ["--data-dir", str(folder), "--out", str(tmp_path / "explore")]
    assert run_cli(explore.main, argv) == 0
    assert "Abnormal" in capsys.readouterr().out

    argv = ["--manual-dir", str(folder), "--data-dir", str(tmp_path / "tfds")]
    assert run_cli(tfds_build.main, argv) == 0
    (prepared,) = (tmp_path / "tfds" / "own_films").glob("*")
    builder = tfds.builder_from_directory(str(prepared))
    assert builder.info.features["label"].names == ["normal", "abnormal"]
    counts = {name: split.num_examples for name, split in builder.info.splits.items()}
    assert counts == load_catalogue(folder)["split"].value_counts().to_dict()

    from mura_tf.data import datasets

    datasets._own.clear()  # as in a process that never read the films (`mura-tf report`)
    assert dataset_of_parts(["OWN_FILMS"]).positive == "positive"
    finished = read_run(run_dir)  # which registers the run's own dataset from config.json
    assert dataset_of_parts(finished.metrics["per_part"]).positive == "abnormal"
