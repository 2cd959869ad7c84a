"""TF Serving's REST API over a ModelManager, served by waitress with bounded bodies, connections and threads.

Endpoints (JSON, as documented for ``tensorflow_model_server --rest_api_port``):

* ``POST /v1/models/<name>[/versions/<v>]:predict`` with ``{"signature_name"?,
  "instances": [...]}`` (row format: one entry per example; an entry is the
  value of the only input, or an object of named inputs) answered with
  ``{"predictions": [...]}``, or ``{"inputs": ...}`` (columnar) answered with
  ``{"outputs": ...}``. Rows must be rectangular: pad histories with ``""``.
* ``GET /v1/models/<name>[/versions/<v>]``: version statuses; the served
  version's also holds ``tfseq``: its top-K search and fallback counters
  (``serving.servable.Servable.details``).
* ``GET /v1/models/<name>[/versions/<v>]/metadata``: the signature defs.

Errors are ``{"error": message}`` with the HTTP status TF Serving uses for the
gRPC code (``_HTTP_STATUS``: NOT_FOUND 404, INVALID_ARGUMENT 400,
RESOURCE_EXHAUSTED 429, INTERNAL 500, ...); a wrong method on a known path is
405. The HTTP layer is waitress: it reads whole requests on one I/O thread
before a worker sees them, so slow or half-sent bodies hold no worker; a body
over ``max_body_bytes`` is answered 413 and a malformed ``Content-Length`` 400
before the application runs. On top of waitress, as production HTTP servers
do (nginx's ``client_header_timeout`` and ``limit_conn``, Apache's
``mod_reqtimeout``), a client that trickles a request (a header line now and
then: never idle, never done) is closed once ``request_timeout_s`` has passed
since the request began (since the connection opened, for its first request),
and one client address holds at most ``max_connections_per_client`` of the
``max_connections``: a further connection is answered 503 and closed. A
connection idle between requests for ``timeout_s`` is closed.

This module imports :mod:`serving.servable` only, never :mod:`serving.server`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import threading
import time
from http import HTTPStatus
from typing import Any, Callable, Iterable

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from serving.servable import LOG, Limits, ModelManager, ServingError, State, model_metadata, model_status
from serving.signature import SERVING_SIGNATURE

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>:predict|/metadata)?$")
# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc); anything else is 500.
_HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.DEADLINE_EXCEEDED: HTTPStatus.GATEWAY_TIMEOUT,
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: HTTPStatus.CONFLICT,
    grpc.StatusCode.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
    grpc.StatusCode.RESOURCE_EXHAUSTED: HTTPStatus.TOO_MANY_REQUESTS,
    grpc.StatusCode.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.ABORTED: HTTPStatus.CONFLICT,
    grpc.StatusCode.OUT_OF_RANGE: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
    grpc.StatusCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    grpc.StatusCode.UNAUTHENTICATED: HTTPStatus.UNAUTHORIZED,
}


@dataclasses.dataclass(frozen=True)
class RestOptions:
    """The REST server's resource bounds.

    Attributes:
      threads: worker threads running requests (TF Serving's ``--rest_api_num_threads``).
      max_body_bytes: largest request body; larger is answered 413 unread.
      timeout_s: a connection with no traffic for this long (idle, or stalled mid-request) is closed.
      request_timeout_s: a request's headers and body must all arrive within this long of its first byte
        (of the connection's opening, for its first request), however steadily they trickle; else the
        connection is closed.
      max_connections: open connections at most; further ones wait in the listen backlog.
      max_connections_per_client: open connections from one client address at most; a further one is
        answered 503 and closed. Behind a proxy every client has the proxy's address: raise it to
        ``max_connections`` there.
      backlog: the listen queue length.
    """

    threads: int = 8
    max_body_bytes: int = 8 * 1024 * 1024
    timeout_s: float = 30.0
    request_timeout_s: float = 30.0
    max_connections: int = 256
    max_connections_per_client: int = 64
    backlog: int = 1024

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"REST {field.name} must be a finite number > 0, got {value}")


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
    except (TypeError, ValueError, OverflowError) as e:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"{what}: cannot read as {dtype.name}: {e}") from None


def _check_extent(name: str, value: Any, limits: Limits) -> None:
    """Applies ``limits`` to a JSON input's outer two list levels before it becomes an array."""
    if not isinstance(value, list):
        return
    limits.check_shape(name, [len(value)])  # the batch first: bounds the loop below
    widths = [len(row) for row in value if isinstance(row, list)]
    if widths:
        limits.check_shape(name, [len(value), max(widths)])


def _jsonable(array: np.ndarray) -> Any:
    if array.dtype != object:
        return array.tolist()
    flat = [v.decode("utf-8") if isinstance(v, bytes) else v for v in array.flat]
    return np.array(flat, dtype=object).reshape(array.shape).tolist()


def rest_predict(manager: ModelManager, name: str, version: int | None, body: Any) -> dict[str, Any]:
    """The JSON answer of ``:predict``; raises ServingError for a bad request."""
    if not isinstance(body, dict):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "the request body must be a JSON object")
    servable = manager.servable(name, version)
    signature_name = body.get("signature_name") or SERVING_SIGNATURE
    if not isinstance(signature_name, str):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, '"signature_name" must be a string')
    signature = servable.signature(signature_name)
    specs = {k: tf.dtypes.as_dtype(v.dtype) for k, v in signature.inputs.items()}
    if ("instances" in body) == ("inputs" in body):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, 'the request needs exactly one of "instances" or "inputs"')
    row_format = "instances" in body
    required = servable.required_inputs(signature_name)  # a bare value goes to the one input without a default
    payload = body["instances"] if row_format else body["inputs"]
    if row_format:
        if not isinstance(payload, list) or not payload:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, '"instances" must be a non-empty list')
        servable.limits.check_shape("instances", [len(payload)])
        if all(isinstance(row, dict) for row in payload):
            columns = {k: [row.get(k) for row in payload] for k in set().union(*payload)}
        elif len(required) == 1:
            columns = {required[0]: payload}
        else:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signature {signature_name!r} has inputs {sorted(specs)}: instances must be objects",
            )
    elif isinstance(payload, dict):
        columns = payload
    elif len(required) == 1:
        columns = {required[0]: payload}
    else:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"signature {signature_name!r} has inputs {sorted(specs)}: \"inputs\" must be an object",
        )
    unknown = sorted(set(columns) - set(specs))
    if unknown:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"unknown input name(s) {unknown} for signature {signature_name!r}; expected: {sorted(specs)}",
        )
    for key, value in columns.items():
        _check_extent(key, value, servable.limits)
    arrays = {k: _to_array(v, specs[k], f"input {k!r}") for k, v in columns.items()}
    for key, array in arrays.items():
        if array.dtype == object:
            servable.limits.check_id_lengths(key, array.flat)
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


