"""`mura-tf serve --model RUN [--host 127.0.0.1] [--port 8501] [--name mura]`: a run's export
behind TF Serving's REST API (`mura_tf.serving.rest`), so a client written for TF Serving
(`POST /v1/models/mura:predict` with `{"instances": [{"b64": ...}]}`) works unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mura_tf.cli import command_parser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser(
        "serve", "Serve a run's export with TF Serving's REST API on this machine."
    )
    parser.add_argument("--model", required=True, help="a run folder or its export/")
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only)",
    )  # fmt: skip
    parser.add_argument(
        "--port", type=int, default=8501, help="port (default: %(default)s, TF Serving's REST port)"
    )
    parser.add_argument(
        "--name", default="mura", help="the model's name in the URLs (default: %(default)s)"
    )
    args = parser.parse_args(argv)

    from mura_tf.serving.rest import create_app, serve

    app = create_app(args.model, args.name)
    print(
        f"serving {args.model} as http://{args.host}:{args.port}/v1/models/{args.name}", flush=True
    )
    serve(app, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
