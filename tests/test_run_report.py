"""`report.html`: written by every finished run, self-contained, and it renders in a real
browser (headless Chromium) with every image loaded and no console error."""

import re
import shutil
import subprocess

import pytest

from mura_tf.cli import run as run_cli
from mura_tf.commands.report import main as report_main
from recipes.common import run

# Module fixtures: these tests stay on one pytest-xdist worker (--dist loadgroup).
pytestmark = pytest.mark.xdist_group("run_report")


@pytest.fixture(scope="module")
def finished(synthetic_dir, tmp_path_factory):
    """resnet18_mlp on the elbow and the hand at 32 px: two parts, so two sets of studies."""
    from recipes.resnet18_mlp import CONFIG

    out = tmp_path_factory.mktemp("runs")
    argv = ["--data-dir", str(synthetic_dir), "--out", str(out), "--part", "elbow,hand",
            "--image-size", "32", "--epochs", "2", "--max-steps", "3", "--weights", "none",
            "--patience", "0"]  # fmt: skip
    assert run(CONFIG, argv=argv) == 0
    (run_dir,) = [p.parent for p in out.rglob("metrics.json")]
    return run_dir


def test_every_finished_run_has_a_self_contained_report(finished):
    page = (finished / "report.html").read_text()
    headings = ["Test metrics", "ROC and confusion (study level)", "Training curves",
                "Settings", "Published figures for this experiment",
                "Most confident right and wrong test studies, with Grad-CAM"]  # fmt: skip
    for heading in headings:
        assert f"<h2>{heading}</h2>" in page, heading
    sources = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert len(sources) >= 5 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page  # nothing fetched from a network
    # the MURA paper's kappa for the run's two parts, marked as the paper's; no overall row
    assert "MURA paper (Rajpurkar et al. 2017)" in page
    assert "0.710 (0.674-0.745)" in page and "0.851 (0.830-0.871)" in page  # with the paper's CIs
    assert "0.705" not in page
    assert "synthetic MURA this project generates" in page  # and not comparable to them
    assert page.count("most confident") >= 2 and "handed over (" not in page.split("<h2>")[0]


def test_the_report_command_rewrites_a_runs_report(finished, tmp_path, capsys):
    (finished / "report.html").unlink()
    assert run_cli(report_main, ["--run", str(finished)]) == 0
    assert (finished / "report.html").stat().st_size > 10_000
    assert run_cli(report_main, ["--run", str(tmp_path)]) == 2
    assert "is not a finished run" in capsys.readouterr().err


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    chromium() is None,
    reason="headless Chromium is not installed (Debian: apt-get install chromium; .ci/run "
    "installs it where it can)",
)
def test_the_report_renders_in_headless_chromium(finished, tmp_path):
    url = (finished / "report.html").resolve().as_uri()
    flags = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run(
        [*flags, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout).group(1)
    images = int(re.search(r'data-images="(\d+)"', body).group(1))
    assert 'data-broken-images="0"' in body and images >= 5, body
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    shot = tmp_path / "report.png"  # kept with the test's files for a person to look at
    subprocess.run(
        [*flags, "--window-size=1200,3000", f"--screenshot={shot}", url],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.stat().st_size > 50_000
