"""Serving throughput and latency: `mura-tf serve`'s REST API under concurrent clients, beside
the same export called in process as `mura-tf predict` calls it.

    python -m benchmarks.serving --model RUN --films samples/fracatlas --clients 1,8,32

The films are real radiographs (default: the FracAtlas sample in `samples/fracatlas`). The
in-process row is `predict`'s path: the export's `serve_images` on batches of `--batch` films.
Each server row is `--clients` threads, each sending `--requests` TF Serving requests of one
film (`{"instances": [{"b64": ...}]}`) over loopback to the server in this process (werkzeug's
threaded server, as `mura-tf serve` runs it), after one warm-up request. It prints films/s,
the latency percentiles of one request, and the process's resident memory before and after.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def _cpu() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


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
    args = parser.parse_args(argv)

    from mura_tf.cli import start_tensorflow

    start_tensorflow()
    import logging

    from werkzeug.serving import make_server

    from mura_tf.serving.load import load_image_serving
    from mura_tf.serving.rest import create_app

    paths = sorted(p for p in Path(args.films).rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    films = [p.read_bytes() for p in paths[: args.count]]
    if not films:
        parser.error(f"--films {args.films}: no JPEG or PNG film in it")
    print(f"CPU: {_cpu()}, {os.cpu_count()} cores; {len(films)} real films from {args.films}")

    predict = load_image_serving(args.model)
    predict(np.array(films[:1], object))  # trace
    rounds = max(1, (args.requests * 8) // len(films))
    start = time.perf_counter()
    for _ in range(rounds):
        for i in range(0, len(films), args.batch):
            predict(np.array(films[i : i + args.batch], object))
    in_process = rounds * len(films) / (time.perf_counter() - start)
    print("\n| path | clients | films/s | latency p50 / p90 / p99 (ms) | RSS before/after (MiB) |")
    print("|---|---|---|---|---|")
    print(f"| in process, batch {args.batch} (`mura-tf predict`) | - | {in_process:.1f} | | |")

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    httpd = make_server("127.0.0.1", 0, create_app(args.model), threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_port}/v1/models/mura:predict"
    bodies = [
        json.dumps({"signature_name": "serve_images",
                    "instances": [{"b64": base64.b64encode(f).decode()}]}).encode()
        for f in films
    ]  # fmt: skip

    def call(i: int) -> float:
        began = time.perf_counter()
        request = urllib.request.Request(url, data=bodies[i % len(bodies)],
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=300) as answer:
            json.loads(answer.read())
        return time.perf_counter() - began

    call(0)  # warm up: the first call traces the signature
    for clients in (int(c) for c in args.clients.split(",")):
        before = _rss_mib()
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            latencies = list(pool.map(call, range(clients * args.requests)))
        rate = len(latencies) / (time.perf_counter() - start)
        p50, p90, p99 = np.percentile(np.array(latencies) * 1000, [50, 90, 99])
        print(f"| REST, one film a request | {clients} | {rate:.1f} | {p50:.0f} / {p90:.0f} / "
              f"{p99:.0f} | {before:.0f} / {_rss_mib():.0f} |", flush=True)  # fmt: skip
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
