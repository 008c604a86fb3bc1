"""TF Serving's REST API over a run's export, as a Flask app (`mura-tf serve`).

The routes and JSON shapes are TF Serving's (https://www.tensorflow.org/tfx/serving/api_rest):

    GET  /v1/models/NAME            model status: one version, AVAILABLE
    GET  /v1/models/NAME/metadata   the export's signatures (inputs, outputs, dtypes, shapes)
    POST /v1/models/NAME:predict    {"signature_name": ..., "instances": [...]} (row format)
                                    or {"inputs": ...} (columnar); string inputs as
                                    {"b64": "..."}; answers {"predictions": ...} or
                                    {"outputs": ...}

A client that speaks to TF Serving speaks to this server unchanged. Encoded films (the string
inputs of `serve_images`) may also be DICOM: they are turned into the PNG the export reads
(`mura_tf.data.dicom`). `/` is the reader page (`mura_tf.serving.reader`).

Every error is a 4xx with `{"error": "<one line>"}` naming the
instance where one is at fault; the server reads and writes no path a client names.
"""

from __future__ import annotations

import base64
import binascii
import os
import signal
from typing import Any

import numpy as np
import tensorflow as tf
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import run_simple

from mura_tf.evaluators.thresholds import PROTOCOL, Threshold
from mura_tf.serving.load import cams_of, find_export, load_export
from mura_tf.serving.reader import PAGE, Upload, encoded_film, read_study, run_summary

DEFAULT_SIGNATURE = "serving_default"
MAX_REQUEST_BYTES = 64 * 1024 * 1024
VERSION = "1"


class RequestError(Exception):
    """A request the server cannot answer; the message is the one line the client gets, with
    HTTP `status` (400, or 404 for a model name it does not serve)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def create_app(
    model: str | os.PathLike[str], name: str = "mura", threshold: Threshold = PROTOCOL
) -> Flask:
    """The Flask app serving `model` (a run folder or its `export/`) as TF Serving would serve
    a model called `name`, with the reader page (`mura_tf.serving.reader`) at `/` deciding
    studies at `threshold`."""
    export = find_export(model)
    loaded = load_export(export)  # one load serves the REST API and the reader's Grad-CAM
    signatures = dict(loaded.signatures)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    cams = cams_of(loaded, export)
    summary = run_summary(model)

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
        return jsonify(read_study(uploads, cams, threshold))

    def check_name(model_name: str) -> None:
        if model_name != name:
            raise RequestError(f"Servable not found for request: Latest({model_name})", 404)

    @app.errorhandler(RequestError)
    def bad_request(error: RequestError):
        return jsonify(error=str(error)), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):  # 404, 405, 413: TF Serving's JSON, one line
        return jsonify(error=f"{error.code} {error.name}: {error.description}"), error.code

    @app.get("/v1/models/<model_name>")
    def status(model_name: str):
        check_name(model_name)
        state = {"error_code": "OK", "error_message": ""}
        return jsonify(
            model_version_status=[{"version": VERSION, "state": "AVAILABLE", "status": state}]
        )

    @app.get("/v1/models/<model_name>/metadata")
    def metadata(model_name: str):
        check_name(model_name)
        defs = {key: _signature_def(fn) for key, fn in signatures.items()}
        return jsonify(
            model_spec={"name": name, "signature_name": "", "version": VERSION},
            metadata={"signature_def": {"signature_def": defs}},
        )

    @app.post("/v1/models/<model_name>:predict")
    def predict(model_name: str):
        check_name(model_name)
        body = request.get_json(silent=True)
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
            inputs = _from_rows(body["instances"], specs)
        else:
            inputs = _from_columns(body["inputs"], specs)
        try:
            outputs = {k: v.numpy() for k, v in fn(**inputs).items()}
        except (tf.errors.InvalidArgumentError, ValueError) as e:
            raise RequestError(f"the model could not run on the input: {_first_line(e)}") from None
        if "instances" in body:
            return jsonify(predictions=_to_rows(outputs))
        return jsonify(outputs=_to_columns(outputs))

    return app


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


def _from_rows(instances: Any, specs: dict) -> dict[str, tf.Tensor]:
    if not isinstance(instances, list) or not instances:
        raise RequestError('"instances" must be a non-empty list')
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


def _from_columns(inputs: Any, specs: dict) -> dict[str, tf.Tensor]:
    names = list(specs)
    if not (isinstance(inputs, dict) and set(inputs) == set(names)):
        inputs = {names[0]: inputs} if len(names) == 1 else inputs
    if not isinstance(inputs, dict) or set(inputs) != set(names):
        raise RequestError(f'"inputs" must name {", ".join(names)}')
    return {key: _tensor(inputs[key], specs[key], "input") for key in names}


def _tensor(values: Any, spec: tf.TensorSpec, what: str) -> tf.Tensor:
    if spec.dtype == tf.string:
        if not isinstance(values, list):
            raise RequestError(f'{spec.name}: give a list of {{"b64": ...}} films')
        return tf.constant([_film(v, i, what) for i, v in enumerate(values)], tf.string)
    try:
        array = np.asarray(values, dtype=spec.dtype.as_numpy_dtype)
    except (TypeError, ValueError):
        raise RequestError(f"{spec.name}: not an array of {spec.dtype.name} numbers") from None
    if not spec.shape.is_compatible_with(array.shape):
        raise RequestError(
            f"{spec.name}: shape {list(array.shape)} does not fit {spec.shape.as_list()}"
        )
    return tf.constant(array)


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


class _Terminated(Exception):
    """SIGTERM arrived: the server stops as it does on Ctrl-C."""


def _terminate(signum, frame) -> None:
    raise _Terminated


def serve(app: Flask, host: str, port: int) -> None:
    """Serve `app` with werkzeug's threaded server until Ctrl-C or SIGTERM (a service
    manager's or a container runtime's stop), then close the socket and return."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        run_simple(host, port, app, threaded=True)
    except _Terminated:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
