"""`python -m mura_tf COMMAND`: one entry point for every command, in a fresh process."""

import os
import subprocess
import sys
from pathlib import Path

from mura_tf.__main__ import COMMANDS

REPO = Path(__file__).resolve().parents[1]


def mura_tf(*args, cwd, log_level=None):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user starts it: quiet by default
    if log_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = log_level
    return subprocess.run([sys.executable, "-m", "mura_tf", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_without_a_command_it_lists_every_command(tmp_path):
    done = mura_tf(cwd=tmp_path)
    assert done.returncode == 2
    for name in COMMANDS:
        assert f"\n  {name} " in done.stdout


def test_an_unknown_command_is_one_line(tmp_path):
    done = mura_tf("train", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (
        "mura-tf: error: unknown command 'train': use one of " + ", ".join(COMMANDS)
    )


def test_commands_run_through_the_entry_point(tmp_path):
    made = mura_tf("synthetic", "--out", tmp_path / "data", "--patients-per-part", 2,
                   "--valid-patients-per-part", 1, "--min-side", 32, "--max-side", 40,
                   "--parts", "elbow", cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr[-1000:]
    assert (tmp_path / "data" / "MURA-v1.1" / "train_image_paths.csv").is_file()
    explored = mura_tf("explore", "--data-dir", tmp_path / "data", "--out", tmp_path / "explore",
                       cwd=tmp_path)  # fmt: skip
    assert explored.returncode == 0, explored.stderr[-1000:]
    assert (tmp_path / "explore" / "summary.json").is_file()
    # A user's own TF_CPP_MIN_LOG_LEVEL=3 (the usual way to silence TensorFlow) keeps the quiet
    # start (the other tests start commands without it: quiet by default).
    missing = mura_tf("evaluate", "--model", tmp_path / "nothing", "--data-dir", tmp_path / "data",
                      cwd=tmp_path, log_level="3")  # fmt: skip
    # Quiet start: TensorFlow's C++ log does not precede the one line.
    assert missing.returncode == 2 and missing.stderr.startswith("mura-tf: error:")
    assert missing.stderr.count("\n") == 1, missing.stderr


# A fresh process: a command whose work imports TensorFlow (Keras with it), started by `run`.
LOADS_TENSORFLOW = """
import sys
from mura_tf.cli import run

def main(argv):
    import keras
    import tensorflow as tf
    print(keras.layers.Dense(2)(tf.ones((1, 3))).shape)

sys.exit(run(main, []))
"""


def test_tensorflow_starts_quietly_when_a_command_first_needs_it(tmp_path):
    def started(log_level):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)
        if log_level is not None:
            env["TF_CPP_MIN_LOG_LEVEL"] = log_level
        return subprocess.run([sys.executable, "-c", LOADS_TENSORFLOW], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    # By default (a user's own TF_CPP_MIN_LOG_LEVEL=3: test_commands_run_through_the_entry_point)
    done = started(None)
    assert done.returncode == 0 and done.stdout.strip() == "(1, 2)", done.stderr[-2000:]
    assert done.stderr == "", done.stderr
    # Asked for (0), TensorFlow's C++ start-up log is there: the quiet start is what hid it.
    loud = started("0")
    assert loud.returncode == 0 and "absl::InitializeLog" in loud.stderr, loud.stderr[-2000:]


# Records, as the process ends, whether TensorFlow was ever loaded.
LOADED_AT_EXIT = """
import atexit, runpy, sys
atexit.register(lambda: print("tensorflow loaded:", "tensorflow" in sys.modules))
sys.argv = ["mura-tf", *sys.argv[1:]]
runpy.run_module("mura_tf", run_name="__main__")
"""


def test_help_and_commands_without_a_model_never_load_tensorflow(tmp_path):
    """`--help` of every command, and `explore`, answer without TensorFlow's seconds of
    loading."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def loaded(*args) -> bool:
        command = [sys.executable, "-c", LOADED_AT_EXIT, *map(str, args)]
        done = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert "tensorflow loaded:" in done.stdout, done.stderr[-2000:]
        return "tensorflow loaded: True" in done.stdout

    for name in COMMANDS:
        assert not loaded(name, "--help"), name
    made = mura_tf("synthetic", "--out", tmp_path / "data", "--patients-per-part", 2,
                   "--valid-patients-per-part", 1, "--min-side", 32, "--max-side", 40,
                   "--parts", "elbow", cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr[-1000:]
    assert not loaded("explore", "--data-dir", tmp_path / "data", "--out", tmp_path / "ex")
    # The probe sees a load: a command that evaluates a model does load TensorFlow.
    assert loaded("evaluate", "--model", tmp_path / "nothing", "--data-dir", tmp_path / "data")
