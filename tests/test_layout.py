"""The package's shape: no import cycle between mura_tf's modules and no import running back
up its floors (`LAYERS`; counting imports inside functions, which only hide an edge), a dozen
modules or fewer at the root, and an import that changes nothing outside the package."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mura_tf"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the mura_tf modules it imports anywhere in its source (AST, not executed)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from pkg import module` names a module
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_made_up_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_mura_tf_modules():
    graph = import_graph()
    # the walk sees imports at the top, inside functions, and `from package import module`
    assert "mura_tf.runs.supervised" in graph["mura_tf.runs.router"]
    assert "mura_tf.evaluators.routing" in graph["mura_tf.runs.page"]  # inside a function
    assert cycles(graph) == []


# The package's floors, top to bottom: a module imports only from its own floor or below.
# Modules at the root that are not listed (`__init__`, `__main__`) sit on the top floor.
LAYERS = (
    ("commands", "cli", "__main__"),
    ("report",),
    ("runs",),
    ("training", "serving"),
    ("evaluators",),
    ("data", "models"),
    ("compat", "files"),
    ("errors",),
)


def floor(module: str) -> int:
    """0 for the top floor (`LAYERS[0]`), larger further down."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for depth, names in enumerate(LAYERS):
        if top in names:
            return depth
    assert top == "__init__", f"{module} is on no floor of LAYERS: add it"
    return 0


def imports_running_up(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if floor(target) < floor(module)
    )


def test_the_floor_finder_finds_an_import_running_up():
    graph = {"mura_tf.data.x": {"mura_tf.runs.y"}, "mura_tf.runs.y": {"mura_tf.data.x"}}
    assert imports_running_up(graph) == ["mura_tf.data.x -> mura_tf.runs.y"]


def test_no_import_runs_back_up_the_floors():
    graph = import_graph()
    assert imports_running_up(graph) == []


def test_the_root_holds_a_dozen_modules_or_fewer():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= 12, root


def test_importing_the_package_changes_nothing_around_it():
    """A fresh process: importing mura_tf and its packages leaves the environment, the import
    system and the warning filters as they were (TensorFlow's settings are the entry points')."""
    code = (
        "import os, sys, warnings\n"
        "import numpy, pandas  # their own import-time filters are theirs, not ours\n"
        "env, hooks, filters = dict(os.environ), list(sys.meta_path), list(warnings.filters)\n"
        "import mura_tf, mura_tf.runs, mura_tf.serving, mura_tf.data, mura_tf.evaluators\n"
        "assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())\n"
        "assert sys.meta_path == hooks, sys.meta_path\n"
        "assert warnings.filters == filters\n"
        "assert 'tensorflow' not in sys.modules\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "KERAS_"))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_old_module_paths_are_gone():
    """0.1.0 never shipped the paths from before the packages: no import hook answers them."""
    done = subprocess.run(
        [sys.executable, "-c", "import mura_tf.experiment"], capture_output=True, text=True
    )
    assert done.returncode == 1 and "No module named 'mura_tf.experiment'" in done.stderr


@pytest.mark.xdist_group("grouping-probe")
def test_xdist_groups_keep_module_fixtures_on_one_worker(request):
    """The long files mark themselves `xdist_group` so that their module fixtures are built
    once (pyproject.toml's --dist loadgroup). A pytest/pytest-xdist pair under which the mark
    is silently ignored (pytest-dev/pytest-xdist#1386) fails here instead of costing minutes."""
    if not getattr(request.config.option, "loadgroup", False):  # set on xdist's workers
        pytest.skip("the suite runs without --dist loadgroup (-n 0)")
    assert request.node.nodeid.endswith("@grouping-probe"), request.node.nodeid


def test_a_missing_dev_package_skips_for_a_user_and_fails_under_ci(tmp_path):
    """`dev_packages.need`: what a test of a declared dev package does without it."""
    (tmp_path / "test_needs.py").write_text(
        "from dev_packages import need\n\ndef test_it():\n    need('no_such_package_mura_tf')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent)
    command = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
               str(tmp_path / "test_needs.py"), "--rootdir", str(tmp_path)]  # fmt: skip

    def outcome(**more: str) -> str:
        done = subprocess.run(command, capture_output=True, text=True, env={**env, **more},
                              cwd=tmp_path)  # fmt: skip
        return done.stdout.strip().splitlines()[-1]

    assert "1 skipped" in outcome()
    assert "1 failed" in outcome(CI="true")
