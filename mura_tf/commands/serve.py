"""`mura-tf serve --model RUN [--host 127.0.0.1] [--port 8501] [--name mura]`: a run's export
behind TF Serving's REST API (`mura_tf.serving.rest`), so that a client written for TF Serving
(`POST /v1/models/mura:predict` with `{"instances": [{"b64": ...}]}`) works unchanged, and a
reader page at `/` (`mura_tf.serving.reader`): drop a study's films, see each view's
probability and Grad-CAM and the study's decision.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path

from mura_tf.cli import add_threshold, command_parser, non_negative_int, positive_int, run
from mura_tf.errors import ConfigError
from mura_tf.serving.batching import BatchingOptions
from mura_tf.serving.limits import Limits


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser(
        "serve",
        "Serve a run's export on this machine: TF Serving's REST API and a reader page.",
    )
    parser.add_argument("--model", required=True, help="a run folder or its export/")
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only); any other "
        "address needs --token-file (or --token) or --open",
    )  # fmt: skip
    parser.add_argument(
        "--port", type=int, default=8501, help="port (default: %(default)s, TF Serving's REST port)"
    )
    parser.add_argument(
        "--name", default="mura", help="the model's name in the URLs (default: %(default)s)"
    )
    add_threshold(parser)
    defaults = Limits()
    parser.add_argument(
        "--max-instances", type=positive_int, default=defaults.instances,
        help="films (or pixel arrays) one request may send (default: %(default)s); more is a 400",
    )  # fmt: skip
    batching = BatchingOptions()
    parser.add_argument(
        "--enable-batching", action=argparse.BooleanOptionalAction, default=True,
        help="merge concurrent requests into one model call, as TF Serving's --enable_batching "
        "(default: on)",
    )  # fmt: skip
    parser.add_argument(
        "--max-batch-size", type=positive_int, default=batching.max_batch_size,
        help="films per model call (default: %(default)s): memory grows with this, not with "
        "the requests",
    )  # fmt: skip
    parser.add_argument(
        "--batch-timeout-micros", type=non_negative_int, default=batching.batch_timeout_micros,
        help="how long a batch's first film waits for others, in microseconds "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=positive_int, default=64,
        help="request threads of the server (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--debug", action="store_true",
        help="werkzeug's development server instead of waitress (for debugging only)",
    )  # fmt: skip
    access = parser.add_mutually_exclusive_group()
    access.add_argument(
        "--token-file", type=Path,
        help="a file holding the bearer token every client must send "
        "(Authorization: Bearer TOKEN); the reader page is opened as URL#token=TOKEN",
    )  # fmt: skip
    access.add_argument(
        "--token", help="the bearer token itself (visible to other users in the process list: "
        "prefer --token-file)",
    )  # fmt: skip
    access.add_argument(
        "--open", action="store_true",
        help="serve without authentication on a non-loopback --host, on purpose",
    )  # fmt: skip
    args = parser.parse_args(argv)
    token = read_token(args.token_file) if args.token_file else args.token
    if args.token is not None:
        check_token(args.token, "--token")
    if token is None and not args.open and not is_loopback(args.host):
        raise ConfigError(
            f"--host {args.host} opens the server to the network: give --token-file FILE "
            "(clients send Authorization: Bearer TOKEN), or --open to serve without "
            "authentication"
        )

    # After parsing: --help and a wrong flag answer before TensorFlow loads.
    from mura_tf.evaluators.thresholds import resolve_threshold
    from mura_tf.runs.result import run_summary
    from mura_tf.serving.rest import create_app, serve

    threshold = resolve_threshold(args.threshold, args.model)
    limits = Limits(instances=args.max_instances)
    batching = BatchingOptions(
        args.max_batch_size, args.batch_timeout_micros, enabled=args.enable_batching
    )
    summary = run_summary(args.model)
    app = create_app(args.model, args.name, threshold, limits, token, batching, summary)
    base = f"http://{args.host}:{args.port}"
    print(f"reader:   {base}/" + ("#token=TOKEN" if token else ""), flush=True)
    print(f"REST API: {base}/v1/models/{args.name}  (TF Serving's; :predict, /metadata)")
    print(f"metrics:  {base}/monitoring/prometheus/metrics")
    if token:
        print("clients send Authorization: Bearer TOKEN (the token given)")
    print(f"studies decided at {threshold.rule}; Ctrl-C stops", flush=True)
    serve(app, args.host, args.port, threads=args.threads, debug=args.debug)
    print("server stopped", flush=True)
    return 0


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only: `localhost`, 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(path: Path) -> str:
    """The bearer token in `path` (surrounding white space dropped)."""
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the token file {path}: {e}") from None
    check_token(token, f"the token in {path}")
    return token


def check_token(token: str, where: str) -> None:
    """A bearer token long enough not to be guessed, and sendable in one header."""
    if len(token) < 16 or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(
            f"{where} must be at least 16 printable characters without spaces (for example: "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


if __name__ == "__main__":
    sys.exit(run(main))
