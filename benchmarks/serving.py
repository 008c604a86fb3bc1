"""Serving throughput and latency: `mura-tf serve`'s REST API under concurrent clients, with
request batching and without, beside the same export called in process as `mura-tf predict`
calls it.

    python -m benchmarks.serving --model RUN --films samples/fracatlas --clients 1,8,32

The films are real radiographs (default: the FracAtlas sample in `samples/fracatlas`). The
in-process row is `predict`'s path: the export's `serve_images` on batches of `--batch` films,
measured before and after the servers. Each server row starts `mura-tf serve` as a user does
(waitress, in a process of its own; `--no-enable-batching` for the unbatched rows), then
`--clients` threads of this process each send `--requests` TF Serving requests of one film
(`{"instances": [{"b64": ...}]}`) over loopback, after a warm-up. It prints films/s, the
ratio to the in-process path, the latency percentiles of one request, and the server's
resident memory (peak and after).
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.records import (
    add_record_flag,
    command_line,
    cpu_model,
    markdown_rows,
    write_record,
)


def _rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def _server(model: str, port: int, flags: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "mura_tf", "serve", "--model", model, "--port", str(port)]
    server = subprocess.Popen([*command, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"mura-tf serve failed:\n{server.stderr.read().decode()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/mura", timeout=5)
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("mura-tf serve did not answer in 300 s")


def _memory_mib(pid: int) -> tuple[float, float]:
    """(peak, current) resident memory of process `pid`, MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmHWM", "VmRSS"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serving",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="a run folder or its export/")
    parser.add_argument("--films", default="samples/fracatlas", help="a folder of JPEG/PNG films")
    parser.add_argument("--count", type=int, default=32, help="distinct films cycled")
    parser.add_argument("--clients", default="1,8,32", help="comma list of concurrent clients")
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    parser.add_argument("--batch", type=int, default=32, help="in-process batch (predict's)")
    add_record_flag(parser)
    args = parser.parse_args(argv)

    from mura_tf.cli import start_tensorflow

    start_tensorflow()
    from mura_tf.serving.load import load_image_serving

    paths = sorted(p for p in Path(args.films).rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    films = [p.read_bytes() for p in paths[: args.count]]
    if not films:
        parser.error(f"--films {args.films}: no JPEG or PNG film in it")
    print(f"CPU: {cpu_model()}; {len(films)} real films from {args.films}")

    predict = load_image_serving(args.model)
    predict(np.array(films[:1], object))  # trace

    def in_process() -> float:
        rounds = max(1, (args.requests * 8) // len(films))
        start = time.perf_counter()
        for _ in range(rounds):
            for i in range(0, len(films), args.batch):
                predict(np.array(films[i : i + args.batch], object))
        return rounds * len(films) / (time.perf_counter() - start)

    base_rate = in_process()
    lines: list[str] = []

    def row(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    print()
    row("| path | clients | films/s | ÷ in process | latency p50 / p90 / p99 (ms) "
        "| server RSS peak / after (MiB) |")  # fmt: skip
    row("|---|---|---|---|---|---|")
    row(f"| in process, batch {args.batch} (`mura-tf predict`) | - | {base_rate:.1f} | 1.00 | | |")
    bodies = [
        json.dumps({"signature_name": "serve_images",
                    "instances": [{"b64": base64.b64encode(f).decode()}]}).encode()
        for f in films
    ]  # fmt: skip
    for label, flags in (("REST, batched", []), ("REST, unbatched", ["--no-enable-batching"])):
        port = _free_port()
        server = _server(args.model, port, flags)
        url = f"http://127.0.0.1:{port}/v1/models/mura:predict"

        def call(i: int, url: str = url) -> float:
            began = time.perf_counter()
            headers = {"Content-Type": "application/json"}
            request = urllib.request.Request(url, data=bodies[i % len(bodies)], headers=headers)
            with urllib.request.urlopen(request, timeout=300) as answer:
                json.loads(answer.read())
            return time.perf_counter() - began

        try:
            with ThreadPoolExecutor(8) as pool:  # warm up: traces, thread pools
                list(pool.map(call, range(16)))
            for clients in (int(c) for c in args.clients.split(",")):
                start = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    latencies = list(pool.map(call, range(clients * args.requests)))
                rate = len(latencies) / (time.perf_counter() - start)
                p50, p90, p99 = np.percentile(np.array(latencies) * 1000, [50, 90, 99])
                peak, now = _memory_mib(server.pid)
                row(f"| {label} | {clients} | {rate:.1f} | {rate / base_rate:.2f} "
                    f"| {p50:.0f} / {p90:.0f} / {p99:.0f} | {peak:.0f} / {now:.0f} |")  # fmt: skip
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=120)
    row(f"| in process, again | - | {in_process():.1f} | | | |")
    if args.record:
        argv = list(argv if argv is not None else sys.argv[1:])
        write_record(args.record, command_line("benchmarks.serving", argv),
                     *markdown_rows("\n".join(lines)))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
