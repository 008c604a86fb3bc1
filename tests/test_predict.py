"""`mura-tf predict` on a trained run: the same probabilities as the run's own evaluation,
studies as folders, and one line for every kind of bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mura_tf.cli import run as run_cli
from mura_tf.commands.predict import main as predict
from recipes.common import run

# Module fixtures: these tests stay on one pytest-xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("predict")


@pytest.fixture(scope="module")
def trained(synthetic_dir, tmp_path_factory):
    """A finished resnet18_mlp run on the elbow at 32 px (its export has both signatures)."""
    from recipes.resnet18_mlp import CONFIG

    out = tmp_path_factory.mktemp("runs")
    argv = ["--data-dir", str(synthetic_dir), "--out", str(out), "--part", "elbow",
            "--image-size", "32", "--epochs", "1", "--max-steps", "3",
            "--weights", "none"]  # fmt: skip
    assert run(CONFIG, argv=argv) == 0
    (run_dir,) = [p.parent for p in out.rglob("metrics.json")]
    return run_dir


def one_line_error(capsys, code):
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_predict_on_the_mura_folder_reproduces_the_runs_own_test_predictions(
    trained, synthetic_dir, tmp_path, capsys
):
    out = tmp_path / "p"
    argv = ["--model", str(trained), str(synthetic_dir), "--part", "elbow", "--out", str(out)]
    assert run_cli(predict, argv) == 0
    films = pd.read_csv(out / "predictions.csv")
    own = pd.read_csv(trained / "predictions.csv")
    merged = own.merge(films, on="path", suffixes=("_run", "_predict"))
    assert len(merged) == len(own) == len(films)
    np.testing.assert_allclose(merged["probability_predict"], merged["probability_run"], atol=1e-5)
    # studies: the mean of their views, decided at 0.5 (hand computation with pandas)
    studies = pd.read_csv(out / "studies.csv")
    expected = own.groupby("study")["probability"].agg(["mean", "size"])
    got = studies.set_index("study").loc[expected.index]
    np.testing.assert_allclose(got["probability"], expected["mean"], atol=1e-5)
    assert (got["views"] == expected["size"]).all()
    assert (got["abnormal"] == (got["probability"] >= 0.5)).all()
    assert set(got["part"]) == {"XR_ELBOW"} and got["label"].isin([0, 1]).all()
    printed = capsys.readouterr().out
    assert f"{len(films)} films, {len(studies)} studies" in printed


def test_a_folder_is_a_study_and_unreadable_files_are_named(
    trained, synthetic_dir, tmp_path, capsys
):
    views = sorted((synthetic_dir / "MURA-v1.1" / "valid" / "XR_ELBOW").rglob("*.png"))[:2]
    study = tmp_path / "my study"
    study.mkdir()
    for i, view in enumerate(views):
        shutil.copy(view, study / f"view{i}.png")
    (study / "broken.png").write_bytes(views[0].read_bytes()[:200])  # truncated
    (study / "notes.txt").write_text("not a film")  # not an image name: ignored
    out = tmp_path / "p"
    assert (
        run_cli(predict, ["--model", str(trained / "export"), str(study), "--out", str(out)]) == 0
    )
    captured = capsys.readouterr()
    assert "skipped 1 unreadable file(s)" in captured.err and "broken.png" in captured.err
    studies = pd.read_csv(out / "studies.csv")
    films = pd.read_csv(out / "predictions.csv")
    assert len(studies) == 1 and studies["views"].item() == 2 and len(films) == 2
    assert studies["probability"].item() == pytest.approx(films["probability"].mean(), abs=1e-6)
    assert studies["label"].isna().all()  # a folder of one's own says nothing about the label

    strict = ["--model", str(trained), str(study), "--out", str(tmp_path / "q"), "--strict"]
    err = one_line_error(capsys, run_cli(predict, strict))
    assert "broken.png" in err and not (tmp_path / "q").exists()

    per_image = ["--model", str(trained), str(study), "--out", str(out), "--per-image",
                 "--overwrite"]  # fmt: skip
    assert run_cli(predict, per_image) == 0
    assert len(pd.read_csv(out / "studies.csv")) == 2


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("empty", "holds no PNG, JPEG or DICOM file"),
        ("bad-model", "is neither a finished run folder nor a SavedModel"),
        ("done", "already holds predictions: pass --overwrite"),
    ],
)
def test_bad_input_is_one_line(case, message, trained, synthetic_dir, tmp_path, capsys):
    model, inputs, out = str(trained), [str(synthetic_dir)], tmp_path / "p"
    if case == "missing":
        inputs = [str(tmp_path / "nowhere")]
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        inputs = [str(tmp_path / "empty")]
    elif case == "bad-model":
        model = str(tmp_path)
    elif case == "done":
        out.mkdir()
        (out / "studies.csv").write_text("study\n")
    err = one_line_error(capsys, run_cli(predict, ["--model", model, *inputs, "--out", str(out)]))
    assert message in err


@pytest.mark.parametrize("model", ["run", "export"])
def test_predict_with_cam_in_a_fresh_process(model, trained, synthetic_dir, tmp_path):
    """`python -m mura_tf predict --cam` on a folder of studies: an overlay per view at the
    film's own size, a contact sheet per study, from a run folder or from its export."""
    import os
    import subprocess
    import sys

    from PIL import Image

    studies = tmp_path / "studies"
    for folder in sorted((synthetic_dir / "MURA-v1.1" / "valid" / "XR_ELBOW").glob("*/*"))[:3]:
        shutil.copytree(folder, studies / f"{folder.parent.name}-{folder.name}")
    target = trained if model == "run" else trained / "export"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "mura_tf", "predict", "--model", str(target), str(studies),
         "--out", str(tmp_path / "p"), "--cam", str(tmp_path / "cam")],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    films = pd.read_csv(tmp_path / "p" / "predictions.csv")
    sheets = sorted((tmp_path / "cam").glob("*.png"))
    overlays = sorted((tmp_path / "cam").glob("*/*.png"))
    assert len(sheets) == 3 and len(overlays) == len(films) >= 3
    assert "Grad-CAM: " in result.stdout
    for path in map(Path, films["path"]):  # each film's overlay: its folder, its name
        drawn = [o for o in overlays if o.name == path.name and o.parent.name.endswith(
            path.parent.name)]  # fmt: skip
        assert len(drawn) == 1 and Image.open(drawn[0]).size == Image.open(path).size, path


