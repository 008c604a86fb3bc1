"""The documentation cannot drift from the code or the records: every command shown in
README.md and docs/ parses with the parser of the command it names; the result tables are what
`python -m benchmarks.tables` generates from the committed records; the site builds with
`mkdocs build --strict` (no broken link or anchor); the README stays a front door."""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks import tables

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", re.S | re.M)
SHELL = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {shlex.join(self.argv)}"


def _blocks(page: Path) -> list[tuple[str, int, str]]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        line = text[: match.start()].count("\n") + 2
        found.append((match["lang"], line, match["body"]))
    return found


def _argv(words: list[str]) -> list[str]:
    """A shown command's words as a user would type one concrete form: `[--flag v]` optional
    parts taken, `a|b` alternatives the first, `...` placeholders dropped."""
    out = []
    for word in words:
        word = word.strip("[]")
        if not word or word in ("...",) or word.endswith("..."):
            continue
        if "|" in word and not word.startswith(("'", '"')):
            word = word.split("|")[0]
        out.append(word)
    return out


def shown_commands() -> list[Command]:
    """Every `python -m ...` and `mura-tf ...` command of a shell block of README.md and docs/
    (continuation lines joined, comments and environment assignments dropped, `&&`, `;` and
    `|` split)."""
    commands = []
    for page in PAGES:
        for lang, first_line, body in _blocks(page):
            if lang not in SHELL:
                continue
            joined, start = "", first_line
            for offset, raw in enumerate(body.splitlines()):
                if not joined:
                    start = first_line + offset
                joined += raw.rstrip("\\") + " "
                if raw.endswith("\\"):
                    continue
                lexer = shlex.shlex(joined, posix=True, punctuation_chars=";&|")
                lexer.whitespace_split = True
                lexer.commenters = "#"
                try:
                    words = list(lexer)
                except ValueError:  # an unterminated quote in an example body: not a command
                    words = []
                joined = ""
                segment: list[str] = []
                for word in [*words, ";"]:
                    if word in (";", "&&", "||", "|", "&"):
                        while segment and re.match(r"^\w+=", segment[0]):
                            segment.pop(0)  # VAR=value before a command
                        if segment[:2] == ["python", "-m"] or segment[:1] == ["mura-tf"]:
                            rel = str(page.relative_to(REPO))
                            commands.append(Command(rel, start, tuple(_argv(segment))))
                        segment = []
                    else:
                        segment.append(word)
    return commands


class _Parsed(Exception):
    """Raised by the patched parser once the flags parsed: nothing after parsing runs."""


@pytest.fixture
def parse_only(monkeypatch):
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        original(self, args, namespace)  # exits 2 with argparse's message on a bad flag
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)


def _parse(argv: tuple[str, ...]) -> None:
    """Parse `argv` with the parser of the command it names; raise AssertionError if it names
    no command or its flags do not parse."""
    if argv[0] == "mura-tf":
        argv = ("python", "-m", "mura_tf", *argv[1:])
    module, args = argv[2], list(argv[3:])
    assert importlib.util.find_spec(module) is not None, f"no module {module}"
    if module == "mura_tf":
        from mura_tf.__main__ import COMMANDS, command_module

        if not args or args[0] in ("-h", "--help"):
            return
        assert args[0] in COMMANDS, f"unknown command {args[0]!r}"
        main = importlib.import_module(command_module(args[0])).main
        args = args[1:]
    elif module.startswith("recipes."):
        from recipes.common import run

        config = importlib.import_module(module).CONFIG
        main = lambda a: run(config, "a recipe", a)  # noqa: E731
    elif module.startswith("benchmarks."):
        main = importlib.import_module(module).main
    else:
        return  # pytest, pip, ...: not this project's parser
    try:
        main(args)
    except _Parsed:
        return
    except SystemExit as e:
        assert e.code in (0, None), f"the flags do not parse (exit status {e.code})"
        return
    raise AssertionError("the command ran without parsing its flags")


def test_the_extractor_finds_and_splits_commands(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\n"
        "pip install -e . && python -m recipes.resnet18_mlp --part elbow \\\n"
        "    --epochs 2   # a comment\n"
        "TF_CPP_MIN_LOG_LEVEL=0 mura-tf predict --model RUN films/ [--cam cams/]\n"
        "python -m benchmarks.train_step --model resnet18|densenet169\n"
        "```\n"
        "```python\nprint('not shell')\n```\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PAGES", [page])
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert [(c.line, c.argv) for c in shown_commands()] == [
        (2, ("python", "-m", "recipes.resnet18_mlp", "--part", "elbow", "--epochs", "2")),
        (4, ("mura-tf", "predict", "--model", "RUN", "films/", "--cam", "cams/")),
        (5, ("python", "-m", "benchmarks.train_step", "--model", "resnet18")),
    ]


def test_a_wrong_flag_or_a_moved_module_fails_the_check(parse_only):
    with pytest.raises(AssertionError, match="do not parse"):
        _parse(("python", "-m", "recipes.resnet18_mlp", "--epoks", "2"))
    with pytest.raises(AssertionError, match="no module"):
        _parse(("python", "-m", "mura_tf.evaluate", "--model", "RUN"))
    with pytest.raises(AssertionError, match="unknown command"):
        _parse(("mura-tf", "evaluates", "--model", "RUN"))
    _parse(("mura-tf", "serve", "--model", "RUN", "--threshold", "0.3"))


