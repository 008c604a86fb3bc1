"""The part-router cascade: a router run, an expert for one part and an all-parts fallback for
the other, assembled into one run folder whose export, reloaded in a fresh process that never
imports mura_tf, routes each study by the vote of its views and scores it with that part's
model."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix

from mura_tf.cli import run as run_cli
from mura_tf.commands.cascade import main as cascade_main
from mura_tf.data.parts import PARTS
from mura_tf.errors import ConfigError
from recipes.common import run

# Module fixtures: these tests stay on one pytest-xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("cascade")

SMALL_RUN = ["--image-size", "32", "--epochs", "1", "--max-steps", "2", "--weights", "none"]


@pytest.fixture(scope="module")
def cascade(synthetic_dir, tiny_runs, tmp_path_factory):
    """Router on elbow and hand; an elbow expert; an elbow+hand fallback (for hand)."""
    from recipes.part_router import CONFIG as ROUTER

    out = tmp_path_factory.mktemp("cascade")
    common = ["--data-dir", str(synthetic_dir), "--out", str(out), *SMALL_RUN]
    assert run(ROUTER, argv=[*common, "--part", "elbow,hand"]) == 0
    router = next((out / "part_router").rglob("metrics.json")).parent
    expert, fallback = tiny_runs("elbow", 0), tiny_runs("elbow,hand", 1)
    folder = out / "the-cascade"
    argv = ["--router", str(router), "--experts", str(expert), "--fallback", str(fallback),
            "--out", str(folder)]  # fmt: skip
    assert run_cli(cascade_main, argv) == 0
    return {"router": router, "expert": expert, "fallback": fallback, "cascade": folder}


def test_each_study_goes_to_the_part_its_views_vote_for(cascade):
    predictions = pd.read_csv(cascade["cascade"] / "predictions.csv")
    columns = [f"p_{p.removeprefix('XR_').lower()}" for p in ("XR_ELBOW", "XR_HAND")]
    # Hand computation: each view's most likely of the router's parts, then the majority per
    # study, ties to the larger summed probability.
    view = np.where(predictions[columns[0]] >= predictions[columns[1]], "XR_ELBOW", "XR_HAND")
    np.testing.assert_array_equal(predictions["view_part"], view)
    for _, rows in predictions.groupby("study"):
        votes = rows["view_part"].value_counts()
        top = votes[votes == votes.max()].index
        if len(top) > 1:
            sums = {p: rows[f"p_{p.removeprefix('XR_').lower()}"].sum() for p in top}
            expected = max(sums, key=sums.get)
        else:
            expected = top[0]
        assert set(rows["routed_part"]) == {expected}


def test_routed_films_are_scored_by_their_parts_model(cascade):
    predictions = pd.read_csv(cascade["cascade"] / "predictions.csv").set_index("path")
    expert = pd.read_csv(cascade["expert"] / "predictions.csv").set_index("path")
    fallback = pd.read_csv(cascade["fallback"] / "predictions.csv").set_index("path")
    # Sent to their true part, elbow films are the expert's and hand films the fallback's,
    # as those runs predicted them on their own.
    elbow = predictions[predictions["part"] == "XR_ELBOW"]
    hand = predictions[predictions["part"] == "XR_HAND"]
    assert len(elbow) and len(hand)
    np.testing.assert_allclose(
        elbow["probability_true_part"], expert.loc[elbow.index, "probability"], atol=1e-5
    )
    np.testing.assert_allclose(
        hand["probability_true_part"], fallback.loc[hand.index, "probability"], atol=1e-5
    )
    right = predictions["routed_part"] == predictions["part"]
    np.testing.assert_allclose(
        predictions.loc[right, "probability"],
        predictions.loc[right, "probability_true_part"],
        atol=1e-6,
    )
    to_hand = predictions["routed_part"] == "XR_HAND"  # the fallback scores every hand study
    np.testing.assert_allclose(
        predictions.loc[to_hand, "probability"],
        fallback.loc[predictions.index[to_hand], "probability"],
        atol=1e-5,
    )


def test_the_run_folder_reports_the_routers_confusion(cascade):
    folder = cascade["cascade"]
    for item in ("config.json", "metrics.json", "predictions.csv", "report.html",
                 "export/saved_model.pb"):  # fmt: skip
        assert (folder / item).exists(), item
    config = json.loads((folder / "config.json").read_text())["cascade"]
    assert config["experts"] == {"elbow": str(cascade["expert"]), "hand": str(cascade["fallback"])}
    metrics = json.loads((folder / "metrics.json").read_text())
    routing = metrics["router"]
    studies = pd.read_csv(folder / "predictions.csv").groupby("study").first()
    reference = confusion_matrix(studies["part"], studies["routed_part"], labels=routing["parts"])
    np.testing.assert_array_equal(routing["confusion"], reference)
    assert routing["wrong_part_studies"] == int((studies["part"] != studies["routed_part"]).sum())
    assert routing["study"]["accuracy"] == pytest.approx(
        accuracy_score(studies["part"], studies["routed_part"])
    )
    assert {"study", "image", "per_part", "true_part_routing"} <= set(metrics)
    page = (folder / "report.html").read_text()
    assert "went to the wrong part" in page and "routed to" in page
    # Its test metrics carry intervals as a single run's do, from its own predictions.
    from mura_tf.evaluators.intervals import metric_intervals

    expected = metric_intervals(pd.read_csv(folder / "predictions.csv"))["study"]
    low, high = metrics["study"]["auc_ci"]
    assert [low, high] == pytest.approx(expected["auc"]) and low <= metrics["study"]["auc"] <= high
    assert "95% intervals" in page


FRESH = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    studies = json.loads(sys.argv[2])
    out = []
    for paths in studies:
        data = tf.constant([open(p, "rb").read() for p in paths])
        study = loaded.serve_study_images(data)
        route = loaded.route_images(data)
        out.append({"probability": study["probability"].numpy()[:, 0].tolist(),
                    "part": int(study["part"].numpy()),
                    "view_part": route["part"].numpy().tolist(),
                    "single": loaded.serve_images(data).numpy()[:, 0].tolist()})
    print(json.dumps({"mura_tf": any(m.startswith("mura_tf") for m in sys.modules),
                      "studies": out}))
    """
)


