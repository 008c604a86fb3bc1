"""`mura-tf serve --model RUN [--host 127.0.0.1] [--port 8501] [--name mura]`: a run's export
behind TF Serving's REST API (`mura_tf.serving.rest`), so that a client written for TF Serving
(`POST /v1/models/mura:predict` with `{"instances": [{"b64": ...}]}`) works unchanged, and a
reader page at `/` (`mura_tf.serving.reader`): drop a study's films, see each view's
probability and Grad-CAM and the study's decision.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from mura_tf.cli import add_threshold, command_parser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser(
        "serve",
        "Serve a run's export on this machine: TF Serving's REST API and a reader page.",
    )
    parser.add_argument("--model", required=True, help="a run folder or its export/")
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 opens it "
        "to the network, without authentication)",
    )  # fmt: skip
    parser.add_argument(
        "--port", type=int, default=8501, help="port (default: %(default)s, TF Serving's REST port)"
    )
    parser.add_argument(
        "--name", default="mura", help="the model's name in the URLs (default: %(default)s)"
    )
    add_threshold(parser)
    args = parser.parse_args(argv)

    from mura_tf.evaluators.thresholds import resolve_threshold
    from mura_tf.serving.rest import create_app, serve

    threshold = resolve_threshold(args.threshold, args.model)
    app = create_app(args.model, args.name, threshold)
    base = f"http://{args.host}:{args.port}"
    print(f"reader:   {base}/", flush=True)
    print(f"REST API: {base}/v1/models/{args.name}  (TF Serving's; :predict, /metadata)")
    print(f"studies decided at {threshold.rule}; Ctrl-C stops", flush=True)
    serve(app, args.host, args.port)
    print("server stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
