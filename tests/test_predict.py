"""`mura-tf predict` on a trained run: the same probabilities as the run's own evaluation,
studies as folders, and one line for every kind of bad input."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dev_packages import need

from mura_tf.cli import run as run_cli
from mura_tf.commands.predict import main as predict
from recipes.common import run

# Module fixtures: these tests stay on one pytest-xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("predict")


@pytest.fixture(scope="module")
def trained(tiny_runs):
    """A finished resnet18_mlp run on the elbow at 32 px (its export has both signatures)."""
    return tiny_runs("elbow", 0)


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


def study_of_two_views(synthetic_dir: Path, study: Path) -> tuple[Path, list[Path]]:
    """A folder of one's own holding two elbow films of the synthetic set (`view0.png`,
    `view1.png`); the films it was copied from."""
    views = sorted((synthetic_dir / "MURA-v1.1" / "valid" / "XR_ELBOW").rglob("*.png"))[:2]
    study.mkdir()
    for i, view in enumerate(views):
        shutil.copy(view, study / f"view{i}.png")
    return study, views


def test_a_folder_is_a_study_and_unreadable_files_are_named(
    trained, synthetic_dir, tmp_path, capsys
):
    study, views = study_of_two_views(synthetic_dir, tmp_path / "my study")
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
    need("pydicom")
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

    need("pydicom")
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
    """`mura-tf serve`'s app on a loopback port of its own, in a thread, with the run's summary
    on its page as the command gives it."""
    import threading

    from werkzeug.serving import make_server

    from mura_tf.runs.result import run_summary
    from mura_tf.serving.rest import create_app

    app = create_app(trained, summary=run_summary(trained))
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_the_reader_page_reads_real_films_and_a_dicom_in_chromium(server, trained, tmp_path):
    """Upload two real FracAtlas films and a DICOM through the page's file input in headless
    Chromium: every view is shown under its Grad-CAM with its probability, the study's
    decision and the run that made it. The screenshot stays in the test's folder."""
    sync_api = need("playwright.sync_api")
    need("pydicom")
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
    trained, synthetic_dir, tmp_path, monkeypatch
):
    """A department's labelled films in MURA's layout as DICOM (`imageJ.dcm`): `evaluate`
    gives the PNGs' probabilities and metrics, and a recipe trains on them (rendered once,
    `mura_tf.data.film_cache`)."""
    need("pydicom")
    from dicom_writer import displayed, write_dicom

    from mura_tf.commands.evaluate import main as evaluate

    monkeypatch.setenv("MURA_TF_CACHE", str(tmp_path / "cache"))
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
    assert run(CONFIG, argv=argv) == 0
    (predictions,) = (tmp_path / "runs").rglob("predictions.csv")
    assert pd.read_csv(predictions)["path"].str.endswith(".dcm").all()