def test_the_export_routes_studies_in_a_fresh_process(cascade, tmp_path):
    predictions = pd.read_csv(cascade["cascade"] / "predictions.csv")
    groups = [rows for _, rows in predictions.groupby("study", sort=False)][:6]
    studies = [rows["path"].tolist() for rows in groups]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    fresh = subprocess.run(
        [sys.executable, "-c", FRESH, str(cascade["cascade"] / "export"), json.dumps(studies)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    answer = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert answer["mura_tf"] is False
    for rows, got in zip(groups, answer["studies"], strict=True):
        np.testing.assert_allclose(got["probability"], rows["probability"], atol=1e-5)
        assert PARTS[got["part"]] == rows["routed_part"].iloc[0]
        assert [PARTS[i] for i in got["view_part"]] == rows["view_part"].tolist()
        # serve_images routes each film by itself: where its view agrees with the study's
        # vote, it is the study's score.
        agree = (rows["view_part"] == rows["routed_part"]).to_numpy()
        np.testing.assert_allclose(
            np.array(got["single"])[agree], rows["probability"].to_numpy()[agree], atol=1e-5
        )


def test_serve_serves_a_cascade_film_by_film_and_its_reader_a_study(cascade):
    """The REST answers are the cascade export's `serve_images` (each film routed by itself);
    the reader page scores an upload of two films with their Grad-CAMs."""
    import base64
    import io

    from mura_tf.serving.load import load_image_serving
    from mura_tf.serving.rest import create_app

    films = list(pd.read_csv(cascade["cascade"] / "predictions.csv")["path"][:2])
    data = [Path(f).read_bytes() for f in films]
    client = create_app(cascade["cascade"]).test_client()
    answer = client.post(
        "/v1/models/mura:predict",
        json={"signature_name": "serve_images",
              "instances": [{"b64": base64.b64encode(d).decode()} for d in data]},
    )  # fmt: skip
    direct = load_image_serving(cascade["cascade"])(np.array(data, dtype=object))
    np.testing.assert_allclose(answer.get_json()["predictions"], direct, atol=1e-6)
    upload = {"films": [(io.BytesIO(d), Path(f).name) for d, f in zip(data, films, strict=True)]}
    read = client.post("/reader/study", data=upload, content_type="multipart/form-data")
    result = read.get_json()
    assert read.status_code == 200 and len(result["views"]) == 2, result
    assert result["views"][0]["image"].startswith("data:image/png;base64,")


def test_a_part_without_a_model_stops_with_one_line(cascade, tmp_path):
    from mura_tf.runs.cascade import plan_cascade

    with pytest.raises(ConfigError, match="no model for hand: add a run trained on --part hand"):
        plan_cascade(cascade["router"], [cascade["expert"]])
    with pytest.raises(ConfigError, match="an expert covers one part"):
        plan_cascade(cascade["router"], [cascade["fallback"]])
    with pytest.raises(ConfigError, match="is not a finished body-part router run"):
        plan_cascade(cascade["expert"], [cascade["expert"]], cascade["fallback"])
    with pytest.raises(ConfigError, match="two experts for elbow"):
        plan_cascade(cascade["router"], [cascade["expert"], cascade["expert"]])


def test_report_compare_sets_the_systems_side_by_side(cascade, tmp_path):
    from mura_tf.commands.report import main as report_main

    runs = [cascade["fallback"], cascade["expert"], cascade["cascade"]]
    assert run_cli(report_main, ["--compare", *map(str, runs), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "comparison.csv")
    systems = list(dict.fromkeys(table["system"]))
    assert systems == ["resnet18_mlp", "resnet18_mlp (per part)", "Part-router cascade",
                       "cascade given the true parts", "MURA paper (its test set)"]  # fmt: skip
    # Independent reference: the cascade's elbow kappa from its films by hand, with sklearn.
    films = pd.read_csv(cascade["cascade"] / "predictions.csv")
    elbow = films[films["part"] == "XR_ELBOW"].groupby("study")
    studies = elbow.agg(label=("label", "first"), probability=("probability", "mean"))
    expected = cohen_kappa_score(studies["label"], studies["probability"] >= 0.5)
    got = table.query("system == 'Part-router cascade' and part == 'elbow' and metric == 'kappa'")
    assert got["value"].item() == pytest.approx(expected, abs=1e-9)
    paper = table.query("system == 'MURA paper (its test set)' and part == 'wrist'")
    assert paper["value"].item() == 0.931
    # The per-part row holds only the expert's part.
    per_part = table[table["system"] == "resnet18_mlp (per part)"]
    assert set(per_part["part"]) == {"elbow", "all"}
    assert (paper["low"].item(), paper["high"].item()) == (0.922, 0.940)  # as published
    # Each value with its interval (a bootstrap over the row's own studies).
    auc = table.query("system == 'Part-router cascade' and part == 'all' and metric == 'auc'")
    assert auc["low"].item() <= auc["value"].item() <= auc["high"].item()
    text = (tmp_path / "comparison.md").read_text()
    assert "| Study Kappa (95% interval) |" in text and "| Study AUROC (95% interval) |" in text
    assert "0.931 (0.922-0.940)" in text
    # Paired differences between the rows scored on the same studies.
    pairs = pd.read_csv(tmp_path / "paired.csv")
    cascade_pair = pairs.query("first == 'Part-router cascade'")
    assert "cascade given the true parts" in set(cascade_pair["second"])
    # The cascade against itself given the true parts, on the same studies, from their films:
    # the difference by scikit-learn, its interval by the paired bootstrap written out from
    # the definitions (the same draws), DeLong's p by the 1988 paper's (test_paired); the
    # file keeps six significant digits.
    from sklearn.metrics import roc_auc_score
    from test_paired import delong_by_definition, hand_paired_bootstrap

    (pair,) = cascade_pair.query("second == 'cascade given the true parts'").itertuples()
    routed, told = (
        films.assign(probability=films[column]).groupby("study")
        .agg(label=("label", "first"), probability=("probability", "mean"))
        for column in ("probability", "probability_true_part")
    )  # fmt: skip
    y, a, b = routed["label"].to_numpy(), routed["probability"].to_numpy(), told["probability"]
    b = b.to_numpy()
    assert pair.studies == len(y)
    assert pair.auc_difference == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b),
                                                rel=1e-5, abs=1e-6)  # fmt: skip
    low, high = hand_paired_bootstrap(y, a, b, 10_000, seed=0)
    assert (pair.auc_low, pair.auc_high) == pytest.approx((low, high), rel=1e-5, abs=1e-6)
    with np.errstate(invalid="ignore", divide="ignore"):
        _, p = delong_by_definition(y, a, b)
    assert pair.delong_p == pytest.approx(1.0 if np.isnan(p) else p, rel=1e-5)
    assert "Paired differences" in text
    for metric in ("kappa", "auc", "accuracy"):
        assert (tmp_path / f"comparison_{metric}.png").stat().st_size > 1000
