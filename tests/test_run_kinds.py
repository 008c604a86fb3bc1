"""A run kind is one declaration (`mura_tf.runs.kinds`): its module runs it and words its
summary lines, and config.json's section, the report's sections and the list of kinds come
from its line. Settings are validated once and worded as fields in the library, as flags on
the command line."""

import dataclasses
import importlib
import json

import pytest

from mura_tf.errors import ConfigError, FieldError
from mura_tf.runs.kinds import ABNORMALITY_SECTIONS, KINDS, SECTIONS, kind_of_config
from mura_tf.runs.pretrain import PretrainConfig
from mura_tf.runs.record import read_run, write_run_config
from mura_tf.runs.router import RouterConfig
from mura_tf.runs.supervised import Experiment
from recipes.common import run


def test_every_kind_is_one_module_that_runs_and_closes():
    assert SECTIONS == ("experiment", "router", "pretrain", "ensemble", "cascade")
    assert ABNORMALITY_SECTIONS == ("experiment", "ensemble", "cascade")
    for kind in KINDS:
        module = importlib.import_module(kind.module)
        assert callable(module.summary_lines), kind
        if kind.config is None:  # assembled from finished runs by a command
            continue
        config = getattr(module, kind.config)
        assert kind_of_config(config) is kind
        assert callable(kind.attribute(kind.run))

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class MyExperiment(Experiment):  # a user's subclass is still a supervised run
        pass

    assert kind_of_config(MyExperiment).section == "experiment"
    assert kind_of_config(RouterConfig).section == "router"  # not its base's
    with pytest.raises(TypeError, match="not the settings of a run kind"):
        kind_of_config(dict)


def test_config_json_carries_the_section_the_kind_declares(tmp_path):
    for kind in KINDS:
        run_dir = tmp_path / kind.section
        run_dir.mkdir()
        write_run_config(run_dir, kind.section, {"recipe": "r", "image_size": 32}, None, "L")
        (run_dir / "metrics.json").write_text("{}")
        finished = read_run(run_dir)
        assert finished.section == kind.section and finished.label == "L"
        assert json.loads((run_dir / "config.json").read_text())[kind.section]["recipe"] == "r"


@pytest.mark.parametrize(
    "config, field, message",
    [
        (Experiment, {"learning_rate": -1.0}, "learning_rate must be positive, got -1.0"),
        (Experiment, {"max_steps": 0}, "max_steps must be at least 1, got 0"),
        (Experiment, {"patience": -1}, "patience must be 0 or more, got -1"),
        (Experiment, {"epochs": 0}, "epochs must be at least 1, got 0"),
        (Experiment, {"optimizer": "rmsprop"}, "optimizer must be one of adam"),
        (Experiment, {"label_fraction": 0.0}, "label_fraction must be in (0, 1]"),
        (Experiment, {"image_size": 16}, "image_size must be at least 32 for resnet18"),
        (PretrainConfig, {"base_learning_rate": 0.0}, "base_learning_rate must be positive"),
        (PretrainConfig, {"max_steps": 0}, "max_steps must be at least 1, got 0"),
    ],
)
def test_the_library_names_the_field(config, field, message):
    with pytest.raises(FieldError) as e:
        config(recipe="t", synthetic=True, **field)
    assert str(e.value).startswith(message), str(e.value)
    assert "--" not in str(e.value)


@pytest.mark.parametrize(
    "recipe, argv, message",
    [
        ("simclr_pretrain", ["--lr", "0"], "--lr must be positive, got 0.0"),
        ("simclr_pretrain", ["--max-steps", "0"], "--max-steps must be at least 1, got 0"),
        ("resnet18_mlp", ["--fraction", "2"], "--fraction must be in (0, 1], got 2.0"),
        ("part_router", ["--patience", "-2"], "--patience must be 0 or more, got -2"),
    ],
)
def test_the_command_line_names_the_flag(recipe, argv, message, tmp_path, capsys):
    config = importlib.import_module(f"recipes.{recipe}").CONFIG
    code = run(config, argv=["--synthetic", "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.endswith(message) and "\n" not in err, err


def test_a_router_takes_no_setting_it_has_no_flag_for():
    with pytest.raises(ConfigError, match="RouterConfig takes no label_fraction"):
        RouterConfig(recipe="r", synthetic=True, part="elbow,hand", label_fraction=0.5)