def test_threshold_dev_decides_at_the_runs_own_dev_point(trained, synthetic_dir, tmp_path, capsys):
    from mura_tf.commands import evaluate

    youden = json.loads((trained / "metrics.json").read_text())["operating_points"]["youden"]
    elbow = [str(synthetic_dir), "--part", "elbow"]
    argv = ["--model", str(trained), *elbow, "--out", str(tmp_path / "p"), "--threshold", "dev"]
    assert run_cli(predict, argv) == 0
    studies = pd.read_csv(tmp_path / "p" / "studies.csv")
    np.testing.assert_allclose(studies["threshold"], youden["threshold"], rtol=1e-6)
    assert studies["threshold_rule"].str.contains("youden point of " + trained.name).all()
    expected = studies["probability"] >= youden["threshold"]
    assert (studies["abnormal"] == expected).all()

    # A number: evaluate's metrics are scikit-learn's at that threshold, and say so.
    from sklearn.metrics import recall_score

    out = tmp_path / "e"
    argv = ["--model", str(trained / "export"), "--data-dir", *elbow, "--out", str(out),
            "--threshold", "0.3"]  # fmt: skip
    assert run_cli(evaluate.main, argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["threshold"]["value"] == 0.3
    decided = pd.read_csv(out / "studies.csv")
    assert (decided["abnormal"] == (decided["probability"] >= 0.3)).all()
    assert metrics["study"]["recall"] == pytest.approx(
        recall_score(decided["label"], decided["probability"] >= 0.3)
    )

    # A bare SavedModel records no dev point; a number out of range is refused by the parser.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "export").symlink_to(trained / "export")
    capsys.readouterr()
    argv = ["--model", str(bare / "export"), *elbow, "--out", str(tmp_path / "x"),
            "--threshold", "dev"]  # fmt: skip
    assert run_cli(predict, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threshold dev" in err[0] and "pass a number" in err[0], err
    with pytest.raises(SystemExit):
        predict(["--model", str(trained), *elbow, "--threshold", "1.5"])
    assert "between 0 and 1" in capsys.readouterr().err


def test_dicom_films_predict_as_their_jpegs_and_group_by_study_uid(trained, tmp_path, capsys):
    """Real FracAtlas films as JPEG and the same films as DICOM (MONOCHROME2, MONOCHROME1 with
    inverted pixels, 12 bits with a rescale and a window), one study by its Study Instance UID:
    each view's probability is its JPEG's within 0.01 (TensorFlow decodes the JPEG, Pillow
    the film that became the DICOM); the study is one row, with its descriptions."""
    pytest.importorskip("pydicom")
    from dicom_writer import KINDS, displayed, write_dicom
    from pydicom.uid import generate_uid

    samples = Path(__file__).resolve().parents[1] / "samples" / "fracatlas" / "images"
    films = ["Fractured/IMG0002588.jpg", "Fractured/IMG0000454.jpg", "Fractured/IMG0000453.jpg"]
    jpegs, dicoms = tmp_path / "jpeg", tmp_path / "pacs"
    jpegs.mkdir()
    dicoms.mkdir()
    uid = generate_uid()
    for i, (film, kind) in enumerate(zip(films, KINDS, strict=True)):
        shutil.copy(samples / film, jpegs / f"view{i}.jpg")
        # PACS exports name files by number, without a suffix: found by the DICOM preamble
        write_dicom(displayed(samples / film), dicoms / f"IM{i:04d}", kind, uid, "XR HAND")
    (dicoms / "IM9999").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)  # no pixel data
    for folder in (jpegs, dicoms):
        out = tmp_path / f"out-{folder.name}"
        argv = ["--model", str(trained), str(folder), "--out", str(out)]
        assert run_cli(predict, [*argv, "--cam", str(tmp_path / f"cam-{folder.name}")]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 unreadable file(s)" in err and "IM9999 (DICOM: " in err, err
    by_jpeg = pd.read_csv(tmp_path / "out-jpeg" / "predictions.csv")
    by_dicom = pd.read_csv(tmp_path / "out-pacs" / "predictions.csv")
    np.testing.assert_allclose(by_dicom["probability"], by_jpeg["probability"], atol=0.01)
    (study,) = pd.read_csv(tmp_path / "out-pacs" / "studies.csv").to_dict("records")
    (jpeg_study,) = pd.read_csv(tmp_path / "out-jpeg" / "studies.csv").to_dict("records")
    assert study["study"] == uid and study["views"] == 3
    assert study["description"] == "XR HAND / XR HAND series"
    # Grad-CAM drawn on each film as displayed: the rotated film upright, at its own size
    from PIL import Image

    for i, film in enumerate(films):
        (overlay,) = (tmp_path / "cam-pacs").glob(f"*/IM{i:04d}*.png")
        assert Image.open(overlay).size == displayed(samples / film).shape[::-1]
    assert abs(study["probability"] - jpeg_study["probability"]) < 0.01
    if abs(jpeg_study["probability"] - 0.5) > 0.01:  # the same decision, away from the edge
        assert study["abnormal"] == jpeg_study["abnormal"]


def _b64(data: bytes) -> dict:
    import base64

    return {"b64": base64.b64encode(data).decode("ascii")}


def test_serve_answers_tf_servings_rest_requests_as_the_export_does(trained, tmp_path):
    """The JSON a TF Serving client sends (row and columnar formats, `{"b64": ...}` for bytes,
    https://www.tensorflow.org/tfx/serving/api_rest), answered as the export answers in a
    fresh process that never imports mura_tf; and every bad request is a 4xx, one line."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("pydicom")
    from dicom_writer import displayed, write_dicom

    from mura_tf.serving.rest import create_app

    samples = Path(__file__).resolve().parents[1] / "samples" / "fracatlas" / "images"
    films = [samples / "Fractured/IMG0002588.jpg", samples / "Non_fractured/IMG0000201.jpg"]
    encoded = [f.read_bytes() for f in films]
    dicom = write_dicom(displayed(films[0]), tmp_path / "film.dcm", "monochrome1")
    client = create_app(trained).test_client()

    status = client.get("/v1/models/mura").get_json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    meta = client.get("/v1/models/mura/metadata").get_json()
    signature = meta["metadata"]["signature_def"]["signature_def"]["serve_images"]
    assert signature["inputs"]["images"]["dtype"] == "DT_STRING"
    rows = client.post(
        "/v1/models/mura:predict",
        json={"signature_name": "serve_images", "instances": [_b64(e) for e in encoded]},
    )
    assert rows.status_code == 200, rows.get_json()
    columns = client.post(
        "/v1/models/mura:predict",
        json={"signature_name": "serve_images", "inputs": {"images": [_b64(encoded[0])]}},
    ).get_json()
    by_dicom = client.post(
        "/v1/models/mura:predict",
        json={"signature_name": "serve_images", "instances": [_b64(dicom.read_bytes())]},
    ).get_json()
    code = (
        "import json, sys, tensorflow as tf\n"
        "films = [open(p, 'rb').read() for p in sys.argv[2:]]\n"
        "fn = tf.saved_model.load(sys.argv[1]).signatures['serve_images']\n"
        "print(json.dumps(fn(images=tf.constant(films))['output_0'].numpy().tolist()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(trained / "export"), *map(str, films)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    direct = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(rows.get_json()["predictions"], direct, atol=1e-6)
    np.testing.assert_allclose(columns["outputs"], direct[:1], atol=1e-6)
    np.testing.assert_allclose(by_dicom["predictions"], direct[:1], atol=0.01)

    bad = {
        "not json": (b"{not json", 400, "not a JSON object"),
        "signature": ({"signature_name": "nope", "instances": [1]}, 400, "'nope' is not in"),
        "not a film": (
            {"signature_name": "serve_images", "instances": [_b64(encoded[0]), _b64(b"hello")]},
            400, "instance 1: not a PNG, JPEG or DICOM film",
        ),
        "truncated": (
            {"signature_name": "serve_images", "instances": [_b64(encoded[0][:300])]},
            400, "instance 0: not a readable film",
        ),
        "base64": ({"signature_name": "serve_images", "instances": [{"b64": "%%"}]}, 400,
                   "instance 0: not valid base64"),
        "pixels": ({"instances": [[1, 2, 3]]}, 400, "does not fit"),
    }  # fmt: skip
    for case, (body, code_, message) in bad.items():
        if isinstance(body, bytes):
            answer = client.post("/v1/models/mura:predict", data=body,
                                 content_type="application/json")  # fmt: skip
        else:
            answer = client.post("/v1/models/mura:predict", json=body)
        error = answer.get_json()["error"]
        assert answer.status_code == code_ and message in error and "\n" not in error, case
    assert client.get("/v1/models/other").status_code == 404
    big = b"x" * (64 * 1024 * 1024 + 1)
    answer = client.post("/v1/models/mura:predict", data=big, content_type="application/json")
    assert answer.status_code == 413 and "error" in answer.get_json()


@pytest.fixture
def server(trained):
    """`mura-tf serve`'s app on a loopback port of its own, in a thread."""
    import threading

    from werkzeug.serving import make_server

    from mura_tf.serving.rest import create_app

    httpd = make_server("127.0.0.1", 0, create_app(trained), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_the_reader_page_reads_real_films_and_a_dicom_in_chromium(server, trained, tmp_path):
    """Upload two real FracAtlas films and a DICOM through the page's file input in headless
    Chromium: every view is shown under its Grad-CAM with its probability, the study's
    decision and the run that made it. The screenshot stays in the test's folder."""
    sync_api = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("pydicom")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    from dicom_writer import displayed, write_dicom

    samples = Path(__file__).resolve().parents[1] / "samples" / "fracatlas" / "images"
    films = [samples / "Fractured/IMG0002588.jpg", samples / "Non_fractured/IMG0000201.jpg"]
    dicom = write_dicom(displayed(films[0]), tmp_path / "IM0001.dcm", "monochrome1")
    (tmp_path / "notes.txt").write_text("not a film")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(server + "/")
        page.wait_for_selector("#run table")
        page.set_input_files("#files", [*map(str, films), str(dicom), str(tmp_path / "notes.txt")])
        page.wait_for_selector("body[data-done=yes]", timeout=60_000)
        page.screenshot(path=str(tmp_path / "reader.png"), full_page=True)
        captions = page.locator("figcaption").all_inner_texts()
        verdict = page.inner_text(".verdict")
        run_text = page.inner_text("#run")
        skipped = page.inner_text("#skipped")
        sizes = page.eval_on_selector_all("#views img", "imgs => imgs.map(i => i.naturalWidth)")
        browser.close()
    assert [c.split(":")[0] for c in captions] == [films[0].name, films[1].name, "IM0001.dcm"]
    probabilities = [float(c.split(": ")[1]) for c in captions]
    assert abs(probabilities[2] - probabilities[0]) < 0.01  # the DICOM is the first film
    mean = sum(probabilities) / 3
    assert f"{mean:.3f}" in verdict and ("abnormal" if mean >= 0.5 else "normal") in verdict
    assert "resnet18_mlp" in run_text and "study AUROC" in run_text and "epoch 1 of 1" in run_text
    assert "notes.txt: not a PNG, JPEG or DICOM film" in skipped
    assert sizes[0] == displayed(films[0]).shape[1]  # the overlay is the film at its own size
    assert (tmp_path / "reader.png").stat().st_size > 10_000


def test_serve_under_load_answers_every_request_right(server, trained):
    """32 concurrent clients x 20 requests of real films on loopback: every answer is the
    export's own, no error, and the process's memory is as flat after as before."""
    import json
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from mura_tf.serving.load import load_image_serving

    samples = Path(__file__).resolve().parents[1] / "samples" / "fracatlas" / "images"
    films = sorted(samples.rglob("*.jpg"))[:8]
    expected = load_image_serving(trained)(np.array([f.read_bytes() for f in films], object))
    bodies = [
        json.dumps({"signature_name": "serve_images", "instances": [_b64(f.read_bytes())]}).encode()
        for f in films
    ]

    def client(k: int) -> list[tuple[int, float]]:
        answers = []
        for r in range(20):
            i = (k + r) % len(films)
            request = urllib.request.Request(
                server + "/v1/models/mura:predict", data=bodies[i],
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=120) as answer:
                answers.append((i, json.loads(answer.read())["predictions"][0][0]))
        return answers

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096

    client(0)  # warm up: the first call traces the signature
    before = rss()
    with ThreadPoolExecutor(32) as pool:
        results = [a for answers in pool.map(client, range(32)) for a in answers]
    after = rss()
    assert len(results) == 640
    for i, probability in results:
        assert abs(probability - float(expected[i, 0])) < 1e-5
    assert after - before < 200 * 2**20, (before, after)


def test_evaluate_reads_a_mura_layout_of_dicom_films_as_its_pngs(
    trained, synthetic_dir, tmp_path, capsys
):
    """A department's labelled films in MURA's layout as DICOM (`imageJ.dcm`): `evaluate`
    gives the PNGs' probabilities and metrics; training on them is one line."""
    pytest.importorskip("pydicom")
    from dicom_writer import displayed, write_dicom

    from mura_tf.commands.evaluate import main as evaluate
    from recipes.resnet18_mlp import CONFIG

    source = synthetic_dir / "MURA-v1.1"
    tree = tmp_path / "dicom" / "MURA-v1.1"
    for png in sorted((source / "valid" / "XR_ELBOW").rglob("*.png")):
        target = (tree / png.relative_to(source)).with_suffix(".dcm")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_dicom(displayed(png), target, "12bit-window")
    for png in sorted((source / "train" / "XR_ELBOW").rglob("*.png"))[:40]:  # for the run below
        target = (tree / png.relative_to(source)).with_suffix(".dcm")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_dicom(displayed(png), target, "monochrome2")
    runs = {}
    for name, data in (("png", synthetic_dir), ("dicom", tree.parent)):
        out = tmp_path / f"eval-{name}"
        argv = ["--model", str(trained / "export"), "--data-dir", str(data), "--part", "elbow",
                "--out", str(out)]  # fmt: skip
        assert run_cli(evaluate, argv) == 0
        frame = pd.read_csv(out / "predictions.csv")
        key = frame["path"].str.replace(r"^.*MURA-v1\.1/|\.(png|dcm)$", "", regex=True)
        runs[name] = frame.assign(key=key)
    merged = runs["png"].merge(runs["dicom"], on="key", suffixes=("_png", "_dicom"))
    assert len(merged) == len(runs["png"]) == len(runs["dicom"]) > 0
    np.testing.assert_allclose(merged["probability_dicom"], merged["probability_png"], atol=1e-4)
    argv = ["--data-dir", str(tree.parent), "--out", str(tmp_path / "runs"), "--part", "elbow",
            "--image-size", "32", "--epochs", "1", "--weights", "none"]  # fmt: skip
    capsys.readouterr()
    err = one_line_error(capsys, run(CONFIG, argv=argv))
    assert "holds DICOM films" in err and "training reads PNG and JPEG" in err
