"""The documentation's pictures, made from a finished run on real films.

    python docs/make_pictures.py --run RUN --data-dir ../shared/data/fracatlas

`RUN` is a run folder trained on FracAtlas (for example `python -m recipes.resnet18_mlp
--data-dir ../shared/data/fracatlas --weights none --no-freeze --image-size 128`). It writes
into `docs/pictures/`, each picture as a person would see it, in headless Chromium (Debian's
`chromium`):

- `report.png`: the run's `report.html`;
- `tensorboard.png`: TensorBoard's scalars of the run (`tensorboard --logdir RUN/logs`);
- `gradcam.png`: `mura-tf predict --cam` on fractured films of the release, the
  radiologists' outlines drawn over the Grad-CAM;
- `reader.png`: `mura-tf serve`'s reader page with three films dropped on it.

Films: FracAtlas (Abedeen et al., Scientific Data 10, 521, 2023), CC BY 4.0.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("needs Chromium: apt-get install chromium")
    return found


def _screenshot(url: str, out: Path, size: str, wait_ms: int = 0) -> None:
    with tempfile.TemporaryDirectory() as profile:
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}"]
        if wait_ms:
            flags.append(f"--virtual-time-budget={wait_ms}")
        subprocess.run(
            [_chromium(), *flags, f"--screenshot={out}", url],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args[0]} ended: {process.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer in {seconds:.0f} s")


def report(run: Path, out: Path) -> None:
    _screenshot((run / "report.html").resolve().as_uri(), out / "report.png", "1280,2600")


def tensorboard(run: Path, out: Path) -> None:
    port = _free_port()
    board = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run / "logs"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for(f"http://127.0.0.1:{port}/", board)
        url = f"http://127.0.0.1:{port}/?darkMode=false#scalars"
        _screenshot(url, out / "tensorboard.png", "1400,1000", wait_ms=20000)
    finally:
        board.terminate()
        board.wait(timeout=60)


def gradcam(run: Path, data_dir: Path, out: Path) -> None:
    films = sorted((data_dir / "images" / "Fractured").glob("*.jpg"))[:3]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "mura_tf", "predict", "--model", str(run), *map(str, films),
             "--per-image", "--cam", f"{tmp}/cams", "--out", f"{tmp}/predictions"],
            check=True, timeout=600,
        )  # fmt: skip
        sheet = sorted(Path(tmp, "cams").glob("*.png"))[0]
        shutil.copy(sheet, out / "gradcam.png")


def reader(run: Path, data_dir: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    films = [
        *sorted((data_dir / "images" / "Fractured").glob("*.jpg"))[:2],
        *sorted((data_dir / "images" / "Non_fractured").glob("*.jpg"))[:1],
    ]
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mura_tf", "serve", "--model", str(run), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for(f"http://127.0.0.1:{port}/v1/models/mura", server)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#files", [str(f) for f in films])
            page.wait_for_selector("body[data-done=yes]", timeout=300_000)
            page.screenshot(path=str(out / "reader.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python docs/make_pictures.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--run", type=Path, required=True, help="a finished run on FracAtlas")
    parser.add_argument("--data-dir", type=Path, required=True, help="the FracAtlas release")
    parser.add_argument("--out", type=Path, default=DOCS / "pictures", help="where they go")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report(args.run, args.out)
    tensorboard(args.run, args.out)
    gradcam(args.run, args.data_dir, args.out)
    reader(args.run, args.data_dir, args.out)
    for name in ("report", "tensorboard", "gradcam", "reader"):
        print(f"wrote {args.out / name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