def _png(size: tuple[int, int], mode: str = "L") -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def hostile_films(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    """Films an attacker (or a broken client) sends, each with the reason it must be refused:
    decompression bombs, headers that lie about the size, truncated and empty files, random
    bytes, and a valid-looking DICOM whose Rows and Columns are absurd."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (100, 100), 128).save(buffer, format="JPEG")
    liar = bytearray(buffer.getvalue())
    sof = liar.index(b"\xff\xc0")  # baseline frame header: height, width at +5
    liar[sof + 5 : sof + 9] = (65500).to_bytes(2, "big") * 2
    ok = _png((64, 64))
    films = {
        "bomb 20,000 px": (_png((20_000, 20_000)), "400,000,000 pixels, over the limit of 50"),
        "over the limit": (_png((8_000, 7_000)), "8,000 x 7,000 pixels, over the limit"),
        "lying JPEG header": (bytes(liar), "4,290,250,000 pixels, over the limit"),
        "truncated PNG": (ok[: len(ok) // 2], "not a readable film"),
        "empty": (b"", "not a PNG, JPEG or DICOM film"),
        "random bytes": (np.random.default_rng(0).bytes(4096), "not a PNG, JPEG or DICOM film"),
    }
    import pydicom
    from dicom_writer import write_dicom

    path = write_dicom(np.zeros((8, 8), np.uint8), tmp_path / "absurd.dcm", "monochrome2")
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 65535  # the header claims 4 gigapixels; the pixel data is 64 bytes
    ds.save_as(path)
    films["DICOM 65535 x 65535"] = (path.read_bytes(), "DICOM: 65,535 x 65,535 pixels, over")
    assert len(films["bomb 20,000 px"][0]) < 1_000_000  # small on the wire
    return films


def test_every_hostile_body_is_a_4xx_and_the_server_lives(server, tmp_path):
    """A corpus of hostile bodies against the server on loopback: each answer is a 4xx with one
    line naming what is wrong, never a 500, and the server still answers after each."""
    import json
    import urllib.error
    import urllib.request

    def post(body: bytes, content_type: str = "application/json") -> tuple[int, str]:
        request = urllib.request.Request(
            server + "/v1/models/mura:predict", data=body, headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())["error"]

    def films_body(films: list[bytes]) -> bytes:
        return json.dumps({"signature_name": "serve_images",
                           "instances": [_b64(f) for f in films]}).encode()  # fmt: skip

    corpus = {
        name: (films_body([_png((64, 64)), film]), ("instance 1: ", reason))
        for name, (film, reason) in hostile_films(tmp_path).items()
    }
    corpus |= {
        "100,000 nested arrays": (b"[" * 100_000 + b"]" * 100_000, "nests 100000 levels deep"),
        "nested objects": (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "nests 5000 levels deep"),
        "257 one-pixel films": (films_body([_png((1, 1))] * 257), "257 instances in one request"),
        "no instances": (b'{"signature_name": "serve_images", "instances": []}', "non-empty"),
        "no columns": (b'{"signature_name": "serve_images", "inputs": {"images": []}}',
                       "no instances"),
        "not UTF-8": (b"\xff\xfe\x00garbage", "not a JSON object"),
        "a JSON string": (b'"instances"', "not a JSON object"),
        "brackets in strings do not count": (
            json.dumps({"instances": ["[" * 100]}).encode(), "not an array of float"),
        "film not an object": (b'{"signature_name": "serve_images", "instances": [42]}',
                               'give the film as {"b64"'),
        "ragged pixels": (b'{"instances": [[[1, 2], [3]]]}', "not an array of float"),
    }  # fmt: skip
    for name, (body, message) in corpus.items():
        status, error = post(body)
        assert 400 <= status < 500, (name, status, error)
        parts = message if isinstance(message, tuple) else (message,)
        assert all(p in error for p in parts) and "\n" not in error, (name, error)
        with urllib.request.urlopen(server + "/v1/models/mura", timeout=60) as alive:
            assert alive.status == 200, name
    status, _ = post(b"x" * (64 * 2**20 + 1))
    assert status == 413


def test_tf_servings_versioned_urls(server):
    import json
    import urllib.error
    import urllib.request

    def get(path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(server + path, timeout=60) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    assert get("/v1/models/mura/versions/1")[0] == 200
    status, meta = get("/v1/models/mura/versions/1/metadata")
    assert status == 200 and meta["model_spec"]["version"] == "1"
    status, error = get("/v1/models/mura/versions/2")
    assert status == 404 and error["error"] == "Servable not found for request: Specific(mura, 2)"
    samples = Path(__file__).resolve().parents[1] / "samples" / "fracatlas" / "images"
    film = sorted(samples.rglob("*.jpg"))[0].read_bytes()
    body = json.dumps({"signature_name": "serve_images", "instances": [_b64(film)]}).encode()
    answers = []
    for path in ("/v1/models/mura:predict", "/v1/models/mura/versions/1:predict"):
        request = urllib.request.Request(server + path, data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as answer:
            answers.append(json.loads(answer.read())["predictions"])
    assert answers[0] == answers[1]


def test_predict_skips_hostile_films_with_their_reasons_and_goes_on(
    trained, synthetic_dir, tmp_path, capsys
):
    study, _ = study_of_two_views(synthetic_dir, tmp_path / "study")
    hostile = hostile_films(tmp_path)
    names = {"bomb 20,000 px": "bomb.png", "lying JPEG header": "liar.jpg",
             "DICOM 65535 x 65535": "absurd.dcm", "over the limit": "big.png"}  # fmt: skip
    for case, name in names.items():
        (study / name).write_bytes(hostile[case][0])
    out = tmp_path / "p"
    assert run_cli(predict, ["--model", str(trained), str(study), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "skipped 4 unreadable file(s)" in err and "Traceback" not in err, err
    named = [name for name in names.values() if name in err]
    assert len(named) >= 3, err  # the warning names the first few, then "and N more"
    for case, name in names.items():
        if name in named:
            assert re.search(rf"{re.escape(name)} \([^)]*{re.escape(hostile[case][1])}", err), err
    assert len(pd.read_csv(out / "predictions.csv")) == 2


def test_a_token_guards_every_route_but_the_page(trained, monkeypatch):
    import hmac

    from mura_tf.serving import rest

    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(rest.hmac, "compare_digest", lambda a, b: compared.append(1) or real(a, b))
    token = "s3cret-token-of-32-characters-xx"
    client = rest.create_app(trained, token=token).test_client()
    assert client.get("/").status_code == 200  # the page holds no data
    for path in ("/v1/models/mura", "/reader/run", "/monitoring/prometheus/metrics"):
        answer = client.get(path)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Bearer" in answer.get_json()["error"]
        for wrong in (f"Bearer {token[:-1]}y", f"Basic {token}", token, f"Bearer {token}x"):
            assert client.get(path, headers={"Authorization": wrong}).status_code == 401, wrong
        assert client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert compared  # the token is compared with hmac.compare_digest: in constant time
    answer = client.post("/v1/models/mura:predict", json={"instances": [1]})
    assert answer.status_code == 401


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--host", "0.0.0.0"], "--host 0.0.0.0 opens the server to the network: give"),
        (["--host", "192.168.1.7", "--token", "short"], "--token must be at least 16"),
        (["--host", "::", "--token-file", "MISSING"], "cannot read the token file"),
        (["--host", "0.0.0.0", "--token-file", "SHORT"], "must be at least 16"),
    ],
)
def test_serving_beyond_loopback_needs_a_token_or_open(flags, message, tmp_path, capsys):
    from mura_tf.commands.serve import is_loopback, main

    (tmp_path / "SHORT").write_text("abc\n")
    flags = [str(tmp_path / f) if f in ("MISSING", "SHORT") else f for f in flags]
    err = one_line_error(capsys, run_cli(main, ["--model", str(tmp_path / "no-run"), *flags]))
    assert message in err
    # --open (or a token) passes the check: the next thing refused is the missing model
    err = one_line_error(
        capsys, run_cli(main, ["--model", str(tmp_path / "no-run"), "--host", "0.0.0.0", "--open"])
    )
    assert "no-run" in err and "network" not in err
    assert is_loopback("127.0.0.1") and is_loopback("127.9.9.9") and is_loopback("::1")
    assert is_loopback("localhost") and not is_loopback("0.0.0.0") and not is_loopback("::")


def test_prometheus_metrics_count_requests_codes_and_batches(trained):
    from mura_tf.serving.rest import create_app

    client = create_app(trained).test_client()
    samples = Path(__file__).resolve().parents[1] / "samples" / "fracatlas" / "images"
    film = _b64(sorted(samples.rglob("*.jpg"))[0].read_bytes())
    body = {"signature_name": "serve_images", "instances": [film] * 3}
    for _ in range(2):
        assert client.post("/v1/models/mura:predict", json=body).status_code == 200
    assert client.post("/v1/models/mura:predict", data=b"[[[").status_code == 400
    assert client.get("/v1/models/other").status_code == 404
    text = client.get("/monitoring/prometheus/metrics").get_data(as_text=True)
    route = "/v1/models/<model_name>:predict"
    assert f'mura_tf_requests_total{{code="200",route="{route}"}} 2.0' in text
    assert f'mura_tf_requests_total{{code="400",route="{route}"}} 1.0' in text
    assert 'mura_tf_requests_total{code="404",route="/v1/models/<model_name>"} 1.0' in text
    assert f'mura_tf_request_seconds_count{{route="{route}"}} 3.0' in text
    assert "mura_tf_batch_size_count 2.0" in text and "mura_tf_batch_size_sum 6.0" in text


def test_the_reader_says_when_the_model_saw_only_synthetic_films(trained, tmp_path):
    from mura_tf.runs.result import run_summary

    assert "warning" not in run_summary(trained)
    synthetic = tmp_path / trained.name
    shutil.copytree(trained, synthetic, ignore=shutil.ignore_patterns("export", "checkpoints"))
    config = json.loads((synthetic / "config.json").read_text())
    config["experiment"]["synthetic"] = True
    (synthetic / "config.json").write_text(json.dumps(config))
    summary = run_summary(synthetic)
    assert "trained on the synthetic set" in summary["warning"]
    assert summary["dataset"].startswith("the synthetic MURA")


def test_hostile_load_keeps_memory_bounded_and_it_returns(server):
    """8 clients x 4 requests of 256 one-pixel films each, at once: every answer is right, the
    process's resident memory never rises more than 600 MB over idle, and within 100 MB of
    idle afterwards."""
    import json
    import threading
    import time
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096

    body = json.dumps({"signature_name": "serve_images",
                       "instances": [_b64(_png((1, 1)))] * 256}).encode()  # fmt: skip

    def post() -> list:
        request = urllib.request.Request(server + "/v1/models/mura:predict", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=600) as answer:
            return json.loads(answer.read())["predictions"]

    first = post()  # warm: the signature traced
    idle, peak, done = rss(), [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(), range(32)))
    done.set()
    watcher.join()
    time.sleep(1)
    after = rss()
    assert all(a == first for a in answers) and len(first) == 256
    assert peak[0] - idle < 600 * 2**20, (idle, peak[0])
    assert after - idle < 100 * 2**20, (idle, after)


def test_the_dev_thresholds_are_the_dev_studies_own_and_run_through_the_command_line(
    trained, synthetic_dir, tmp_path
):
    """The run's dev points recomputed from its dev films alone (scikit-learn's ROC on the
    dev studies, scored again through the export): a hand-over that chose them on test would
    fail here. Then each is used by name on the command line."""
    from sklearn.metrics import roc_curve

    from mura_tf.data.catalogue import load_catalogue

    splits = pd.read_csv(trained / "splits.csv")
    catalogue = load_catalogue(synthetic_dir, "elbow", check_images=False).set_index("path")
    dev = catalogue.loc[splits.loc[splits["split"] == "dev", "path"]].reset_index()
    folders = sorted({str(Path(p).parent) for p in dev["path"]})
    out = tmp_path / "dev"
    assert run_cli(predict, ["--model", str(trained), *folders, "--out", str(out)]) == 0
    films = pd.read_csv(out / "predictions.csv").set_index("path")["probability"]
    dev = dev.assign(probability=films.loc[dev["path"]].to_numpy())
    studies = dev.groupby("study").agg(
        label=("label", "first"), probability=("probability", "mean")
    )
    fpr, tpr, thresholds = roc_curve(studies["label"], studies["probability"],
                                     drop_intermediate=False)  # fmt: skip
    youden = thresholds[np.argmax(tpr - fpr)]  # the first, i.e. the highest, on a tie
    points = json.loads((trained / "metrics.json").read_text())["operating_points"]
    assert points["youden"]["threshold"] == pytest.approx(youden, rel=1e-5)
    for name, level in (("specificity_90", 0.9), ("specificity_95", 0.95)):
        reach = np.flatnonzero(1 - fpr >= level)  # thresholds fall as the index grows
        assert points[name]["threshold"] == pytest.approx(thresholds[reach[-1]], rel=1e-5)

    elbow = [str(synthetic_dir), "--part", "elbow"]
    for choice, name in (("dev-spec90", "specificity_90"), ("dev-spec95", "specificity_95")):
        out = tmp_path / choice
        argv = ["--model", str(trained), *elbow, "--out", str(out), "--threshold", choice]
        assert run_cli(predict, argv) == 0
        decided = pd.read_csv(out / "studies.csv")
        value = points[name]["threshold"]
        np.testing.assert_allclose(decided["threshold"], value, rtol=1e-6)
        assert (decided["abnormal"] == (decided["probability"] >= value)).all()
        assert decided["threshold_rule"].str.contains(f"{name} point of {trained.name}").all()


def test_the_runs_calibration_is_scikit_learns(trained):
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    metrics = json.loads((trained / "metrics.json").read_text())
    films = pd.read_csv(trained / "predictions.csv")
    studies = films.groupby("study").agg(
        label=("label", "first"), probability=("probability", "mean")
    )
    observed, predicted = calibration_curve(studies["label"], studies["probability"], n_bins=10)
    bins = metrics["calibration"]["bins"]
    np.testing.assert_allclose([b["observed"] for b in bins], observed, rtol=1e-6)
    np.testing.assert_allclose([b["mean_probability"] for b in bins], predicted, rtol=1e-6)
    assert sum(b["studies"] for b in bins) == len(studies)
    assert metrics["calibration"]["brier"] == pytest.approx(
        brier_score_loss(studies["label"], studies["probability"]), rel=1e-6
    )
    ece = sum(b["studies"] * abs(b["observed"] - b["mean_probability"]) for b in bins)
    assert metrics["calibration"]["ece"] == pytest.approx(ece / len(studies), rel=1e-6)
