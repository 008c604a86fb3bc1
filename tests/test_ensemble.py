"""Ensembles: two small runs averaged into one run folder whose export, reloaded in a fresh
process that never imports mura_tf, gives the mean of the members' predictions."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mura_tf.cli import run as run_cli
from mura_tf.commands.ensemble import main as ensemble_main
from recipes.common import run

# Module fixtures: these tests stay on one pytest-xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("ensemble")


@pytest.fixture(scope="module")
def trained(tiny_runs):
    """`resnet18_mlp --ensemble 2` beside the session's tiny runs: seeds 0 and 1 (each a run,
    trained here unless another test asked for it first) and their ensemble (two members test
    the mean as well as three, for a third of the training)."""
    from recipes.resnet18_mlp import CONFIG

    argv = ["--data-dir", str(tiny_runs.data_dir), "--out", str(tiny_runs.out), "--part",
            "elbow", *tiny_runs.flags, "--ensemble", "2"]  # fmt: skip
    with tiny_runs.held():
        assert run(CONFIG, argv=argv) == 0
    members = [tiny_runs("elbow", 0), tiny_runs("elbow", 1)]
    return members, members[0].with_name(f"ensemble2-{members[0].name}")


def test_the_ensemble_command_trains_a_recipes_seeds_as_the_recipes_flag_does(
    trained, tiny_runs, synthetic_dir, capsys
):
    """`mura-tf ensemble --recipe NAME --members K` is `--ensemble K` of the recipe: with the
    same flags it finds the same members and ensemble, finished, and trains nothing again."""
    members, ensemble = trained
    out = ensemble.parents[2]
    argv = ["--recipe", "resnet18_mlp", "--members", "2", "--out", str(out),
            "--data-dir", str(synthetic_dir), "--part", "elbow", *tiny_runs.flags]  # fmt: skip
    capsys.readouterr()
    assert run_cli(ensemble_main, argv) == 0
    printed = capsys.readouterr().out
    assert "member 1/2: seed 0 already finished" in printed
    assert "member 2/2: seed 1 already finished" in printed
    assert f"ensemble {ensemble.name} already finished" in printed
    from mura_tf.evaluators.metrics import metrics_table

    metrics = json.loads((ensemble / "metrics.json").read_text())
    assert metrics_table(metrics).to_string() in printed
    wrong = run_cli(ensemble_main, ["--recipe", "no_such_recipe", "--synthetic"])
    assert wrong == 2 and "--recipe no_such_recipe: no such recipe" in capsys.readouterr().err


FRESH = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    paths = sys.argv[2:]
    out = loaded.serve_images(tf.constant([open(p, "rb").read() for p in paths])).numpy()
    print(json.dumps({"mura_tf": any(m.startswith("mura_tf") for m in sys.modules),
                      "probability": out[:, 0].tolist()}))
    """
)


def test_an_ensemble_of_seeds_is_the_mean_of_its_members(trained, tmp_path):
    members, out = trained
    assert [m.name.split("-")[0] for m in members] == ["seed0", "seed1"]
    assert out.name == f"ensemble2-{members[0].name}"
    for item in ("config.json", "metrics.json", "predictions.csv", "report.html",
                 "export/saved_model.pb"):  # fmt: skip
        assert (out / item).exists(), item
    config = json.loads((out / "config.json").read_text())
    assert config["ensemble"]["members"] == [str(m) for m in members]

    frames = [pd.read_csv(m / "predictions.csv").set_index("path") for m in members]
    mean = sum(f["probability"] for f in frames) / len(frames)
    own = pd.read_csv(out / "predictions.csv").set_index("path")
    np.testing.assert_allclose(own["probability"], mean.loc[own.index], atol=1e-6)
    assert not np.allclose(frames[0]["probability"], frames[1]["probability"])  # they differ

    paths = list(own.index[:12])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    fresh = subprocess.run(
        [sys.executable, "-c", FRESH, str(out / "export"), *paths],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    answer = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert answer["mura_tf"] is False
    np.testing.assert_allclose(answer["probability"], mean.loc[paths], atol=1e-6)


def test_the_ensemble_command_combines_given_runs(trained, tmp_path, capsys):
    members, _ = trained
    out = tmp_path / "two"
    assert run_cli(ensemble_main, [str(members[1]), str(members[0]), "--out", str(out)]) == 0
    # Its test metrics carry intervals as a single run's do, from its own predictions.
    from mura_tf.evaluators.intervals import metric_intervals

    metrics = json.loads((out / "metrics.json").read_text())
    seed = json.loads((members[1] / "config.json").read_text())["experiment"]["seed"]
    expected = metric_intervals(pd.read_csv(out / "predictions.csv"), seed=seed)["study"]
    low, high = metrics["study"]["auc_ci"]
    assert [low, high] == pytest.approx(expected["auc"]) and low <= metrics["study"]["auc"] <= high
    assert "95% intervals" in capsys.readouterr().out
    assert "95% intervals" in (out / "report.html").read_text()
    frames = [pd.read_csv(m / "predictions.csv").set_index("path") for m in members]
    own = pd.read_csv(out / "predictions.csv").set_index("path")
    mean = (frames[0]["probability"] + frames[1]["probability"]) / 2
    np.testing.assert_allclose(own["probability"], mean.loc[own.index], atol=1e-6)
    assert json.loads((out / "metrics.json").read_text())["n_images"] == len(own)
    # `mura-tf serve` serves an ensemble as a run: its REST answers are the ensemble's
    import base64

    from mura_tf.serving.rest import create_app

    films = list(own.index[:3])
    instances = [{"b64": base64.b64encode(Path(f).read_bytes()).decode()} for f in films]
    answer = (
        create_app(out)
        .test_client()
        .post(
            "/v1/models/mura:predict",
            json={"signature_name": "serve_images", "instances": instances},
        )
    )
    served = np.array(answer.get_json()["predictions"])[:, 0]
    np.testing.assert_allclose(served, own.loc[films, "probability"], atol=1e-5)


def test_members_that_do_not_fit_are_one_line(trained, tmp_path, capsys):
    members, _ = trained
    assert run_cli(ensemble_main, [str(members[0]), "--out", str(tmp_path / "e")]) == 2
    assert "at least two runs" in capsys.readouterr().err
    assert (
        run_cli(ensemble_main, [str(members[0]), str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    )
    assert "is not a finished supervised run" in capsys.readouterr().err


def test_the_dev_summary_scores_studies_as_the_mean_of_their_views():
    """An ensemble's dev AUROC (`ensemble.dev_summary`) is per study, as on test: checked
    against scikit-learn on study probabilities averaged by hand."""
    from sklearn.metrics import roc_auc_score

    from mura_tf.runs.ensemble import dev_summary

    rng = np.random.default_rng(0)
    studies = np.repeat(np.arange(40), 2)  # two views a study
    labels = np.repeat(rng.integers(0, 2, 40), 2)
    probability = np.clip(0.3 * labels + rng.uniform(0, 0.7, 80), 0, 1)
    dev = pd.DataFrame(
        {"study": studies.astype(str), "part": "XR_WRIST", "label": labels,
         "probability": probability, "path": [f"f{i}.png" for i in range(80)]}
    )  # fmt: skip
    by_hand = probability.reshape(40, 2).mean(axis=1)
    summary = dev_summary(dev)
    assert summary["study_auc"] == pytest.approx(roc_auc_score(labels[::2], by_hand))
    assert (summary["n_images"], summary["n_studies"]) == (80, 40)
    assert dev_summary(dev.assign(label=1))["study_auc"] is None  # one class: no AUROC