def _spec(name: str, version: int | None) -> get_model_metadata_pb2.GetModelMetadataRequest:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    return request


def _metadata_json(manager: ModelManager, name: str, version: int | None) -> dict[str, Any]:
    request = _spec(name, version)
    request.metadata_field.append("signature_def")
    response = model_metadata(manager, request)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(response.model_spec.version.value)},
        "metadata": {"signature_def": json_format.MessageToDict(signatures, preserving_proto_field_name=True)},
    }


def _status_json(manager: ModelManager, name: str, version: int | None) -> dict[str, Any]:
    """TF Serving's status JSON; the served version's entry also holds ``tfseq`` (``Servable.details``)."""
    response = model_status(manager, _spec(name, version))
    details = manager.details(name)
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": State.Name(s.state),
                "status": {
                    "error_code": "OK" if not s.status.error_code else str(s.status.error_code),
                    "error_message": s.status.error_message,
                },
                **({"tfseq": details[s.version]} if s.version in details else {}),
            }
            for s in response.model_version_status
        ]
    }


def _answer(manager: ModelManager, method: str, path: str, read_body: Callable[[], bytes]) -> tuple[int, Any]:
    """``(HTTP status, JSON payload)`` of one request; ServingErrors become their TF Serving status."""
    match = _PATH.match(path)
    if not match:
        return HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {path}"}
    name, action = match["name"], match["rest"] or ""
    version = int(match["version"]) if match["version"] else None
    wanted = "POST" if action == ":predict" else "GET"
    if method != wanted:
        return HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{path} takes {wanted}, not {method}"}
    try:
        if action == ":predict":
            try:
                raw = read_body()
                body = json.loads(raw) if raw.strip() else None
            except (ValueError, RecursionError) as e:  # bad JSON, bad UTF-8, absurd nesting
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"malformed JSON: {e}") from None
            return HTTPStatus.OK, rest_predict(manager, name, version, body)
        if action == "/metadata":
            return HTTPStatus.OK, _metadata_json(manager, name, version)
        return HTTPStatus.OK, _status_json(manager, name, version)
    except ServingError as e:
        return _HTTP_STATUS.get(e.code, HTTPStatus.INTERNAL_SERVER_ERROR), {"error": e.message}
    except Exception as e:  # noqa: BLE001  (a bug must cost one request, not the server)
        LOG.exception("REST request failed")
        return HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(e).__name__}: {e}"}


