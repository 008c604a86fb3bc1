"""A run folder survives kills at any instant, a second process, a full or read-only disk and an
interrupted --overwrite (each case a real recipe process on the synthetic set)."""

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mura_tf.files import InUseError
from mura_tf.runs.folder import lock_path, open_run, remove_temporaries, set_aside_path
from mura_tf.runs.supervised import Experiment

REPO = Path(__file__).resolve().parents[1]


def recipe(*args, cwd, log: Path) -> subprocess.Popen:
    """`python -m recipes.resnet18_linear ARGS` in a fresh process, output to `log`."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user starts it: quiet by default
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "recipes.resnet18_linear", *map(str, args)],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip


def smoke_args(data_dir, out, epochs=4):
    return ["--data-dir", data_dir, "--out", out, "--image-size", "32", "--epochs", epochs,
            "--max-steps", "2", "--weights", "none", "--no-freeze", "--patience", "0",
            "--monitor", "val_loss", "--deterministic"]  # fmt: skip


def the_run(out: Path) -> Path:
    (config,) = [p for p in out.rglob("config.json") if "worker" not in str(p)]
    return config.parent


def wait_for(condition, process, timeout=240, step=0.005):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(step)
    return False


def assert_complete_run(run_dir: Path, epochs: int):
    """A finished folder: every output, one history row per epoch, the best epoch handed over."""
    for item in ("config.json", "history.csv", "checkpoints/best.keras", "model.keras",
                 "export/saved_model.pb", "predictions.csv", "metrics.json"):  # fmt: skip
        assert (run_dir / item).exists(), item
    assert not (run_dir / "backup").exists() and not set_aside_path(run_dir).exists()
    leftovers = [p for p in run_dir.rglob(".*") if ".tmp" in p.name or ".old-" in p.name]
    assert not leftovers, leftovers
    with (run_dir / "history.csv").open() as f:
        history = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in history] == list(range(epochs))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = int(np.argmin([float(r["val_loss"]) for r in history]))
    assert metrics["selected_epoch"]["epoch"] == best + 1


def resume_to_the_end(args, cwd: Path, out: Path, epochs: int, log: str = "again.log"):
    """Run the same command again: it must finish, leaving a complete run folder."""
    process = recipe(*args, cwd=cwd, log=cwd / log)
    assert process.wait(timeout=300) == 0, (cwd / log).read_text()[-2000:]
    assert_complete_run(the_run(out), epochs)


def one_line_error(log: Path) -> str:
    """The last line a failed command printed, after checking it printed no traceback."""
    said = log.read_text().strip().splitlines()
    assert "Traceback" not in "\n".join(said)
    return said[-1]


@pytest.mark.slow
def test_kills_inside_epoch_end_writes_mid_epoch_and_in_the_final_saves_cost_nothing(
    synthetic_dir, tmp_path
):
    out = tmp_path / "out"
    args = smoke_args(synthetic_dir, out)

    def backup_write_in_progress():
        return any(".tmp" in p.name for p in out.rglob("backup/.*"))

    def final_saves_in_progress():
        return any(
            p.name.startswith((".model.keras", ".export", ".predictions", ".metrics"))
            for p in out.rglob(".*")
        )

    def second_epoch_running():
        states = list(out.rglob("backup/state.json"))
        return bool(states) and json.loads(states[0].read_text())["epochs_done"] >= 2

    # Every planned instant is hit: one the run gets past before the poll sees it is tried
    # again (up to three times), over the finished run with --overwrite if it finished.
    hit = []
    for instant in (backup_write_in_progress, second_epoch_running, final_saves_in_progress):
        for attempt in range(3):
            finished = any(out.rglob("metrics.json"))
            again = ["--overwrite"] if finished else []
            log = tmp_path / f"kill-{instant.__name__}-{attempt}.log"
            process = recipe(*args, *again, cwd=tmp_path, log=log)
            if wait_for(instant, process, step=0.001):
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=300)
                hit.append(instant.__name__)
                break
            process.wait(timeout=300)
    assert hit == ["backup_write_in_progress", "second_epoch_running", "final_saves_in_progress"]
    resume_to_the_end(args, tmp_path, out, 4)


@pytest.mark.slow
def test_a_second_identical_command_stops_at_once_naming_the_first(synthetic_dir, tmp_path):
    out = tmp_path / "out"
    args = smoke_args(synthetic_dir, out, epochs=6)
    first = recipe(*args, cwd=tmp_path, log=tmp_path / "first.log")
    assert wait_for(lambda: any(out.rglob("backup/state.json")), first)
    second = recipe(*args, cwd=tmp_path, log=tmp_path / "second.log")
    assert second.wait(timeout=120) == 2
    said = (tmp_path / "second.log").read_text().strip()
    assert said == one_line_error(tmp_path / "second.log")  # the whole output is one line
    assert f"is in use by process {first.pid}" in said and str(the_run(out)) in said
    assert first.wait(timeout=300) == 0
    assert_complete_run(the_run(out), 6)


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    run_dir = tmp_path / "runs" / "seed0-abc"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path;"
         "from mura_tf.files import exclusive_lock;"
         f"lock = exclusive_lock(Path({str(lock_path(run_dir))!r}), 'run');"
         "lock.__enter__(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(InUseError, match=f"process {holder.pid} on"), open_run(run_dir):
        pass
    holder.kill()
    holder.wait()
    with open_run(run_dir) as opened:
        assert opened == run_dir and run_dir.is_dir()


def test_a_rerun_removes_the_temporaries_of_a_killed_write(tmp_path):
    run_dir = tmp_path / "run"
    leftovers = [
        run_dir / ".model.keras.k2j4.tmp.keras",
        run_dir / ".history.csv.x81.tmp",
        run_dir / "backup" / ".epoch-0002.weights.h5.a1.tmp.weights.h5",
        run_dir / "backup" / ".epoch-0003.variables.npz.b2.tmp",
        run_dir / ".export.tmp-93kd" / "ready" / "saved_model.pb",
        run_dir / ".export.old-4242" / "saved_model.pb",
    ]
    keep = [run_dir / "history.csv", run_dir / "backup" / "state.json", run_dir / ".hidden"]
    for path in leftovers + keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    with open_run(run_dir):
        pass
    assert all(p.exists() for p in keep)
    assert not any(p.exists() for p in leftovers)
    assert remove_temporaries(run_dir) == []


@pytest.mark.slow
def test_an_interrupted_overwrite_never_mixes_two_runs(synthetic_dir, tmp_path):
    out = tmp_path / "out"
    args = smoke_args(synthetic_dir, out)
    assert recipe(*args, cwd=tmp_path, log=tmp_path / "old.log").wait(timeout=300) == 0
    run_dir = the_run(out)
    old_metrics = (run_dir / "metrics.json").read_text()
    again = recipe(*args, "--overwrite", cwd=tmp_path, log=tmp_path / "new.log")
    assert wait_for(lambda: (run_dir / "backup" / "state.json").exists(), again)
    again.send_signal(signal.SIGKILL)
    again.wait()
    # The folder holds the new, unfinished run only; the old one waits beside it, whole.
    assert not (run_dir / "metrics.json").exists()
    for item in ("predictions.csv", "model.keras", "export"):
        assert not (run_dir / item).exists(), item
    aside = set_aside_path(run_dir)
    assert (aside / "metrics.json").read_text() == old_metrics
    assert (aside / "export" / "saved_model.pb").is_file()
    resume_to_the_end([*args, "--overwrite"], tmp_path, out, 4)


def mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)  # fmt: skip
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 160 MiB tmpfs (a ResNet18 resume point is ~135 MiB): it fills during the first run."""
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "160m"):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected ENOSPC test covers it")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_run_resumes_once_space_is_back(
    synthetic_dir, small_disk, tmp_path
):
    args = smoke_args(synthetic_dir, small_disk)
    full = recipe(*args, cwd=tmp_path, log=tmp_path / "full.log")
    assert full.wait(timeout=300) == 2
    said = one_line_error(tmp_path / "full.log")
    assert "no space left" in said and str(small_disk) in said, said
    subprocess.run(["mount", "-o", "remount,size=1g", str(small_disk)], check=True)
    resume_to_the_end(args, tmp_path, small_disk, 4)


