"""TF Serving's REST API over a run's export, as a Flask app (`mura-tf serve`).

The routes and JSON shapes are TF Serving's (https://www.tensorflow.org/tfx/serving/api_rest):

    GET  /v1/models/NAME[/versions/1]            model status: one version, AVAILABLE
    GET  /v1/models/NAME[/versions/1]/metadata   the export's signatures
    POST /v1/models/NAME[/versions/1]:predict    {"signature_name": ..., "instances": [...]}
                                                 (row format) or {"inputs": ...} (columnar);
                                                 string inputs as {"b64": "..."}; answers
                                                 {"predictions": ...} or {"outputs": ...}

A client that speaks to TF Serving speaks to this server unchanged. Encoded films (the string
inputs of `serve_images`) may also be DICOM: they are turned into the PNG the export reads
(`mura_tf.data.dicom`). `/` is the reader page (`mura_tf.serving.reader`).

Every error is a 4xx with `{"error": "<one line>"}` naming the instance where one is at
fault; the server reads and writes no path a client names. What one request may cost is
bounded before any of it is decoded: the body's size (413), the JSON's nesting depth, the
number of instances (`Limits`), each film's pixels from its header
(`mura_tf.data.limits`). Concurrent requests are merged into model calls of at most
`BatchingOptions.max_batch_size` rows (`mura_tf.serving.batching`), so memory grows with the
batch, not with the request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import re
import signal
import threading
import time
from typing import Any

import numpy as np
import tensorflow as tf
import waitress.server
import waitress.wasyncore
from flask import Flask, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

from mura_tf.evaluators.thresholds import PROTOCOL, Threshold
from mura_tf.serving.batching import BatchingOptions, model_caller
from mura_tf.serving.limits import Limits
from mura_tf.serving.load import cams_of, find_export, load_export, outline_maps_of
from mura_tf.serving.reader import PAGE, Upload, encoded_film, read_study

DEFAULT_SIGNATURE = "serving_default"
MAX_REQUEST_BYTES = 64 * 1024 * 1024
VERSION = "1"
# A JSON string, as the unrolled loop "normal* (escape normal*)*": no backtracking state per
# character, so a megabyte of base64 costs the scan no memory of its own.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_CHUNK = 1 << 20


class RequestError(Exception):
    """A request the server cannot answer; the message is the one line the client gets, with
    HTTP `status` (400, or 404 for a model name it does not serve)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def create_app(
    model: str | os.PathLike[str],
    name: str = "mura",
    threshold: Threshold = PROTOCOL,
    limits: Limits = Limits(),  # noqa: B008 - frozen, so one shared default is safe
    token: str | None = None,
    batching: BatchingOptions = BatchingOptions(),  # noqa: B008 - frozen
    summary: dict | None = None,
) -> Flask:
    """The Flask app serving `model` (a run folder or its `export/`) as TF Serving would serve
    a model called `name`, with the reader page (`mura_tf.serving.reader`) at `/` deciding
    studies at `threshold`, each request within `limits`. With a `token`, every route but the
    page itself answers 401 unless the request carries `Authorization: Bearer <token>`.
    `batching` says how concurrent requests are merged into model calls
    (`mura_tf.serving.batching`). `summary` is what the page says about the model
    (`mura_tf.runs.result.run_summary`; by default its path only)."""
    export = find_export(model)
    loaded = load_export(export)  # one load serves the REST API and the reader's Grad-CAM
    signatures = dict(loaded.signatures)
    metrics = Metrics()
    callers = {
        key: model_caller(_signature_call(fn, metrics.batches.observe), batching)
        for key, fn in signatures.items()
    }
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    cams = cams_of(loaded, export)
    outline_maps = outline_maps_of(loaded)
    summary = summary or {"label": str(model), "metrics": []}

    @app.before_request
    def start_clock():
        g.started = time.perf_counter()

    @app.after_request
    def count(response):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - g.started)
        return response

    @app.get("/monitoring/prometheus/metrics")
    def prometheus():
        return generate_latest(metrics.registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}

    @app.before_request
    def authorize():
        if token is None or request.path == "/":
            return None  # the page holds no data; it sends the token on its own requests
        if not bearer_matches(request.headers.get("Authorization", ""), token):
            return (
                jsonify(error="401 Unauthorized: send Authorization: Bearer <token>"),
                401,
                {"WWW-Authenticate": 'Bearer realm="mura-tf"'},
            )
        return None

    @app.get("/")
    def page():
        return PAGE.read_text(), 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.get("/reader/run")
    def run_info():
        return jsonify(summary)

    @app.post("/reader/study")
    def study():
        uploads = [Upload(f.filename or "film", f.read()) for f in request.files.getlist("films")]
        if not uploads:
            raise RequestError('send the films as multipart form fields named "films"')
        return jsonify(read_study(uploads, cams, threshold, outline_maps))

    def check_name(model_name: str, version: str | None = None) -> None:
        if model_name != name:
            raise RequestError(f"Servable not found for request: Latest({model_name})", 404)
        if version is not None and version != VERSION:
            raise RequestError(
                f"Servable not found for request: Specific({model_name}, {version})", 404
            )

    @app.errorhandler(RequestError)
    def bad_request(error: RequestError):
        return jsonify(error=str(error)), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):  # 404, 405, 413: TF Serving's JSON, one line
        return jsonify(error=f"{error.code} {error.name}: {error.description}"), error.code

    @app.get("/v1/models/<model_name>")
    @app.get("/v1/models/<model_name>/versions/<version>")
    def status(model_name: str, version: str | None = None):
        check_name(model_name, version)
        state = {"error_code": "OK", "error_message": ""}
        return jsonify(
            model_version_status=[{"version": VERSION, "state": "AVAILABLE", "status": state}]
        )

    @app.get("/v1/models/<model_name>/metadata")
    @app.get("/v1/models/<model_name>/versions/<version>/metadata")
    def metadata(model_name: str, version: str | None = None):
        check_name(model_name, version)
        defs = {key: _signature_def(fn) for key, fn in signatures.items()}
        return jsonify(
            model_spec={"name": name, "signature_name": "", "version": VERSION},
            metadata={"signature_def": {"signature_def": defs}},
        )

    @app.post("/v1/models/<model_name>:predict")
    @app.post("/v1/models/<model_name>/versions/<version>:predict")
    def predict(model_name: str, version: str | None = None):
        check_name(model_name, version)
        body = _json_body(request.get_data(cache=False), limits.depth)
        if not isinstance(body, dict):
            raise RequestError('the body is not a JSON object: send {"instances": [...]}')
        key = body.get("signature_name") or DEFAULT_SIGNATURE
        if key not in signatures:
            raise RequestError(
                f"signature_name {key!r} is not in the export: one of {', '.join(signatures)}"
            )
        fn = signatures[key]
        specs = fn.structured_input_signature[1]
        if ("instances" in body) == ("inputs" in body):
            raise RequestError('send exactly one of "instances" (rows) or "inputs" (columns)')
        if "instances" in body:
            inputs = _from_rows(body["instances"], specs, limits.instances)
        else:
            inputs = _from_columns(body["inputs"], specs, limits.instances)
        try:
            outputs = callers[key](inputs)
        except (tf.errors.InvalidArgumentError, ValueError) as e:
            raise RequestError(f"the model could not run on the input: {_first_line(e)}") from None
        if "instances" in body:
            return jsonify(predictions=_to_rows(outputs))
        return jsonify(outputs=_to_columns(outputs))

    return app