def test_every_command_shown_parses(parse_only, capsys):
    commands = shown_commands()
    pages = {c.page for c in commands}
    assert "README.md" in pages and "docs/use-a-model.md" in pages, pages
    assert len(commands) > 40
    failures = []
    for command in commands:
        try:
            _parse(command.argv)
        except AssertionError as e:
            err = capsys.readouterr().err.strip().splitlines()
            failures.append(f"{command}\n    {e} {err[-1] if err else ''}")
    assert not failures, "\n".join(failures)


def test_every_python_block_is_valid_python():
    for page in PAGES:
        for lang, line, body in _blocks(page):
            if lang == "python":
                try:
                    ast.parse(body)
                except SyntaxError as e:
                    pytest.fail(f"{page.relative_to(REPO)}:{line + (e.lineno or 1) - 1}: {e.msg}")


def test_the_result_tables_are_what_the_records_generate():
    records = tables.read_records()
    assert len(records) > 30
    generated = 0
    for page in (REPO / "docs").rglob("*.md"):
        text = page.read_text()
        generated += len(tables.BLOCK.findall(text))
        assert tables.render(text, records) == text, (
            f"{page.relative_to(REPO)} is stale: run python -m benchmarks.tables"
        )
    assert generated >= 5


def test_the_outline_recipes_table_hands_over_its_seeds_ensemble():
    """The results table of `fracatlas_outlines` finds the ensemble of the very seeds it
    lists (matched by their run folders' names), as the recipe's own output."""
    table = tables.outline_recipe(tables.read_records())
    seeds = [line for line in table.splitlines() if line.startswith("| seed ")]
    assert len(seeds) >= 3
    (ensemble,) = [line for line in table.splitlines() if "the recipe: the ensemble" in line]
    defaults = {p.name for p, s, _ in tables._choice_runs()
                if tables._choice_label(s) == "the recipe's defaults"}  # fmt: skip
    (kept,) = [c.parent for c in tables.ENSEMBLES.rglob("config.json")
               if {Path(m).name for m in json.loads(c.read_text())["ensemble"]["members"]}
               == defaults]  # fmt: skip
    auc = json.loads((kept / "metrics.json").read_text())["study"]["auc"]
    assert f"| {auc:.3f} (" in ensemble  # with its interval


# Findings tables: what was tried and what it measured, not a benchmark's printout.
FINDINGS = ("| attempt |", "| change |", "| part | s |")


def test_the_settings_table_labels_rows_against_the_recipes_own_defaults():
    """A row of "How the recipe's settings are chosen" is named by how its runs differ from
    `fracatlas_outlines`'s defaults: the table's copy of them must be the recipe's."""
    import dataclasses

    from recipes.fracatlas_outlines import CONFIG

    recipe = dataclasses.asdict(CONFIG)
    recipe["augment"] = list(recipe["augment"])
    assert {k: recipe[k] for k in tables.OUTLINE_DEFAULTS} == tables.OUTLINE_DEFAULTS
    assert tables._choice_label({**recipe, "patience": 2}) == "`--patience 2`"
    # A run that predates a setting had that setting's legacy value (Experiment's own).
    from mura_tf.runs.experiment import Experiment

    legacy = {f.name: f.metadata["legacy"] for f in dataclasses.fields(Experiment)
              if "legacy" in f.metadata}  # fmt: skip
    assert {k: legacy[k] for k in tables.BEFORE} == tables.BEFORE
    assert set(tables.OUTLINE_DEFAULTS) & set(legacy) <= set(tables.BEFORE) | {"outline_weight"}
    switched = {**recipe, "reduce_lr_on_plateau": True}
    assert tables._choice_label(switched) == "`--reduce-lr-on-plateau`"
    assert tables._choice_label(recipe) == "the recipe's defaults"


def test_every_measured_table_on_the_benchmarks_page_is_generated():
    text = (REPO / "docs" / "benchmarks.md").read_text()
    outside = tables.BLOCK.sub("", text)
    headers = [
        line
        for before, line in zip(["", *outside.splitlines()], outside.splitlines(), strict=False)
        if line.startswith("|") and not before.startswith("|")
    ]
    typed = [h for h in headers if not h.startswith(FINDINGS)]
    assert not typed, f"tables typed by hand on the benchmarks page: {typed}"
    assert len(tables.BLOCK.findall(text)) >= 13


def test_a_changed_record_makes_its_page_stale(tmp_path):
    records = tables.read_records()
    page = (REPO / "docs" / "real-films.md").read_text()
    first = records[0]
    changed = [
        tables.Record(
            first.path, first.kind, first.settings,
            {**first.metrics, "study": {**first.metrics["study"], "auc": 0.5}},
            first.timing, first.torch,
        ),
        *records[1:],
    ]  # fmt: skip
    assert tables.render(page, changed) != page


def test_the_readme_is_a_front_door():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for place in [REPO / "README.md", REPO / "benchmarks" / "README.md", *PAGES]:
        assert "session" not in place.read_text().lower(), place


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: a broken link, a missing anchor or a docstring the API
    reference cannot read fails."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "reference" / "serving" / "index.html").is_file()
