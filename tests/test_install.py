"""The package as a user gets it: the wheel built from this checkout, installed into a fresh
virtual environment that has never seen the checkout, and used from an empty folder: the
commands' help, a recipe, and `mura-tf serve` started by its entry point, answering TF
Serving's requests, and stopped by SIGTERM."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FILM = REPO / "samples" / "fracatlas" / "images" / "Fractured" / "IMG0002588.jpg"

# One worker builds the environment and runs every test here (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("install")


def _clean_env(venv: Path) -> dict[str, str]:
    """The environment of a shell in which `venv` is active: nothing points at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> dict:
    """The wheel (built from a copy of the sources, so the checkout gets no build/ folder) in
    a fresh venv, used from an empty working folder outside the checkout.

    The wheel goes in with `--no-deps`; the venv sees the dependencies of the environment
    running the tests (which `.ci/run` installs afresh from `pyproject.toml`'s declarations and
    checks with deptry) through a `.pth` line naming its site-packages. A `.pth` line adds a
    folder to `sys.path` without running the `.pth` files in it, so the checkout's editable
    install stays invisible: what imports is the wheel (the first test asserts it). Installing
    every dependency again would cost a minute and 3 GB a run and test nothing more.
    """
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("mura_tf", "recipes"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(root / "dist"), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (root / "dist").glob("*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
         "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    (site,) = (venv / "lib").glob("python3*/site-packages")
    dependencies = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "dependencies.pth").write_text("\n".join(dependencies) + "\n")
    work = root / "empty"
    work.mkdir()
    return {"venv": venv, "wheel": wheel, "work": work, "env": _clean_env(venv)}


def _run(installed: dict, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(argv), capture_output=True, text=True, cwd=installed["work"],
        env=installed["env"], timeout=timeout,
    )  # fmt: skip


def test_the_wheel_holds_the_package_the_recipes_and_the_reader_page_only(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"mura_tf", "recipes", "mura_tf-0.1.0.dist-info"}, tops
    assert "mura_tf/serving/reader.html" in names
    assert "recipes/baseline_densenet.py" in names
    entry_points = (
        zipfile.ZipFile(installed["wheel"])
        .read("mura_tf-0.1.0.dist-info/entry_points.txt")
        .decode()
    )
    assert "mura-tf = mura_tf.__main__:main" in entry_points
    # what the fresh environment imports is the installed copy, not the checkout
    code = (
        "import mura_tf, recipes, importlib.util as u\n"
        "print(mura_tf.__file__)\n"
        "print(u.find_spec('benchmarks'), u.find_spec('tests'))\n"
    )
    done = _run(installed, "python", "-c", code)
    assert done.returncode == 0, done.stderr[-2000:]
    where, missing = done.stdout.strip().splitlines()
    assert Path(where).is_relative_to(installed["venv"]) and missing == "None None", done.stdout


def test_the_commands_help_from_an_empty_folder(installed):
    for argv, expected in [
        (["mura-tf", "--help"], "serve"),
        (["mura-tf", "predict", "--help"], "--model"),
        (["mura-tf", "serve", "--help"], "--threshold"),
        (["python", "-m", "recipes.baseline_densenet", "--help"], "--data-dir"),
    ]:
        done = _run(installed, *argv)
        assert done.returncode == 0, (argv, done.stderr[-2000:])
        assert expected in done.stdout and "Traceback" not in done.stderr, argv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _b64_png(size: tuple[int, int]) -> dict:
    import io

    from PIL import Image

    ramp = np.linspace(0, 255, size[0] * size[1], dtype=np.float32).reshape(size[::-1])
    buffer = io.BytesIO()
    Image.fromarray(ramp.astype(np.uint8)).save(buffer, format="PNG")
    return {"b64": base64.b64encode(buffer.getvalue()).decode("ascii")}


def _refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=10)
    except (ConnectionError, urllib.error.URLError):
        return True
    return False


def _multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "mura-tf-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.slow
def test_a_recipe_and_serve_as_a_user_starts_them(installed, synthetic_dir):
    """`python -m recipes.resnet18_mlp` trains a tiny run; the installed `mura-tf serve` serves
    it under `--name xray` at `--threshold 0.25`, answers TF Serving's requests and the reader
    page; on SIGTERM it answers the request in flight, refuses new ones, and exits 0 without a
    traceback."""
    out = installed["work"] / "runs"
    trained = _run(
        installed, "python", "-m", "recipes.resnet18_mlp", "--data-dir", str(synthetic_dir),
        "--out", str(out), "--part", "elbow", "--image-size", "32", "--epochs", "1",
        "--max-steps", "2", "--weights", "none",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    (run_dir,) = [p.parent for p in out.rglob("metrics.json")]

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        ["mura-tf", "serve", "--model", str(run_dir), "--port", str(port), "--name", "xray",
         "--threshold", "0.25"],
        cwd=installed["work"], env=installed["env"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stopping = False
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.communicate()[1][-3000:]
            try:
                status, body = _get(f"{base}/v1/models/xray")
                break
            except (ConnectionError, urllib.error.URLError):
                assert time.monotonic() < deadline, "the server did not answer in 300 s"
                time.sleep(0.5)
        assert status == 200
        assert json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"
        assert _get(f"{base}/v1/models/mura")[0] == 404  # --name took the place of "mura"
        status, page = _get(f"{base}/")
        assert status == 200 and b"<html" in page.lower()  # the packaged reader page

        film = {"b64": base64.b64encode(FILM.read_bytes()).decode("ascii")}
        request = {"signature_name": "serve_images", "instances": [film, film]}
        status, answer = _post(f"{base}/v1/models/xray:predict", json.dumps(request).encode(),
                               "application/json")  # fmt: skip
        assert status == 200, answer
        (p1,), (p2,) = answer["predictions"]
        assert 0.0 < p1 < 1.0 and p1 == pytest.approx(p2, abs=1e-6)

        body, content_type = _multipart("films", FILM.name, FILM.read_bytes())
        status, study = _post(f"{base}/reader/study", body, content_type)
        assert status == 200, study
        assert study["study"]["threshold"] == 0.25  # --threshold took effect
        assert study["study"]["abnormal"] == (study["study"]["probability"] >= 0.25)
        assert study["study"]["probability"] == pytest.approx(p1, abs=1e-6)

        # SIGTERM while a slow request is in flight: it is answered in full, then the server
        # exits (waitress, drained)
        slow = json.dumps({"signature_name": "serve_images",
                           "instances": [_b64_png((1200, 1200))] * 200}).encode()  # fmt: skip
        answers: list = []
        sender = threading.Thread(target=lambda: answers.append(
            _post(f"{base}/v1/models/xray:predict", slow, "application/json")))  # fmt: skip
        sender.start()
        time.sleep(1.0)  # the request is being decoded and scored
        server.send_signal(signal.SIGTERM)
        stopping = True
        sender.join(timeout=300)
        ((status, answer),) = answers
        assert status == 200 and len(answer["predictions"]) == 200, answer
        assert _refused(f"{base}/v1/models/xray")  # no new connection once stopping
    finally:
        # One stop only: a second SIGTERM while the server exits (after it has put back the
        # default handlers) would kill it, as it would any process.
        if not stopping:
            server.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert server.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "server stopped" in stdout
