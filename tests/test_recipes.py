import csv
import importlib
import json
import os
import pkgutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import recipes
from mura_tf.runs.presets import SYNTHETIC_IMAGE_SIZE
from mura_tf.runs.record import read_run
from recipes.common import build_parser, configure, run

# Module fixtures: these tests stay on one pytest-xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("recipes")

# Every recipe module, found rather than listed: a new recipe is tested without being added.
RECIPES = sorted(m.name for m in pkgutil.iter_modules(recipes.__path__) if m.name != "common")
SMOKE = ["--image-size", "32", "--epochs", "1", "--max-steps", "2", "--weights", "none"]
REPO = Path(__file__).resolve().parents[1]


def recipe(name):
    return importlib.import_module(f"recipes.{name}").CONFIG


def only_run_dir(out: Path) -> Path:
    runs = [p.parent for p in out.rglob("config.json") if p.parent.parent.parent.parent == out]
    assert len(runs) == 1, runs
    return runs[0]


def test_every_recipe_module_keeps_the_one_contract():
    """A recipe is a module with a `CONFIG` (a RunConfig named after the module) whose command
    line is `recipes.common.run(CONFIG)`; its flags are exactly its config's flag fields."""
    from mura_tf.runs.settings import RunConfig, flags

    assert {"baseline_densenet", "mura_paper", "simclr_pretrain", "simclr_finetune"} <= set(RECIPES)
    for name in RECIPES:
        module = importlib.import_module(f"recipes.{name}")
        assert isinstance(module.CONFIG, RunConfig) and module.CONFIG.recipe == name, name
        assert "raise SystemExit(run(CONFIG))" in Path(module.__file__).read_text(), name
        parser = build_parser(module.CONFIG, "")
        known = {a.dest for a in parser._actions}
        assert {f.name for f, _ in flags(type(module.CONFIG))} <= known, name


# One recipe of each kind in a fresh process (the contract test checks every module's main
# guard): a report 000 recipe, the DenseNet169 baseline, SimCLR pre-training.
FRESH_HELP = ["resnet18_linear", "baseline_densenet", "simclr_pretrain"]


def test_recipes_answer_help_in_a_fresh_process():
    # Without TF_CPP_MIN_LOG_LEVEL (conftest sets it) the recipe must start TensorFlow quietly.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"recipes.{name}", "--help"],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )  # fmt: skip
        for name in FRESH_HELP
    }
    for name, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0 and not err.strip(), (name, err)
        assert f"usage: python -m recipes.{name}" in out and "--synthetic" in out, name


# The smoke run swaps DenseNet169 and ResNet-50 for ResNet18 (`--backbone`): DenseNet169's
# end-to-end run costs ~165 s on the CI's 2 cores (tracing 169 layers for train, dev, predict
# and export), a ninth of the suite's budget, and shares every line past the backbone with the
# others; its backbone is checked in test_models, and the README's main command runs it end
# to end on the synthetic set.
SMOKE_EXTRA = {
    "baseline_densenet": ["--backbone", "resnet18"],
    # One run here; its ensemble is trained in test_fracatlas_commands.
    "fracatlas_outlines": ["--ensemble", "1"],
    "mura_paper": ["--backbone", "resnet18", "--part", "elbow,hand"],
    "resnet18_bodypart": ["--intermediate-epochs", "1"],
    # One recipe in mixed precision (bfloat16 on a CPU): it trains, exports and reports too.
    "resnet18_linear": ["--mixed-precision", "on"],
    "simclr_finetune": ["--backbone", "resnet18"],
    "simclr_pretrain": ["--backbone", "resnet18", "--batch-size", "8"],
}


# Recipes about body parts read films whose manifest names their parts; the others read the
# same films as a folder of classes, which names none.
ABOUT_PARTS = {"mura_paper", "part_router", "resnet18_bodypart", "resnet18_per_part"}


