"""Side-by-side runs of two frameworks: one long-lived worker process each, timed alternately.

Each framework lives in its own process so that neither one's thread pools spin while the other
is measured, and so that each process's peak RSS is its own. The parent asks the workers in
turn to run one repetition and collects the timings, so slow drift of the machine (thermal,
other load) hits both sides alike.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

MARK = "@@bench "


@dataclass
class Side:
    """Measurements of one framework: images per second of each repetition, peak RSS."""

    name: str
    rates: list[float]
    peak_rss_mb: float
    info: dict

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def reply(message: dict) -> None:
    """Worker side: one marked JSON line on stdout (anything else printed there is ignored)."""
    sys.stdout.write(MARK + json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(setup: Callable[[], tuple[Callable[[], float], dict]]) -> None:
    """Worker main loop: `setup()` builds and warms up, returning (run_once -> images/s, info).

    Then each line `run` on stdin runs one repetition; `stop` reports peak RSS and exits.
    """
    import resource

    run_once, info = setup()
    reply({"ready": True, "info": info})
    for line in sys.stdin:
        if line.strip() == "run":
            reply({"rate": run_once()})
        else:
            break
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reply({"peak_rss_mb": peak_kb / 1024})


def without_only(argv: list[str]) -> list[str]:
    """The parent's arguments minus `--only SIDE`, to forward to the workers."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--only":
            skip = True
        elif not a.startswith("--only="):
            out.append(a)
    return out


class Worker:
    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.info = self._read().get("info", {})

    def _read(self) -> dict:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK) :])
        code = self.process.wait()
        raise RuntimeError(f"the {self.name} benchmark worker exited with code {code}")

    def run(self) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return float(self._read()["rate"])

    def stop(self) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        peak = float(self._read()["peak_rss_mb"])
        self.process.wait()
        return peak


def alternate(workers: list[Worker], repeats: int, progress=None) -> list[Side]:
    """Run `repeats` repetitions on each worker in turn (A B A B ...); stop them all."""
    rates: dict[str, list[float]] = {w.name: [] for w in workers}
    try:
        for r in range(repeats):
            for w in workers:
                rates[w.name].append(w.run())
                if progress:
                    progress(
                        f"repetition {r + 1}/{repeats} {w.name}: {rates[w.name][-1]:.2f} img/s"
                    )
        return [Side(w.name, rates[w.name], w.stop(), w.info) for w in workers]
    finally:
        for w in workers:
            if w.process.poll() is None:
                w.process.kill()


def compare(module: str, argv: list[str], sides: list[str], repeats: int) -> None:
    """Start a worker per side (`python -m module *argv --worker SIDE`), alternate, print."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    workers = [Worker(s, ["-m", module, *argv, "--worker", s], env) for s in sides]
    results = alternate(workers, repeats, lambda m: print(m, file=sys.stderr))
    for side in results:
        print(f"{side.name}: {side.info}")
    print(table(results))


def batch_rate(iterator, batches: int, batch_size: int) -> Callable[[], float]:
    """A `run_once` for `serve`: images/s of drawing `batches` batches from `iterator`."""

    def run_once() -> float:
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        return batches * batch_size / (time.perf_counter() - start)

    return run_once


def table(sides: list[Side], unit: str = "img/s") -> str:
    """A small Markdown table: median, all repetitions, peak RSS, ratio to the last side."""
    reference = sides[-1].median
    rows = [f"| side | median {unit} | repetitions | peak RSS MB | ratio to {sides[-1].name} |"]
    rows.append("|---|---|---|---|---|")
    for s in sides:
        reps = ", ".join(f"{r:.2f}" for r in s.rates)
        rows.append(
            f"| {s.name} | {s.median:.2f} | {reps} | {s.peak_rss_mb:.0f} | "
            f"{s.median / reference:.2f} |"
        )
    return "\n".join(rows)