def bearer_matches(header: str, token: str) -> bool:
    """Whether an `Authorization` header carries `token` as a bearer token, compared in
    constant time (the comparison takes as long whichever character differs)."""
    scheme, _, given = header.partition(" ")
    return (
        hmac.compare_digest(given.strip().encode(), token.encode()) and scheme.lower() == "bearer"
    )


def json_depth(data: bytes) -> int:
    """How deeply the JSON text `data` nests arrays and objects (0 for a scalar), counted
    without parsing it: brackets inside strings do not count. Only the brackets are kept, and
    they are counted a megabyte at a time, so the scan's memory stays small whatever the body
    (a body of base64 films holds a handful of brackets)."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", data))
    depth = deepest = 0
    for start in range(0, len(brackets), _CHUNK):
        chunk = np.frombuffer(brackets[start : start + _CHUNK], dtype=np.uint8)
        steps = np.where((chunk == ord("[")) | (chunk == ord("{")), 1, -1).astype(np.int32)
        levels = np.cumsum(steps, dtype=np.int64) + depth
        deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
    return deepest


def _json_body(data: bytes, max_depth: int) -> Any:
    depth = json_depth(data)
    if depth > max_depth:
        raise RequestError(f"the JSON body nests {depth} levels deep, at most {max_depth}")
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise RequestError('the body is not a JSON object: send {"instances": [...]}') from None


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (TF Serving's endpoint:
    `/monitoring/prometheus/metrics`): requests by route and status code, their latency, and
    the rows of each model call (the batch sizes batching makes)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mura_tf_requests", "HTTP requests answered, by route and status code",
            ["route", "code"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "mura_tf_request_seconds", "time to answer a request, by route", ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )  # fmt: skip
        self.batches = Histogram(
            "mura_tf_batch_size", "rows (films) per model call", registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )  # fmt: skip


def _signature_call(fn, on_batch):
    """A signature as a `batching.ModelCall` on NumPy columns; `on_batch(rows)` is told each
    call's size (the metrics' batch sizes)."""

    def call(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = fn(**{k: tf.constant(v) for k, v in columns.items()})
        on_batch(len(next(iter(columns.values()))))
        return {k: v.numpy() for k, v in outputs.items()}

    return call


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _signature_def(fn) -> dict:
    def tensors(specs: dict) -> dict:
        return {
            key: {
                "dtype": "DT_" + spec.dtype.name.upper(),
                "tensor_shape": {
                    "dim": [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape],
                    "unknown_rank": False,
                },
                "name": f"{key}:0",
            }
            for key, spec in specs.items()
        }

    return {
        "inputs": tensors(fn.structured_input_signature[1]),
        "outputs": tensors(fn.structured_outputs),
        "method_name": "tensorflow/serving/predict",
    }


def _check_count(n: int, max_instances: int) -> None:
    if n > max_instances:
        raise RequestError(
            f"{n} instances in one request, at most {max_instances}: send them in several"
        )


def _from_rows(instances: Any, specs: dict, max_instances: int) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise RequestError('"instances" must be a non-empty list')
    _check_count(len(instances), max_instances)
    names = list(specs)
    columns: dict[str, list] = {key: [] for key in names}
    for i, instance in enumerate(instances):
        if len(names) > 1 or (isinstance(instance, dict) and names[0] in instance):
            if not isinstance(instance, dict) or set(instance) != set(names):
                raise RequestError(f"instance {i}: give the inputs {', '.join(names)}")
            for key in names:
                columns[key].append(instance[key])
        else:
            columns[names[0]].append(instance)
    return {key: _tensor(values, specs[key], "instance") for key, values in columns.items()}


def _from_columns(inputs: Any, specs: dict, max_instances: int) -> dict[str, np.ndarray]:
    names = list(specs)
    if not (isinstance(inputs, dict) and set(inputs) == set(names)):
        inputs = {names[0]: inputs} if len(names) == 1 else inputs
    if not isinstance(inputs, dict) or set(inputs) != set(names):
        raise RequestError(f'"inputs" must name {", ".join(names)}')
    for values in inputs.values():
        if isinstance(values, list):
            _check_count(len(values), max_instances)
    return {key: _tensor(inputs[key], specs[key], "input") for key in names}


def _tensor(values: Any, spec: tf.TensorSpec, what: str) -> np.ndarray:
    if spec.dtype == tf.string:
        if not isinstance(values, list):
            raise RequestError(f'{spec.name}: give a list of {{"b64": ...}} films')
        if not values:
            raise RequestError(f"{spec.name}: no instances: send at least one")
        films = np.empty(len(values), dtype=object)
        films[:] = [_film(v, i, what) for i, v in enumerate(values)]
        return films
    try:
        array = np.asarray(values, dtype=spec.dtype.as_numpy_dtype)
    except (TypeError, ValueError):
        raise RequestError(f"{spec.name}: not an array of {spec.dtype.name} numbers") from None
    if not spec.shape.is_compatible_with(array.shape):
        raise RequestError(
            f"{spec.name}: shape {list(array.shape)} does not fit {spec.shape.as_list()}"
        )
    if array.ndim == 0 or len(array) == 0:
        raise RequestError(f"{spec.name}: no instances: send at least one")
    return array


def _film(value: Any, index: int, what: str) -> bytes:
    """One instance's film: base64 bytes of a PNG, JPEG or DICOM film, checked (so that a bad
    one is named here, not deep in the model), DICOM turned into the PNG the export reads."""
    if not (isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str)):
        raise RequestError(f'{what} {index}: give the film as {{"b64": "<base64 bytes>"}}')
    try:
        data = base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{what} {index}: not valid base64") from None
    try:
        return encoded_film(data)
    except ValueError as e:
        raise RequestError(f"{what} {index}: {e}") from None


def _to_rows(outputs: dict[str, np.ndarray]) -> list:
    if len(outputs) == 1:
        return next(iter(outputs.values())).tolist()
    n = len(next(iter(outputs.values())))
    return [{key: value[i].tolist() for key, value in outputs.items()} for i in range(n)]


def _to_columns(outputs: dict[str, np.ndarray]) -> Any:
    if len(outputs) == 1:
        return next(iter(outputs.values())).tolist()
    return {key: value.tolist() for key, value in outputs.items()}


GRACE_SECONDS = 30.0  # how long a stopping server lets requests in flight finish
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def serve(app: Flask, host: str, port: int, threads: int = 4, debug: bool = False) -> None:
    """Serve `app` on `host:port` until Ctrl-C or SIGTERM (a service manager's or a container
    runtime's stop).

    Waitress, a production WSGI server, with `threads` request threads; on a stop signal it
    refuses new connections, lets the requests in flight finish and their answers go out (at
    most `GRACE_SECONDS`), then returns. `debug`: werkzeug's development server instead.
    """
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    try:
        if debug:
            _serve_debug(app, host, port, stop)
            return
        server = waitress.server.create_server(
            app, host=host, port=port, threads=threads, ident="mura-tf"
        )
        while not stop.is_set():
            server.asyncore.loop(timeout=0.2, map=server._map, use_poll=True, count=1)
        _drain(server, GRACE_SECONDS)
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)


def _drain(server, grace: float) -> None:
    """Stop accepting, serve what is in flight until it is answered or `grace` runs out."""
    server.accepting = False
    waitress.wasyncore.dispatcher.close(server)  # the listening socket only
    deadline = time.monotonic() + grace

    def busy() -> bool:
        return any(
            getattr(ch, "requests", None) or getattr(ch, "request", None)
            or getattr(ch, "total_outbufs_len", 0)
            for ch in list(server._map.values())
        )  # fmt: skip

    while busy() and time.monotonic() < deadline:
        server.asyncore.loop(timeout=0.05, map=server._map, use_poll=True, count=1)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
    waitress.wasyncore.close_all(server._map)


def _serve_debug(app: Flask, host: str, port: int, stop: threading.Event) -> None:
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    while not stop.wait(0.5):
        pass
    server.shutdown()
