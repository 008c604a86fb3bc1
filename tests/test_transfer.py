"""Starting a run on one dataset from a run on another: a SimCLR encoder or a supervised run
trained on real FracAtlas films (the vendored sample) as the backbone of a MURA run, with the
input size and backbone checked in one line."""

from pathlib import Path

import keras
import numpy as np
import pytest

from mura_tf.models.backbones import build_backbone
from recipes import resnet18_mlp, simclr_finetune, simclr_pretrain
from recipes.common import run

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "fracatlas"
TINY = ["--backbone", "resnet18", "--image-size", "32", "--batch-size", "8", "--max-steps", "2"]


def finished(out: Path, name: str) -> Path:
    (found,) = [p.parent for p in out.rglob(name)]
    return found


@pytest.fixture(scope="module")
def fracatlas_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("fracatlas")
    pretrain = ["--data-dir", str(SAMPLE), "--epochs", "1", "--out", str(out / "p"), *TINY]
    assert run(simclr_pretrain.CONFIG, argv=pretrain) == 0
    supervised = [
        "--data-dir", str(SAMPLE), "--epochs", "1", "--weights", "none", "--no-freeze",
        "--out", str(out / "s"), *TINY,
    ]  # fmt: skip
    assert run(resnet18_mlp.CONFIG, argv=supervised) == 0
    return finished(out / "p", "encoder.keras"), finished(out / "s", "model.keras")


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
    common = ["--data-dir", str(synthetic_dir), "--part", "elbow", "--epochs", "1", *TINY]
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
        "--out", str(tmp_path), *TINY, *flags,
    ]  # fmt: skip
    assert run(resnet18_mlp.CONFIG, argv=argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err
