"""Every command on real films: a tiny run trained on the vendored FracAtlas sample, then
`evaluate`, `predict` (with Grad-CAM and the radiologists' outline) and `tfds-build` on the
same folder; and that run, or a SimCLR encoder pre-trained on the sample, as the starting point
of a MURA run (input size and backbone checked in one line)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

from mura_tf.cli import run as run_cli
from mura_tf.commands import ensemble as ensemble_command
from mura_tf.data.catalogue import load_catalogue
from mura_tf.data.fracatlas import load_outlines
from mura_tf.models.backbones import build_backbone
from recipes import fracatlas_outlines, resnet18_mlp, simclr_finetune, simclr_pretrain
from recipes.common import run

# Module fixtures: these tests stay on one pytest-xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("fracatlas_commands")

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "fracatlas"
TINY = ["--backbone", "resnet18", "--image-size", "32", "--batch-size", "8", "--epochs", "1"]
TRANSFER = ["--backbone", "resnet18", "--image-size", "32", "--batch-size", "8", "--max-steps", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    argv = ["--data-dir", str(SAMPLE), "--weights", "none", "--no-freeze", "--out", str(out), *TINY]
    assert run(resnet18_mlp.CONFIG, argv=argv) == 0
    (run_dir,) = [p.parent for p in out.rglob("metrics.json")]
    return run_dir


def test_a_run_on_fracatlas_speaks_of_its_parts_and_scores_where_it_looked(trained):
    assert trained.parent.name == "fracatlas-all"
    metrics = json.loads((trained / "metrics.json").read_text())
    assert set(metrics["per_part"]) <= {"FA_HAND", "FA_LEG", "FA_HIP", "FA_SHOULDER", "FA_MIXED"}
    test = load_catalogue(SAMPLE, splits=("test",), check_images=False)
    outlined = set(load_outlines(SAMPLE)) & set(test.loc[test["label"] == 1, "path"])
    assert metrics["localisation"]["films"] == len(outlined) > 0
    scores = pd.read_csv(trained / "localisation.csv")
    assert set(scores["path"]) == outlined
    # The summary is the mean of the films' own scores (each film's: test_localisation).
    where = metrics["localisation"]
    assert where["pointing_hit_rate"] == pytest.approx(scores["hit"].mean())
    assert where["pointing_chance"] == pytest.approx(scores["pointing_chance"].mean())
    assert where["mass_in_outline"] == pytest.approx(scores["mass"].mean(), rel=1e-6)
    from mura_tf.serving.load import load_outline_serving

    assert load_outline_serving(trained) is None  # no outline head, no outline map
    page = (trained / "report.html").read_text()
    assert (
        "Grad-CAM against the radiologists' outlines" in page and "FracAtlas's test split" in page
    )
    assert "MURA paper" not in page  # MURA's published figures are not FracAtlas's
    # What others report on FracAtlas, beside this run's own AUROC and pointing game.
    published = page.split("Published figures for this experiment", 1)[1].split("<h2>", 1)[0]
    assert published.count("FracAtlas, elsewhere (own splits)") == 7
    assert "0.944" in published and "0.912 (0.883-0.939)" in published
    assert f"{metrics['study']['auc']:.3f} (" in published  # this run's, with its interval
    assert "Grad-CAM pointing game" in published
    assert f"{where['pointing_hit_rate']:.3f}" in published


def test_evaluate_and_predict_reproduce_the_runs_own_test_predictions(trained, tmp_path):
    from mura_tf.commands import evaluate, predict

    own = pd.read_csv(trained / "predictions.csv").set_index("path")["probability"]
    out = tmp_path / "evaluation"
    argv = ["--model", str(trained / "export"), "--data-dir", str(SAMPLE), "--out", str(out)]
    assert run_cli(evaluate.main, argv) == 0
    scored = pd.read_csv(out / "predictions.csv").set_index("path")["probability"]
    np.testing.assert_allclose(scored.loc[own.index], own, atol=1e-5)
    argv = ["--model", str(trained), str(SAMPLE), "--out", str(tmp_path / "p")]
    assert run_cli(predict.main, argv) == 0
    predicted = pd.read_csv(tmp_path / "p" / "predictions.csv").set_index("path")["probability"]
    np.testing.assert_allclose(predicted.loc[own.index], own, atol=1e-5)


def test_predict_cam_draws_the_outline_on_the_film_as_displayed(trained, tmp_path):
    from mura_tf.commands import predict

    outlines = load_outlines(SAMPLE)
    film = next(p for p in outlines if p.endswith("IMG0002628.jpg"))  # stored turned (EXIF 8)
    cams = tmp_path / "cams"
    argv = ["--model", str(trained), film, "--out", str(tmp_path / "p"), "--cam", str(cams)]
    assert run_cli(predict.main, argv) == 0
    (overlay,) = list(cams.rglob("IMG0002628.png"))
    picture = np.asarray(Image.open(overlay).convert("RGB")).astype(int)
    with Image.open(film) as im:
        assert picture.shape[:2] == ImageOps.exif_transpose(im).size[::-1]
    green = (picture[..., 1] > 200) & (picture[..., 0] < 60) & (picture[..., 2] < 60)
    ys, xs = np.nonzero(green)
    x0, y0, x1, y1 = outlines[film].boxes[0]
    assert len(xs) > 20  # the outline is drawn ...
    assert np.all((xs >= x0 - 4) & (xs <= x1 + 4) & (ys >= y0 - 4) & (ys <= y1 + 4))  # ... there


def test_tfds_build_stores_the_films_as_displayed(tmp_path):
    data_dir = tmp_path / "tfds"
    offline = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    result = subprocess.run(
        [sys.executable, "-m", "mura_tf", "tfds-build", "--manual-dir", str(SAMPLE),
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, **offline, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'tfds.load("fracatlas"' in result.stdout
    from mura_tf.data.tfds_fracatlas import Fracatlas

    builder = Fracatlas(data_dir=str(data_dir))
    catalogue = load_catalogue(SAMPLE)
    for split in ("train", "valid", "test"):
        rows = catalogue[catalogue["split"] == split]
        assert builder.info.splits[split].num_examples == len(rows)
    examples = {
        e["path"].decode(): e for e in builder.as_dataset(split="train").as_numpy_iterator()
    }
    turned = "images/Non_fractured/IMG0001268.jpg"  # EXIF orientation 6
    with Image.open(SAMPLE / turned) as im:
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(examples[turned]["image"], shown)


def test_the_body_part_router_runs_on_real_films(tmp_path):
    """The run kinds not trained above or below (resnet18_mlp and SimCLR are): the body-part
    router, a classifier of FracAtlas's own parts. resnet18_linear and resnet18_per_part are
    resnet18_mlp's run with another head or part, resnet18_bodypart is the router's stage
    followed by resnet18_mlp's (run end to end on the synthetic set in test_recipes), and the
    DenseNet169 recipes take 1.5 minutes each even at 32 px: they run on FracAtlas in
    `benchmarks.real_films`."""
    from recipes.part_router import CONFIG

    argv = [
        "--data-dir", str(SAMPLE), "--weights", "none", "--image-size", "32", "--epochs", "1",
        "--batch-size", "8", "--max-steps", "1", "--out", str(tmp_path),
    ]  # fmt: skip
    assert run(CONFIG, argv=argv) == 0
    (metrics,) = [p for p in tmp_path.rglob("metrics.json") if p.parent.name != "body_part"]
    assert metrics.parent.parent.name == "fracatlas-all"
    config_json = json.loads((metrics.parent / "config.json").read_text())
    section = next(v for v in config_json.values() if isinstance(v, dict) and "part" in v)
    assert section["dataset"] == "fracatlas" and section["part"] == "all"


def finished(out: Path, name: str) -> Path:
    (found,) = [p.parent for p in out.rglob(name)]
    return found


@pytest.fixture(scope="module")
def fracatlas_runs(tmp_path_factory, trained):
    """A SimCLR encoder pre-trained on the sample, and the supervised run above."""
    out = tmp_path_factory.mktemp("fracatlas")
    pretrain = ["--data-dir", str(SAMPLE), "--epochs", "1", "--out", str(out), *TRANSFER]
    assert run(simclr_pretrain.CONFIG, argv=pretrain) == 0
    return finished(out, "encoder.keras"), trained


def test_a_mura_run_starts_from_a_fracatlas_encoder_or_supervised_run(
    fracatlas_runs, synthetic_dir, tmp_path
):
    encoder_run, supervised_run = fracatlas_runs
    assert "fracatlas" in str(encoder_run) and "fracatlas" in str(supervised_run)
    encoder = keras.saving.load_model(encoder_run / "encoder.keras", compile=False)
    classifier = keras.saving.load_model(supervised_run / "model.keras", compile=False)
    (inner,) = [
        layer for layer in classifier.layers
        if isinstance(layer, keras.Model) and len(layer.output.shape) == 4
    ]  # fmt: skip
    for source, trained in ((encoder_run, encoder), (supervised_run, inner)):
        started = build_backbone("resnet18", 32, str(source), fused_batch_norm=False)
        for a, b in zip(started.get_weights(), trained.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    common = ["--data-dir", str(synthetic_dir), "--part", "elbow", "--epochs", "1", *TRANSFER]
    tune = [*common, "--encoder", str(encoder_run), "--out", str(tmp_path / "a")]
    assert run(simclr_finetune.CONFIG, argv=tune) == 0
    onto = [*common, "--weights", str(supervised_run), "--out", str(tmp_path / "b")]
    assert run(resnet18_mlp.CONFIG, argv=onto) == 0
    assert (finished(tmp_path / "b", "metrics.json") / "export").is_dir()


@pytest.mark.parametrize(
    "flags, said",
    [
        (["--image-size", "64"], "takes 32 px images: pass --image-size 32"),
        (["--backbone", "densenet169"], "holds a resnet18: pass --backbone resnet18"),
    ],
)
def test_a_run_that_does_not_fit_is_one_line(fracatlas_runs, synthetic_dir, tmp_path, capsys,
                                             flags, said):  # fmt: skip
    _, supervised_run = fracatlas_runs
    argv = [
        "--data-dir", str(synthetic_dir), "--part", "elbow", "--weights", str(supervised_run),
        "--out", str(tmp_path), *TRANSFER, *flags,
    ]  # fmt: skip
    assert run(resnet18_mlp.CONFIG, argv=argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err


def test_an_outline_guided_run_hands_over_the_classifier_and_scores_its_own_map(tmp_path):
    argv = [
        "--data-dir", str(SAMPLE), "--weights", "none", "--no-freeze", "--out", str(tmp_path),
        "--outline-weight", "2", *TINY,
    ]  # fmt: skip
    assert run(resnet18_mlp.CONFIG, argv=argv) == 0
    (run_dir,) = [p.parent for p in tmp_path.rglob("metrics.json")]
    assert json.loads((run_dir / "config.json").read_text())["experiment"]["outline_weight"] == 2
    history = pd.read_csv(run_dir / "history.csv")
    assert history["outline_loss"].gt(0).all() and "val_outline_loss" not in history
    # `benchmarks.time_to_quality` reads each epoch's dev AUROC and its time from the
    # TensorBoard log: the same AUROC the history has, within the run's own lifetime.
    from benchmarks.time_to_quality import keras_curve

    curve = keras_curve(run_dir)
    assert [p["epoch"] for p in curve] == (history["epoch"] + 1).tolist()
    np.testing.assert_allclose([p["dev_auroc"] for p in curve], history["val_auc"], atol=1e-6)
    written = (run_dir / "config.json").stat().st_mtime
    assert all(written <= p["time"] <= (run_dir / "metrics.json").stat().st_mtime for p in curve)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    own = metrics["localisation_outline_head"]
    assert own["films"] == metrics["localisation"]["films"] > 0
    scores = pd.read_csv(run_dir / "localisation_outline_head.csv")
    assert set(scores["path"]) == set(pd.read_csv(run_dir / "localisation.csv")["path"])
    np.testing.assert_allclose(own["mass_in_outline"], scores["mass"].mean(), rtol=1e-6)
    # The export carries the head's map: scored again from it, the same films score the same.
    from mura_tf.evaluators.localisation import score_films
    from mura_tf.serving.load import load_outline_serving

    outlines = load_outlines(SAMPLE)
    test = pd.read_csv(run_dir / "predictions.csv")
    again = score_films(test, outlines, load_outline_serving(run_dir))
    np.testing.assert_allclose(again["mass"], scores["mass"], rtol=1e-5, atol=1e-7)
    assert (again["hit"] == scores["hit"]).all()
    # Dev films are scored too, for choosing settings, never test's.
    splits = pd.read_csv(run_dir / "splits.csv")
    fractured = load_catalogue(SAMPLE, check_images=False).query("label == 1")["path"]
    dev = splits[(splits["split"] == "dev") & splits["path"].isin(fractured)]
    assert own["dev"]["films"] == metrics["localisation"]["dev"]["films"]
    assert own["dev"]["films"] == int(dev["path"].isin(outlines).sum()) > 0
    page = (run_dir / "report.html").read_text()
    assert "outline head's own map of the same film" in page and "dev films" in page
    # The reader page shows the head's own map beside Grad-CAM: the film as displayed under
    # the map the export gives.
    import base64
    import io

    import tensorflow as tf

    from mura_tf.data.pipeline import decode_film, to_film
    from mura_tf.serving.gradcam import overlay
    from mura_tf.serving.rest import create_app

    path = test.loc[test["label"] == 1, "path"].iloc[0]
    data = Path(path).read_bytes()
    upload = {"films": [(io.BytesIO(data), Path(path).name)]}
    client = create_app(run_dir).test_client()
    (view,) = client.post(
        "/reader/study", data=upload, content_type="multipart/form-data"
    ).get_json()["views"]
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(view["outline_image"][22:]))))
    _, maps, contents = load_outline_serving(run_dir)(np.array([data], dtype=object))
    film = decode_film(tf.constant(data)).numpy()
    np.testing.assert_array_equal(
        shown, overlay(film, to_film(maps[0], contents[0], film.shape[:2]))
    )
    assert view["outline_image"] != view["image"]
    # What is handed over is the classifier alone: one output, loadable without the project.
    handed = keras.models.load_model(run_dir / "model.keras", compile=False)
    assert len(handed.outputs) == 1 and "outline_head" not in [x.name for x in handed.layers]
    test = pd.read_csv(run_dir / "predictions.csv")
    film = np.asarray(Image.open(test["path"][0]).convert("RGB").resize((32, 32)))
    assert handed.predict(film[None].astype("float32"), verbose=0).shape == (1, 1)


def test_the_outline_recipe_exports_and_scores_the_mean_of_its_seeds_maps(
    tmp_path, monkeypatch, capsys
):
    """`fracatlas_outlines` averages seeds (three by default; two here, which is enough for a
    mean): the ensemble's maps, exported and scored, are the mean of its members' own
    exports'. Its data given relative to where it ran, `mura-tf ensemble` of the same members
    from elsewhere asks for --data-dir in one line, then scores the same."""
    monkeypatch.chdir(REPO)
    relative = str(SAMPLE.relative_to(REPO))
    argv = ["--data-dir", relative, "--out", str(tmp_path), "--ensemble", "2", *TINY]
    assert run(fracatlas_outlines.CONFIG, argv=argv) == 0
    (ensemble,) = [p.parent for p in tmp_path.rglob("metrics.json") if "ensemble" in p.parent.name]
    members = json.loads((ensemble / "config.json").read_text())["ensemble"]["members"]
    assert ensemble.name.startswith("ensemble2-") and len(members) == 2
    from mura_tf.evaluators.localisation import localisation_metrics, score_films
    from mura_tf.serving.load import load_cam_serving, load_outline_serving

    # The reference: each member's own export, averaged here with NumPy.
    def mean_of(load):
        served = [load(member) for member in members]

        def maps(data):
            outs = [one(data) for one in served]
            return tuple(np.mean([o[i] for o in outs], axis=0) for i in range(2)) + (outs[0][2],)

        return maps

    outlines = load_outlines(SAMPLE)
    test = pd.read_csv(ensemble / "predictions.csv")
    metrics = json.loads((ensemble / "metrics.json").read_text())
    for key, file, load in (
        ("localisation", "localisation.csv", load_cam_serving),
        ("localisation_outline_head", "localisation_outline_head.csv", load_outline_serving),
    ):
        expected = score_films(test, outlines, mean_of(load))
        scores = pd.read_csv(ensemble / file)
        np.testing.assert_allclose(scores["mass"], expected["mass"], rtol=1e-4, atol=1e-6)
        assert (scores["hit"] == expected["hit"]).all() and len(scores) > 0
        summary = localisation_metrics(expected)
        assert metrics[key]["pointing_hit_rate"] == pytest.approx(summary["pointing_hit_rate"])
        assert metrics[key]["dev"]["films"] > 0  # FracAtlas's dev films, held out by both
    # The export's own map is the members' mean, film by film.
    fractured = test.loc[test["label"] == 1, "path"].head(3)
    data = np.array([Path(p).read_bytes() for p in fractured], dtype=object)
    _, maps, _ = load_outline_serving(ensemble)(data)
    np.testing.assert_allclose(maps, mean_of(load_outline_serving)(data)[1], atol=1e-5)
    assert "outline head's own map of the same film" in (ensemble / "report.html").read_text()
    # Every dev film held out by both is scored; the sample's dev films are all fractured, so
    # there is no AUROC (tests/test_ensemble.py checks one against scikit-learn).
    splits = pd.read_csv(Path(members[0]) / "splits.csv")
    dev = int((splits["split"] == "dev").sum())  # one film a study on FracAtlas
    assert metrics["dev"] == {"study_auc": None, "n_images": dev, "n_studies": dev} and dev > 0

    monkeypatch.chdir(tmp_path)
    again = [*members, "--out", str(tmp_path / "again")]
    capsys.readouterr()
    assert run_cli(ensemble_command.main, again) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and relative in err[0] and "--data-dir" in err[0], err
    assert not (tmp_path / "again" / "metrics.json").exists()
    assert run_cli(ensemble_command.main, [*again, "--data-dir", str(SAMPLE)]) == 0
    for file in ("localisation.csv", "localisation_outline_head.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(tmp_path / "again" / file), pd.read_csv(ensemble / file)
        )


def test_outline_weight_on_a_dataset_without_outlines_is_one_line(synthetic_dir, tmp_path, capsys):
    argv = [
        "--data-dir", str(synthetic_dir), "--part", "elbow", "--weights", "none",
        "--out", str(tmp_path), "--outline-weight", "1", "--no-freeze", *TRANSFER,
    ]  # fmt: skip
    assert run(resnet18_mlp.CONFIG, argv=argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no fracture outlines" in err[0], err
    assert not any(tmp_path.rglob("seed*")), "the refused run left its folder"
