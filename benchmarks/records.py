"""What a benchmark keeps of one invocation, for the documentation's tables.

A record is one JSON file: the command that printed it, the CPU (model name, family and model
as `lscpu` gives them, and the widest vector unit), the date, the framework versions, and the
table the command printed (`columns`, `rows`: strings, as printed). A benchmark that compares
two sides adds `comparison`: each side's median rate, spread and peak RSS, the ratio and the
range of the paired repetitions' ratios, from which `python -m benchmarks.tables` builds the
tables that put several invocations side by side.

`source` says where a record came from: `recorded` (the benchmark wrote it, `--record FILE`) or
`transcribed` (copied from a printout made before benchmarks kept records; the command, CPU and
date are the printout's). A re-run with `--record` replaces a transcribed record by a recorded
one and the page follows through `python -m benchmarks.tables`.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from mura_tf.files import write_json, write_with

RESULTS = Path(__file__).resolve().parent / "results"


def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    """The CPU as `lscpu` names it, with its family, model, widest vector unit and core count:
    `AMD EPYC, family 25, model 17 (AVX-512 BF16, 2 cores)`."""
    info = _cpuinfo()
    if not info:
        return platform.processor() or "unknown CPU"
    flags = set(info.get("flags", "").split())
    units = [unit for flag, unit in (("amx_bf16", "AVX-512 BF16 and AMX"),
                                     ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"),
                                     ("avx2", "AVX2")) if flag in flags]  # fmt: skip
    name = info.get("model name", "?")
    family, model = info.get("cpu family"), info.get("model")
    where = f", family {family}, model {model}" if family and model else ""
    return f"{name}{where} ({units[0] if units else 'no AVX2'}, {os.cpu_count()} cores)"


def versions() -> str:
    """The frameworks a benchmark ran on, without importing them: `TF 2.21.0 / Keras 3.15.1,
    torch 2.14.1 / torchvision 0.29.1` (the PyTorch pair only where it is installed)."""
    shown = []
    for pair in (("tensorflow", "keras"), ("torch", "torchvision")):
        try:
            found = [metadata.version(name) for name in pair]
        except metadata.PackageNotFoundError:
            continue
        label = {"tensorflow": "TF", "keras": "Keras"}
        named = zip(pair, found, strict=True)
        shown.append(" / ".join(f"{label.get(n, n)} {v.split('+')[0]}" for n, v in named))
    return ", ".join(shown)


def without_flag(argv: list[str], flag: str) -> list[str]:
    """`argv` less `flag VALUE` and `flag=VALUE`."""
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            kept.append(a)
    return kept


def split_at_dashes(argv: list[str]) -> tuple[list[str], list[str]]:
    """A benchmark's own arguments, and those after `--` that it passes on to a recipe."""
    if "--" not in argv:
        return list(argv), []
    at = argv.index("--")
    return list(argv[:at]), list(argv[at + 1 :])


def copy_files(source: Path, to: Path, names: Iterable[str]) -> None:
    """Copy each of `names` (paths under `source`) to the same path under `to`, each written
    atomically (a temporary name, then renamed): a kept run is never half-copied."""
    for name in names:
        write_with(to / name, lambda tmp, src=source / name: shutil.copyfile(src, tmp))


def without_record(argv: list[str]) -> list[str]:
    """`argv` less `--record FILE`."""
    return without_flag(argv, "--record")


def command_line(module: str, argv: list[str]) -> str:
    """`python -m MODULE ARGV` as a user types it, less `--record` and its file."""
    return " ".join(["python -m", module, *without_record(argv)])


def markdown_rows(table: str) -> tuple[list[str], list[list[str]]]:
    """A printed Markdown table's header and rows, cell by cell."""
    lines = [x.strip() for x in table.strip().splitlines() if x.strip().startswith("|")]

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip("|").split("|")]

    return cells(lines[0]), [cells(x) for x in lines[2:]]


def write_record(
    path: Path, command: str, columns: list[str], rows: list[list[str]], **more: object
) -> Path:
    """Write one record (a temporary name, then renamed) and return its path."""
    record = {
        "command": command, "cpu": cpu_model(), "date": time.strftime("%Y-%m-%d"),
        "versions": versions(), "source": "recorded", "columns": columns, "rows": rows, **more,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    print(f"recorded {path}", file=sys.stderr)
    return path


def read_record(path: Path) -> dict:
    """One record, with `path` added."""
    return {**json.loads(path.read_text()), "path": path}


def add_record_flag(parser) -> None:
    """`--record FILE`: keep this invocation's table as a record (see this module)."""
    parser.add_argument(
        "--record", type=Path, metavar="FILE",
        help="also write what is printed as a JSON record (benchmarks/results/...), from which "
        "python -m benchmarks.tables generates the documentation's tables",
    )  # fmt: skip
