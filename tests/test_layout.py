"""The package's shape: no import cycle between mura_tf's modules (counting imports inside
functions, which only hide a cycle), a dozen modules or fewer at the root, and the module
paths from before the packages still importing, as the same module objects."""

import ast
import subprocess
import sys
from pathlib import Path

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
    assert "mura_tf.evaluators.routing" in graph["mura_tf.report.run"]  # inside a function
    assert cycles(graph) == []


def test_the_root_holds_a_dozen_modules_or_fewer():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= 12, root


def test_old_module_paths_still_import_as_the_same_modules():
    code = (
        "import warnings, mura_tf.experiment as old, mura_tf.runs.supervised as new\n"
        "assert old is new and old.Experiment is new.Experiment\n"
        "from mura_tf.runs import read_run\n"
        "from mura_tf.runs.config import read_run as new_read_run\n"
        "assert read_run is new_read_run\n"
        "from mura_tf.serving import load_serving\n"
        "from mura_tf.io import write_text\n"
        "import mura_tf.files\n"
        "assert write_text is mura_tf.files.write_text\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-W", "error::DeprecationWarning:__main__", "-c",
                           code.replace("import warnings, ", "import ")],
                          capture_output=True, text=True)  # fmt: skip
    # A DeprecationWarning raised as an error names the new place in one line.
    assert "mura_tf.experiment moved to mura_tf.runs.supervised" in done.stderr, done.stderr
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