@pytest.fixture(scope="module")
def sources(synthetic_dir, tmp_path_factory) -> dict[str, Path]:
    """Where the smoke runs read their films, as a user brings them (`mura_tf.data.manifest`):
    the synthetic elbow and hand films written as PNG, JPEG and DICOM mixed, in a folder of
    classes (`classes`) and listed with their parts in a manifest (`parts`); the vendored
    FracAtlas sample as a manifest, outlines and all (`fracatlas`). `test_own_films` shows a
    manifest of a dataset trains byte for byte as the dataset's folder does."""
    import warnings

    from mura_tf.data.catalogue import load_catalogue
    from mura_tf.data.manifest import write_manifest
    from mura_tf.errors import MuraDataWarning
    from tests.dev_packages import need
    from tests.own_films import manifest_of, own_films

    need("pydicom")
    out = tmp_path_factory.mktemp("sources")
    written = own_films(load_catalogue(synthetic_dir, "elbow,hand"), out / "classes")
    parts = manifest_of(written, out / "parts.csv", part=written["part"].str[3:].str.lower())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MuraDataWarning)
        fracatlas = load_catalogue(REPO / "samples" / "fracatlas")
    return {
        "classes": out / "classes",
        "parts": parts,
        "fracatlas": write_manifest(fracatlas, out / "fracatlas.csv"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_runs_end_to_end_on_tiny_images(name, sources, tmp_path, capsys, monkeypatch):
    """Every recipe trains, evaluates, exports and reports from a user's PNG, JPEG and DICOM
    films (a recipe made for a dataset of its own, from its vendored sample); a recipe that
    needs what a folder of classes cannot say (outlines, two parts) refuses it in one line."""
    monkeypatch.setenv("MURA_TF_CACHE", str(tmp_path / "cache"))  # its DICOM films rendered
    config = importlib.import_module(f"recipes.{name}").CONFIG
    smoke = SMOKE[:-2] if name == "simclr_pretrain" else SMOKE  # no --weights: it trains them
    argv = ["--out", str(tmp_path / "runs"), *smoke, *SMOKE_EXTRA.get(name, [])]
    if config.dataset == "fracatlas" or name == "part_router":
        assert run(config, argv=["--data-dir", str(sources["classes"]), *argv]) == 2
        said = capsys.readouterr().err.strip()
        assert len(said.splitlines()) == 1 and "Traceback" not in said
        assert ("has no fracture outlines" if name != "part_router" else "give two or more") in said
        assert not any((tmp_path / "runs").rglob("seed*")), "a refused run left its folder"
    data_dir = sources[
        "fracatlas" if config.dataset == "fracatlas" else "parts" if name in ABOUT_PARTS
        else "classes"
    ]  # fmt: skip
    code = run(config, argv=["--data-dir", str(data_dir), *argv])
    assert code == 0
    printed = capsys.readouterr().out
    run_dir = only_run_dir(tmp_path / "runs")
    assert run_dir.parts[-3] == name
    assert f"tensorboard --logdir {run_dir / 'logs'}" in printed
    for item in ("config.json", "history.csv", "logs", "checkpoints/best.keras", "metrics.json"):
        assert (run_dir / item).exists(), item
    assert not (run_dir / "backup").exists()
    finished = read_run(run_dir)
    assert finished is not None and finished.settings["recipe"] == name
    if name == "simclr_pretrain":
        encoder = keras.saving.load_model(run_dir / "encoder.keras")
        assert encoder.input_shape[1:] == (32, 32, 3) and "encoder handed over" in printed
        return
    if name == "part_router":
        routing = finished.metrics["router"]
        assert "Body-part routing" in printed and "model handed over: epoch 1 of 1" in printed
        assert sum(map(sum, routing["confusion"])) == routing["studies"]
        router = keras.saving.load_model(run_dir / "model.keras")
        assert router.output_shape == (None, 2)  # the manifest's parts: elbow, hand
        return
    assert "study_auc" in printed and "model handed over: epoch 1 of 1" in printed
    if config.dataset != "fracatlas":  # the films are the user's, and called theirs
        assert "Test metrics (your films" in printed
    mixed = name == "resnet18_linear"
    assert finished.config["dtype_policy"] == ("mixed_bfloat16" if mixed else "float32")
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    for item in ("model.keras", "export/saved_model.pb", "predictions.csv"):
        assert (run_dir / item).exists(), item
    metrics = finished.metrics
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert (
        metrics["n_images"] == len(predictions)
        and metrics["n_studies"] == predictions["study"].nunique()
    )
    values = {"accuracy", "precision", "recall", "f1", "auc", "kappa"}
    # each value, and its 95% interval beside it (mura_tf.evaluators.intervals)
    assert set(metrics["study"]) == values | {f"{k}_ci" for k in values}
    assert metrics["intervals"]["level"] == 0.95 and "95% intervals" in printed
    if name == "resnet18_bodypart":
        stage = json.loads((run_dir / "body_part" / "metrics.json").read_text())
        assert "body-part task: macro F1" in printed
        from sklearn.metrics import f1_score

        parts = pd.read_csv(run_dir / "body_part" / "predictions.csv")
        assert len(parts) == stage["n_images"] == len(predictions)
        assert stage["macro_f1"] == pytest.approx(
            f1_score(parts["part"], parts["predicted"], average="macro")
        )
        assert stage["accuracy"] == pytest.approx((parts["part"] == parts["predicted"]).mean())


def finished_run_argv(data_dir, out) -> list[str]:
    """The command of the shared `finished_run`: two real epochs of resnet18_mlp at 32 px."""
    return ["--data-dir", str(data_dir), "--out", str(out), "--image-size", "32", "--epochs", "3",
            "--weights", "none", "--patience", "0", "--monitor", "val_loss"]  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert run(recipe("resnet18_mlp"), argv=finished_run_argv(synthetic_dir, out)) == 0
    return only_run_dir(out)


def test_run_folder_records_settings_predictions_and_metrics(finished_run, synthetic_dir):
    config = json.loads((finished_run / "config.json").read_text())
    assert config["experiment"]["backbone"] == "resnet18" and config["experiment"]["head"] == "mlp"
    assert config["experiment"]["learning_rate"] == 1e-3 and config["experiment"]["freeze_backbone"]
    assert config["normalization"] == "imagenet"
    predictions = pd.read_csv(finished_run / "predictions.csv")
    assert list(predictions.columns) == ["path", "part", "patient", "study", "label", "probability"]
    assert len(predictions) == config["images"]["test"]
    assert predictions["path"].str.contains("/valid/").all()
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert set(metrics["per_part"]) == set(predictions["part"])
    with (finished_run / "history.csv").open() as f:
        history = list(csv.DictReader(f))
    assert [r["epoch"] for r in history] == ["0", "1", "2"]
    best = int(np.argmin([float(r["val_loss"]) for r in history]))
    assert metrics["selected_epoch"]["epoch"] == best + 1
    assert metrics["selected_epoch"]["value"] == pytest.approx(float(history[best]["val_loss"]))
    assert json.loads((finished_run / "checkpoints" / "best.json").read_text())["epoch"] == best + 1
    assert not (finished_run / "backup").exists()  # the resume point goes once all is written


def test_with_patience_0_the_run_hands_over_its_best_checkpoint(finished_run):
    """Epochs run out with early stopping off: the evaluated model is still the best epoch's."""
    import keras
    import keras_hub  # noqa: F401 - registers the ResNet backbone for deserialisation

    from mura_tf.data.pipeline import PipelineConfig, make_dataset

    predictions = pd.read_csv(finished_run / "predictions.csv")
    best = keras.saving.load_model(finished_run / "checkpoints" / "best.keras", compile=False)
    images = make_dataset(predictions, PipelineConfig(image_size=32), batch_size=16)
    np.testing.assert_allclose(
        best.predict(images, verbose=0)[:, 0], predictions["probability"], atol=1e-5
    )


def test_export_reloads_in_a_fresh_process_and_reproduces_predictions(
    finished_run, synthetic_dir, tmp_path
):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mura_tf",
            "evaluate",
            "--model",
            str(finished_run / "export"),
            "--data-dir",
            str(synthetic_dir),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    original = pd.read_csv(finished_run / "predictions.csv")
    again = pd.read_csv(tmp_path / "predictions.csv")
    assert again["path"].tolist() == original["path"].tolist()
    np.testing.assert_allclose(again["probability"], original["probability"], atol=1e-5)
    assert json.loads((tmp_path / "metrics.json").read_text())["n_images"] == len(original)
    for figure in ("roc.png", "confusion.png"):
        assert (tmp_path / figure).stat().st_size > 1000


def test_finished_run_is_not_overwritten_without_asking(finished_run, synthetic_dir, capsys):
    argv = finished_run_argv(synthetic_dir, finished_run.parents[2])
    assert run(recipe("resnet18_mlp"), argv=argv) == 2
    assert "already holds a finished run: pass --overwrite" in capsys.readouterr().err


def test_synthetic_preset_unfreezes_only_a_random_backbone():
    mlp = recipe("resnet18_mlp")
    assert not configure(mlp, ["--synthetic"], "").freeze_backbone
    assert configure(mlp, ["--synthetic", "--freeze"], "").freeze_backbone  # explicit wins
    assert configure(recipe("resnet18_bodypart"), ["--synthetic"], "").freeze_backbone


def test_synthetic_preset_shrinks_the_run_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("MURA_TF_CACHE", str(tmp_path))
    exp = configure(recipe("baseline_densenet"), ["--synthetic", "--epochs", "3"], "")
    assert exp.image_size == SYNTHETIC_IMAGE_SIZE and exp.weights == "none" and exp.epochs == 3
    assert exp.learning_rate == 1e-3 and exp.monitor == "val_loss"
    assert any("learning_rate 2e-05 -> 0.001" in note for note in exp.notes)
    assert not any("epochs" in note for note in exp.notes)  # given explicitly, so kept
    folder = Path(exp.data_folder())
    assert folder.parent == tmp_path and (folder / "MURA-v1.1" / "train_image_paths.csv").is_file()
    stamp = (folder / "MURA-v1.1").stat().st_mtime
    assert Path(exp.data_folder()) == folder and (folder / "MURA-v1.1").stat().st_mtime == stamp


@pytest.mark.slow
def test_resnet18_mlp_learns_the_synthetic_signal(tmp_path, monkeypatch):
    monkeypatch.setenv("MURA_TF_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert (
        run(recipe("resnet18_mlp"), argv=["--synthetic", "--part", "elbow", "--out", str(out)]) == 0
    )
    predictions = pd.read_csv(only_run_dir(out) / "predictions.csv")
    studies = predictions.groupby("study").agg(y=("label", "first"), p=("probability", "mean"))
    assert roc_auc_score(studies["y"], studies["p"]) >= 0.7


def recipe_process(*args, cwd, stdout):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, "-m", "recipes.resnet18_linear", *args],
        cwd=cwd,
        env=env,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
    )