@pytest.mark.slow
def test_a_folder_that_turns_read_only_mid_run_is_one_line_and_resumes(synthetic_dir, tmp_path):
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "2g"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        args = smoke_args(synthetic_dir, disk, epochs=8)
        process = recipe(*args, cwd=tmp_path, log=tmp_path / "ro.log")
        assert wait_for(lambda: any(disk.rglob("backup/state.json")), process)
        # A read-only bind mount over the folder: files the run opens from now on are refused.
        # A plain remount is refused while the run has files open for writing, and so is
        # making a bind of the folder itself read-only if the run opens a file through it in
        # between: so the bind is made read-only beside the folder, then moved over it at once.
        stage = tmp_path / "stage"
        stage.mkdir()
        subprocess.run(["mount", "--bind", str(disk), str(stage)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(stage)], check=True)
        subprocess.run(["mount", "--move", str(stage), str(disk)], check=True)
        assert process.wait(timeout=300) == 2
        said = one_line_error(tmp_path / "ro.log")
        assert "read-only file system" in said, said
        subprocess.run(["umount", str(disk)], check=True)  # the bind mount: writable again
        resume_to_the_end(args, tmp_path, disk, 8)
    finally:
        for folder in (tmp_path / "stage", disk):
            unmount = ["umount", "-l", str(folder)]
            while subprocess.run(unmount, capture_output=True).returncode == 0:
                pass