def make_app(manager: ModelManager) -> Callable[[dict, Callable], Iterable[bytes]]:
    """The WSGI application of the REST API over ``manager``."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        status, payload = _answer(
            manager, environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ["wsgi.input"].read
        )
        data = json.dumps(payload).encode("utf-8")
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Client Closed Request"
        start_response(
            f"{int(status)} {phrase}", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [data]

    return app


class _Channel(HTTPChannel):
    """A waitress connection that remembers when the request it is receiving began (``None``: none is)."""

    def __init__(self, server: "_Server", sock: Any, addr: Any, adj: Adjustments, map: Any = None) -> None:
        super().__init__(server, sock, addr, adj, map=map)
        self.request_began: float | None = time.monotonic()  # the first request's clock runs from the accept

    def received(self, data: bytes) -> bool:
        if self.request_began is None and data:
            self.request_began = time.monotonic()
        result = super().received(data)
        if self.request is None:  # every byte so far belongs to whole requests
            self.request_began = None
        return result


class _Server(TcpWSGIServer):
    """waitress's TCP server with a per-request deadline and a per-client connection cap.

    All of it runs on the I/O thread (the asyncore loop), like the rest of waitress's connection handling.
    """

    channel_class = _Channel

    def __init__(self, application: Any, options: RestOptions, **kwargs: Any) -> None:
        self.options = options
        self._next_check = 0.0
        self._refused: set[str] = set()  # client addresses warned about, until they hold fewer connections
        super().__init__(application, **kwargs)

    def _channels(self) -> list[_Channel]:
        return [c for c in self._map.values() if isinstance(c, _Channel) and c.connected]

    def handle_accept(self) -> None:
        try:
            accepted = self.accept()
        except OSError:
            return
        if accepted is None:
            return
        conn, addr = accepted
        client = addr[0] if isinstance(addr, tuple) else str(addr)
        cap = self.options.max_connections_per_client
        if sum(c.addr[0] == client for c in self._channels()) < cap:
            self._refused.discard(client)
            try:
                self.set_socket_options(conn)
            except OSError:
                conn.close()
                return
            self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)
            return
        if client not in self._refused:  # one line per burst from a client, not one per connection
            LOG.warning(
                "refusing REST connections from %s: it holds %d open (--rest_max_connections_per_client)",
                client,
                cap,
            )
            self._refused.add(client)
        body = json.dumps({"error": f"too many connections from {client}: at most {cap} at once"}).encode()
        reply = (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        try:
            conn.setblocking(False)
            conn.send(reply)  # best effort: a fresh socket's send buffer takes it whole
        except OSError:
            pass
        conn.close()

    def maintenance(self, now: float) -> None:
        """Closes connections idle for ``timeout_s`` and those whose request is older than ``request_timeout_s``.

        Replaces waitress's idle check, which rounds its timeout down to whole seconds.
        """
        clock = time.monotonic()
        if clock < self._next_check:
            return
        self._next_check = clock + min(1.0, self.options.timeout_s / 4, self.options.request_timeout_s / 4)
        late = 0
        channels = self._channels()
        self._refused &= {channel.addr[0] for channel in channels}  # forget clients that left
        for channel in channels:
            if channel.requests or channel.will_close:  # being answered, or closing already
                continue
            if channel.request_began is not None and clock - channel.request_began > self.options.request_timeout_s:
                channel.will_close = True
                late += 1
            elif now - channel.last_activity > self.options.timeout_s:
                channel.will_close = True
        if late:
            LOG.warning(
                "closed %d REST connection(s) that had not sent a whole request within %g s "
                "(--rest_request_timeout_seconds)",
                late,
                self.options.request_timeout_s,
            )


class RestServer:
    """The REST API on a waitress server running in a daemon thread; ``port=0`` picks a free port.

    Args:
      manager: the model manager the requests go to.
      host: the interface to bind.
      port: the port (0 = any free one; read :attr:`port`).
      options: the resource bounds.
    """

    def __init__(
        self, manager: ModelManager, *, host: str = "127.0.0.1", port: int = 8501, options: RestOptions | None = None
    ) -> None:
        options = options or RestOptions()
        # waitress warns "Task queue depth is N" whenever more requests wait than threads are idle: the
        # normal state of any burst over --rest_api_num_threads (one line per request queued in a burst).
        # The queue is bounded by --rest_max_connections, so the warning reports nothing to act on.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        adjustments = Adjustments(
            host=host,
            port=port,
            threads=options.threads,
            max_request_body_size=options.max_body_bytes,
            channel_timeout=math.ceil(options.timeout_s),  # unused: _Server.maintenance checks it, unrounded
            cleanup_interval=0,  # _Server.maintenance paces itself
            # waitress counts its listening socket and its trigger as connections
            connection_limit=options.max_connections + 2,
            backlog=options.backlog,
            asyncore_use_poll=True,  # select() stops at file descriptor 1024
            ident="tfseq",
        )
        if len(adjustments.listen) != 1:
            raise OSError(f"REST host {host!r} resolves to {len(adjustments.listen)} addresses; give one address")
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(options.threads)
        self._server = _Server(
            make_app(manager),
            options,
            map={},
            dispatcher=dispatcher,
            adj=adjustments,
            sockinfo=adjustments.listen[0],
        )
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tfseq-rest", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def _run(self) -> None:
        try:
            self._server.run()
        except Exception:  # noqa: BLE001  (closing sockets under the loop at stop() may raise here)
            if not self._stopping:
                LOG.exception("the REST server stopped")

    def stop(self) -> None:
        self._stopping = True
        self._server.task_dispatcher.shutdown(timeout=5)
        wasyncore.close_all(self._server._map)
        self._thread.join(timeout=5)


def start_rest_server(
    manager: ModelManager, *, host: str = "127.0.0.1", port: int = 8501, options: RestOptions | None = None
) -> RestServer:
    """Serves REST in a daemon thread; returns the running :class:`RestServer`."""
    return RestServer(manager, host=host, port=port, options=options)