def committed_epochs(out: Path) -> int:
    found = list(out.rglob("backup/state.json"))
    return json.loads(found[0].read_text())["epochs_done"] if found else 0


@pytest.mark.slow
def test_a_run_killed_after_its_best_epoch_resumes_and_hands_over_that_epoch(
    synthetic_dir, tmp_path
):
    """SIGKILL early, after the first epoch: the resumed run draws the batches an
    uninterrupted run of the same seed draws (`--deterministic`), so its every epoch, the
    epoch it hands over and where it stops are the uninterrupted run's."""
    args = ["--data-dir", str(synthetic_dir), "--image-size", "32", "--epochs", "30",
            "--max-steps", "2", "--weights", "none", "--no-freeze", "--patience", "3",
            "--monitor", "val_loss", "--deterministic", "--lr", "0.003"]  # fmt: skip
    with open(tmp_path / "reference.log", "w") as log:
        reference = recipe_process(*args, "--out", str(tmp_path / "a"), cwd=tmp_path, stdout=log)
        assert reference.wait(timeout=300) == 0
    expected = json.loads(next((tmp_path / "a").rglob("metrics.json")).read_text())
    kept = expected["selected_epoch"]
    assert kept["stopped_early"], "the reference run never stopped early: nothing to resume"

    out = tmp_path / "b"
    with open(tmp_path / "first.log", "w") as log:
        first = recipe_process(*args, "--out", str(out), cwd=tmp_path, stdout=log)
        deadline = time.time() + 240
        while time.time() < deadline and first.poll() is None:
            if committed_epochs(out) >= 1:
                break
            time.sleep(0.005)
        assert first.poll() is None, "the run ended before it could be killed"
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_at = committed_epochs(out)
    assert 1 <= killed_at < kept["epochs_run"] - 1  # at least two epochs left to draw again
    (run_dir,) = [p.parents[1] for p in out.rglob("backup/state.json")]
    assert not (run_dir / "metrics.json").exists()
    with open(tmp_path / "second.log", "w") as log:
        assert recipe_process(*args, "--out", str(out), cwd=tmp_path, stdout=log).wait(300) == 0
    second = (tmp_path / "second.log").read_text()
    assert int(second.split("Epoch ", 1)[1].split("/", 1)[0]) == killed_at + 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["selected_epoch"] == kept
    reference_history = pd.read_csv(next((tmp_path / "a").rglob("history.csv")))
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == list(range(kept["epochs_run"]))
    pd.testing.assert_frame_equal(history, reference_history, check_exact=False, rtol=1e-6)
    reference_predictions = next((tmp_path / "a").rglob("predictions.csv"))
    np.testing.assert_allclose(
        pd.read_csv(run_dir / "predictions.csv")["probability"],
        pd.read_csv(reference_predictions)["probability"],
        atol=1e-6,
    )
    assert (run_dir / "export" / "saved_model.pb").is_file() and not (run_dir / "backup").exists()