def test_no_space_for_a_checkpoint_is_a_disk_error_before_anything_is_written(
    tmp_path, monkeypatch
):
    """Where no tmpfs can be mounted: ENOSPC as the file-writing layer sees it."""
    import keras

    from mura_tf import files as io
    from mura_tf.files import DiskError, save_keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    monkeypatch.setattr(io.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 1 << 20})())
    with pytest.raises(DiskError, match="no space left"):
        save_keras(model, tmp_path / "model.keras")
    assert list(tmp_path.iterdir()) == []


def test_spellings_of_a_part_name_the_same_run():
    runs = {
        Experiment(recipe="r", backbone="resnet18", part=p).run_dir()
        for p in ("Forearm", "forearm", "XR_FOREARM", " forearm ")
    }
    assert len(runs) == 1
    assert Experiment(recipe="r", backbone="resnet18", part="Hand,elbow").part == (
        "XR_ELBOW",
        "XR_HAND",
    )


def test_the_printed_evaluate_command_survives_a_shell(synthetic_dir, tmp_path, capsys):
    from recipes.common import run
    from recipes.resnet18_linear import CONFIG

    out = tmp_path / "my runs"  # a space, as in many home folders
    args = smoke_args(synthetic_dir, out, epochs=1)
    args[args.index("--deterministic")] = "--strict"
    assert run(CONFIG, argv=[str(a) for a in args]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("evaluate:"))
    words = shlex.split(line.split(":", 1)[1])
    assert words[words.index("--model") + 1] == str(the_run(out) / "export")
    assert words[words.index("--data-dir") + 1] == str(synthetic_dir)


def test_several_commands_on_a_fresh_cache_share_one_synthetic_set(tmp_path):
    code = (
        "from mura_tf.data.synthetic import SyntheticConfig, synthetic_dataset;"
        "from mura_tf.data.mura import load_mura;"
        "config = SyntheticConfig(patients_per_part=30, valid_patients_per_part=5,"
        " min_side=96, max_side=160, parts=('XR_ELBOW', 'XR_HAND'));"
        "import os; folder = synthetic_dataset(config); n = len(load_mura(folder));"
        "print(n, os.stat(folder / 'MURA-v1.1').st_ino)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "MURA_TF_CACHE": str(tmp_path)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for _ in range(3)
    ]
    results = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err[-500:] for _, err in results]
    seen = {out.strip() for out, _ in results}
    # One generation, read by all: the same folder (inode), whole, never replaced under them.
    assert len(seen) == 1 and int(seen.pop().split()[0]) > 0
    assert all("skipped" not in err for _, err in results)
    (folder,) = tmp_path.glob("synthetic-*/MURA-v1.1")
    assert str(folder.stat().st_ino) == results[0][0].split()[1]
