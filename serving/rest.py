"""TF Serving's REST API over the same ModelManager as the gRPC server.

Endpoints (JSON, as documented for ``tensorflow_model_server --rest_api_port``):

* ``POST /v1/models/<name>[/versions/<v>]:predict`` with ``{"signature_name"?,
  "instances": [...]}`` (row format: one entry per example; an entry is the
  value of the only input, or an object of named inputs) answered with
  ``{"predictions": [...]}``, or ``{"inputs": ...}`` (columnar) answered with
  ``{"outputs": ...}``. Rows must be rectangular: pad histories with ``""``.
* ``GET /v1/models/<name>[/versions/<v>]``: version statuses.
* ``GET /v1/models/<name>[/versions/<v>]/metadata``: the signature defs.

Errors are ``{"error": message}`` with the HTTP status TF Serving uses for the
gRPC code (NOT_FOUND 404, INVALID_ARGUMENT 400, INTERNAL 500).
"""

from __future__ import annotations

import json
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format

from serving.server import LOG, ModelManager, ServingError, State, model_metadata, model_status
from serving.signature import SERVING_SIGNATURE

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>:predict|/metadata)?$"
)
_HTTP_STATUS = {
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
}


def _to_array(value: Any, dtype: tf.DType, what: str) -> np.ndarray:
    """A JSON value as a rectangular array of ``dtype`` (strings as UTF-8 bytes)."""
    try:
        if dtype != tf.string:
            return np.array(value, dtype=dtype.as_numpy_dtype)
        array = np.array(value, dtype=object)
        for element in array.flat:
            if not isinstance(element, str):
                kind = (
                    'a list (rows have different lengths; pad with "")'
                    if isinstance(element, list)
                    else type(element).__name__
                )
                raise ValueError(f"expected strings, found {kind}")
        flat = [element.encode("utf-8") for element in array.flat]
        return np.array(flat, dtype=object).reshape(array.shape)
    except (TypeError, ValueError) as e:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT, f"{what}: cannot read as {dtype.name}: {e}"
        ) from None


def _jsonable(array: np.ndarray) -> Any:
    if array.dtype != object:
        return array.tolist()
    flat = [v.decode("utf-8") if isinstance(v, bytes) else v for v in array.flat]
    return np.array(flat, dtype=object).reshape(array.shape).tolist()


def rest_predict(
    manager: ModelManager, name: str, version: int | None, body: Any
) -> dict[str, Any]:
    """The JSON answer of ``:predict``; raises ServingError for a bad request."""
    if not isinstance(body, dict):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT, "the request body must be a JSON object"
        )
    servable = manager.servable(name, version)
    signature_name = body.get("signature_name") or SERVING_SIGNATURE
    signature = servable.signature(signature_name)
    specs = {k: tf.dtypes.as_dtype(v.dtype) for k, v in signature.inputs.items()}
    if ("instances" in body) == ("inputs" in body):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            'the request needs exactly one of "instances" or "inputs"',
        )
    row_format = "instances" in body
    payload = body["instances"] if row_format else body["inputs"]
    if row_format:
        if not isinstance(payload, list):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, '"instances" must be a list')
        if payload and all(isinstance(row, dict) for row in payload):
            columns = {k: [row.get(k) for row in payload] for k in set().union(*payload)}
        elif len(specs) == 1:
            columns = {next(iter(specs)): payload}
        else:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signature {signature_name!r} has inputs {sorted(specs)}: "
                "instances must be objects",
            )
    else:
        columns = payload if isinstance(payload, dict) else {next(iter(specs)): payload}
    unknown = sorted(set(columns) - set(specs))
    if unknown:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"unknown input name(s) {unknown} for signature {signature_name!r}; "
            f"expected: {sorted(specs)}",
        )
    arrays = {k: _to_array(v, specs[k], f"input {k!r}") for k, v in columns.items()}
    outputs = servable.run(signature_name, arrays)
    if not row_format:
        return {
            "outputs": (
                _jsonable(next(iter(outputs.values())))
                if len(outputs) == 1
                else {k: _jsonable(v) for k, v in outputs.items()}
            )
        }
    rows = {k: _jsonable(v) for k, v in outputs.items()}
    if len(rows) == 1:
        return {"predictions": next(iter(rows.values()))}
    batch = len(next(iter(rows.values())))
    return {"predictions": [{k: rows[k][i] for k in rows} for i in range(batch)]}


class _Handler(BaseHTTPRequestHandler):
    manager: ModelManager  # set on the subclass built by start_rest_server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (http.server's signature)
        LOG.debug("REST %s", format % args)

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[str, int | None, str]:
        match = _PATH.match(self.path.split("?", 1)[0])
        if not match:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"no such endpoint: {self.path}")
        version = int(match["version"]) if match["version"] else None
        return match["name"], version, match["rest"] or ""

    def _handle(self, method: str) -> None:
        try:
            name, version, action = self._route()
            if method == "POST" and action == ":predict":
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except json.JSONDecodeError as e:
                    raise ServingError(
                        grpc.StatusCode.INVALID_ARGUMENT, f"malformed JSON: {e}"
                    ) from None
                self._send(HTTPStatus.OK, rest_predict(self.manager, name, version, body))
            elif method == "GET" and action == "/metadata":
                self._send(HTTPStatus.OK, _metadata_json(self.manager, name, version))
            elif method == "GET" and action == "":
                self._send(HTTPStatus.OK, _status_json(self.manager, name, version))
            else:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"no {method} endpoint {self.path}")
        except ServingError as e:
            self._send(
                _HTTP_STATUS.get(e.code, HTTPStatus.INTERNAL_SERVER_ERROR), {"error": e.message}
            )
        except Exception as e:  # noqa: BLE001  (a bug must cost one request, not the server)
            LOG.exception("REST request failed")
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(e).__name__}: {e}"})

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")


def _spec(name: str, version: int | None) -> Any:
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    return request


def _metadata_json(manager: ModelManager, name: str, version: int | None) -> dict[str, Any]:
    request = _spec(name, version)
    request.metadata_field.append("signature_def")
    response = model_metadata(manager, request)
    from tensorflow_serving.apis import get_model_metadata_pb2

    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return {
        "model_spec": {
            "name": name,
            "signature_name": "",
            "version": str(response.model_spec.version.value),
        },
        "metadata": {
            "signature_def": json_format.MessageToDict(signatures, preserving_proto_field_name=True)
        },
    }


def _status_json(manager: ModelManager, name: str, version: int | None) -> dict[str, Any]:
    response = model_status(manager, _spec(name, version))
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": State.Name(s.state),
                "status": {
                    "error_code": "OK" if not s.status.error_code else str(s.status.error_code),
                    "error_message": s.status.error_message,
                },
            }
            for s in response.model_version_status
        ]
    }


def start_rest_server(
    manager: ModelManager, *, host: str = "127.0.0.1", port: int = 8501
) -> ThreadingHTTPServer:
    """Serves REST in a daemon thread; ``port=0`` picks a free port (``server_address[1]``)."""
    handler = type("RestHandler", (_Handler,), {"manager": manager})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="tfseq-rest", daemon=True).start()
    return server