@pytest.mark.parametrize("name", RECIPES)
def test_help_shows_the_reports_defaults(name, capsys):
    with pytest.raises(SystemExit) as e:
        run(recipe(name), argv=["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
    exp = recipe(name)
    assert f"usage: python -m recipes.{name}" in text
    lr = exp.base_learning_rate if name == "simclr_pretrain" else exp.learning_rate
    assert f"(default: {lr})" in text and f"(default: {exp.epochs})" in text


def test_a_run_kind_offers_only_the_flags_it_takes(capsys):
    not_taken = ("--ensemble", "--fraction", "--class-weights", "--intermediate-epochs")
    for name, offered in (("part_router", False), ("resnet18_mlp", True)):
        with pytest.raises(SystemExit):
            run(recipe(name), argv=["--help"])
        text = capsys.readouterr().out
        assert all((f"{flag} " in text) == offered for flag in not_taken), (name, text)
    with pytest.raises(SystemExit) as e:  # argparse's own one-line usage error
        run(recipe("part_router"), argv=["--synthetic", "--ensemble", "2"])
    assert e.value.code == 2
    assert "unrecognized arguments: --ensemble 2" in capsys.readouterr().err


def test_baseline_densenet_is_report_002s_experiment_and_classifies():

    from mura_tf.models.backbones import build_backbone
    from mura_tf.models.heads import build_classifier, classification_head

    exp = recipe("baseline_densenet")
    assert (exp.backbone, exp.learning_rate, exp.epochs) == ("densenet169", 2e-5, 15)
    assert (exp.batch_size, exp.eval_batch_size, exp.dev_fraction) == (8, 16, 0.2)
    model = build_classifier(
        build_backbone(exp.backbone, 32, "none"), classification_head(exp.head), 32
    )
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    out = np.asarray(model(images))
    assert out.shape == (2, 1)
    from test_models import by_hand

    np.testing.assert_allclose(out, by_hand(model, images), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bf16_cpu", [True, False])
def test_mixed_precision_modes_and_the_old_boolean(monkeypatch, bf16_cpu):
    from mura_tf.errors import ConfigError
    from mura_tf.runs.supervised import Experiment
    from mura_tf.training import precision

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: bf16_cpu)
    monkeypatch.setattr(precision, "_gpu_with_tensor_cores", lambda: False)
    # auto: bfloat16 only where the CPU has it and for images of 128 px or more.
    assert precision.policy_name("auto", 64) == precision.policy_name("off", 224) == "float32"
    assert precision.policy_name("auto", 128) == ("mixed_bfloat16" if bf16_cpu else "float32")
    assert precision.policy_name("on", 32) == "mixed_bfloat16"
    old = Experiment(recipe="x", mixed_precision=False, image_size=256)  # version 0.2's config
    assert old.mixed_precision == "off" and old.settings()["mixed_precision"] is False
    new = Experiment(recipe="x", image_size=256)
    assert new.mixed_precision == "auto"
    assert new.settings()["mixed_precision"] is bf16_cpu  # what the run computes in
    # Where auto stays float32 the folder is named as before auto was the default.
    assert (new.settings() == old.settings()) is not bf16_cpu
    small = Experiment(recipe="x", image_size=64)
    assert (
        small.settings() == Experiment(recipe="x", image_size=64, mixed_precision="off").settings()
    )
    with pytest.raises(ConfigError, match="--mixed-precision must be one of auto, on, off"):
        Experiment(recipe="x", mixed_precision="fp8")
