"""The model server's gRPC front end (TF Serving's API, on the official protos) and its command line.

``tensorflow_model_server`` is not installable from the registries our
machines reach, so this server speaks the same API for development and tests::

    python -m serving.server --model_base_path DIR --model_name NAME --port 8500 [--rest_port 8501]

``DIR`` holds integer version directories (TF Serving's layout, written by
``serving/export.py``). What is served, how versions are loaded and retried,
and how requests are validated live in :mod:`serving.servable`; the REST front
end is :mod:`serving.rest`. This module adds the gRPC services:
``PredictionService.Predict`` and ``GetModelMetadata`` (``signature_def``),
``ModelService.GetModelStatus``; Classify/Regress/MultiInference answer
UNIMPLEMENTED. A request never takes the server down.

TF Serving's flag names are accepted beside ours: ``--rest_api_port`` (0 = no
REST, its default), ``--file_system_poll_wait_seconds``,
``--rest_api_num_threads``. gRPC messages are at most 64 MiB by default
(``--grpc_max_message_bytes``; TF Serving allows 2^31 - 1, but a worker
holds a request up to three times over: the bytes gRPC hands to Python, the
parsed message, and one string value copied while its length is checked); the
per-request caps (``--max_batch_size``, ``--max_history_length``,
``--max_elements``, ``--max_id_bytes``) bound what a request can make the
server allocate. A message that does not parse is refused with
INVALID_ARGUMENT and one warning line. Requests are answered by a thread pool
(``--max_workers``), each TF op on one thread by default (``--intra_op_threads``).

Every numeric flag has a range, checked before anything starts; a value out of
it, or a port already in use, is one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import signal
import sys
import threading
from concurrent import futures
from typing import Any, Callable, NoReturn, Sequence

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from serving.rest import RestOptions, RestServer, start_rest_server
from serving.servable import (  # noqa: F401  (re-exported: the names callers of serving.server use)
    LOG,
    Limits,
    ModelManager,
    Servable,
    ServingError,
    State,
    configure_threads,
    model_metadata,
    model_status,
    predict,
    tensor_proto,
)

# TF Serving's server.cc: builder.SetMaxMessageSize(tensorflow::kint32max), for both directions: our ceiling.
GRPC_MAX_MESSAGE_BYTES = 2**31 - 1
# Our default: 64 MiB holds 262,144 IDs (--max_elements) of 256 bytes (--max_id_bytes) less their framing, and
# each gRPC worker may hold a request three times over (see the module docstring).
DEFAULT_GRPC_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class _Malformed:
    """What a request that does not parse becomes, so that its RPC can answer INVALID_ARGUMENT."""

    message_type: str
    size: int
    error: str


class MalformedMessageInterceptor(grpc.ServerInterceptor):
    """Turns a request that fails to parse into INVALID_ARGUMENT and one warning line.

    gRPC's own handling logs a traceback ("Exception deserializing request!")
    and answers INTERNAL. Every unary-unary method's deserializer is wrapped
    so that it never raises.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        method = handler_call_details.method
        with self._lock:
            cached = self._handlers.get(method)
        if cached is not None:
            return cached
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        parse, behaviour = handler.request_deserializer, handler.unary_unary
        message_type = getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)
        type_name = message_type.full_name if message_type is not None else method

        def lenient(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception as e:  # noqa: BLE001  (protobuf's DecodeError, or anything else a parser raises)
                return _Malformed(type_name, len(data), str(e) or type(e).__name__)

        def answer(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, _Malformed):
                LOG.warning(
                    "refused a malformed %s request from %s: %d bytes that are not a %s",
                    method,
                    context.peer(),
                    request.size,
                    request.message_type,
                )
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"malformed request: {request.size} bytes that do not parse as {request.message_type} "
                    f"({request.error})",
                )
            return behaviour(request, context)

        wrapped = handler._replace(request_deserializer=lenient, unary_unary=answer)
        with self._lock:
            self._handlers[method] = wrapped
        return wrapped


def _answer(context: grpc.ServicerContext, work: Callable[[], Any]) -> Any:
    """Runs ``work``; a ServingError or any other failure becomes a status, never a crash."""
    try:
        return work()
    except ServingError as e:
        code, message = e.code, e.message
    except Exception as e:  # noqa: BLE001  (a bug must cost one request, not the server)
        LOG.exception("request failed")
        code, message = grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}"
    context.abort(code, message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> Any:
        return _answer(context, lambda: predict(self.manager, request))

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _answer(context, lambda: model_metadata(self.manager, request))

    def _unimplemented(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "only Predict and GetModelMetadata are served (the SavedModel has no classify/regress signature)",
        )

    Classify = Regress = MultiInference = _unimplemented


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _answer(context, lambda: model_status(self.manager, request))


@dataclasses.dataclass
class ServerHandle:
    """A running server: its bound ports, its model manager, and ``stop()``."""

    port: int
    rest_port: int | None
    manager: ModelManager
    _grpc_server: grpc.Server
    _rest_server: RestServer | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace_s: float | None = 1.0) -> None:
        self.manager.stop()
        if self._rest_server is not None:
            self._rest_server.stop()
        self._grpc_server.stop(grace_s).wait()

    def wait(self) -> None:
        self._grpc_server.wait_for_termination()


def serve(
    model_base_path: str,
    model_name: str,
    *,
    port: int = 8500,
    rest_port: int | None = None,
    host: str = "127.0.0.1",
    poll_seconds: float = 2.0,
    max_workers: int = 8,
    limits: Limits | None = None,
    rest_options: RestOptions | None = None,
    grpc_max_message_bytes: int = DEFAULT_GRPC_MAX_MESSAGE_BYTES,
) -> ServerHandle:
    """Binds the gRPC port, loads the highest version, starts gRPC (and REST) servers and the poller.

    Returns at once. ``port=0`` / ``rest_port=0`` pick free ports (read them
    from the handle). A port that cannot be bound is an ``OSError`` naming it,
    raised before any version is loaded.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    if not 0 < grpc_max_message_bytes <= GRPC_MAX_MESSAGE_BYTES:
        raise ValueError(f"grpc_max_message_bytes must be in 1..{GRPC_MAX_MESSAGE_BYTES}, got {grpc_max_message_bytes}")
    manager = ModelManager(model_name, model_base_path, poll_seconds=poll_seconds, limits=limits)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tfseq-grpc"),
        interceptors=[MalformedMessageInterceptor()],
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", grpc_max_message_bytes),
            ("grpc.max_send_message_length", grpc_max_message_bytes),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(manager), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")  # grpcio >= 1.50 raises; older ones return 0
    except RuntimeError:
        bound = 0
    if bound == 0:
        server.stop(None)
        raise OSError(f"cannot bind gRPC port {host}:{port}: it is in use, or not an address of this machine")
    manager.start()
    server.start()
    handle = ServerHandle(port=bound, rest_port=None, manager=manager, _grpc_server=server)
    if rest_port is not None:
        try:
            handle._rest_server = start_rest_server(manager, host=host, port=rest_port, options=rest_options)
        except OSError as e:
            handle.stop(grace_s=None)
            raise OSError(f"cannot bind REST port {host}:{rest_port}: {e}") from None
        handle.rest_port = handle._rest_server.port
    return handle


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one ``error:`` line on stderr (exit status 2), without the usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr, flush=True)
        raise SystemExit(2)


def _integer(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in ``low..high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer in {low}..{high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
        return value

    return parse


def _seconds(low: float, high: float, *, once_at_or_below_zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds in ``low..high`` (or <= 0, where that means "once")."""
    allowed = f"{'<= 0 or ' if once_at_or_below_zero else ''}a finite number in {low:g}..{high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        if once_at_or_below_zero and value <= 0:
            return value
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value:g}")
        return value

    return parse


PORT = _integer(0, 65535)
INT32_MAX = 2**31 - 1
DAY_S = 86400.0


def build_parser() -> argparse.ArgumentParser:
    limits, rest = Limits(), RestOptions()
    parser = _Parser(
        prog="python -m serving.server",
        description="Serves the highest version under --model_base_path over TF Serving's gRPC and REST APIs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--model_base_path", required=True, help="directory of integer version directories")
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--port", type=PORT, default=8500, help="gRPC port, 0..65535 (0 = any free port)")
    parser.add_argument(
        "--rest_port", type=PORT, default=None, help="REST port, 0..65535 (off unless given; 0 = any free port)"
    )
    parser.add_argument(
        "--rest_api_port",
        type=PORT,
        default=0,
        help="TF Serving's name for the REST port, 0..65535 (its meaning: 0 = no REST)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind; 0.0.0.0 for all")
    parser.add_argument(
        "--poll_seconds",
        "--file_system_poll_wait_seconds",
        dest="poll_seconds",
        type=_seconds(0.01, DAY_S, once_at_or_below_zero=True),
        default=2.0,
        help="how often to look for new versions, 0.01..86400 (<= 0: once, at start); also the first retry "
        "backoff of a version that failed to load",
    )
    parser.add_argument("--max_workers", type=_integer(1, 1024), default=8, help="gRPC request threads, 1..1024")
    parser.add_argument(
        "--intra_op_threads",
        type=_integer(0, 1024),
        default=1,
        help="threads per TF op, 0..1024 (default 1: requests run in parallel instead; 0 = TF's choice)",
    )
    parser.add_argument(
        "--inter_op_threads", type=_integer(0, 1024), default=0, help="TF inter-op threads, 0..1024 (0 = TF's choice)"
    )
    parser.add_argument(
        "--max_batch_size",
        type=_integer(1, INT32_MAX),
        default=limits.max_batch_size,
        help="most rows per request, 1..2^31 - 1 (INVALID_ARGUMENT)",
    )
    parser.add_argument(
        "--max_history_length",
        type=_integer(1, INT32_MAX),
        default=limits.max_history_length,
        help="most items per history, dimension 1, 1..2^31 - 1 (INVALID_ARGUMENT)",
    )
    parser.add_argument(
        "--max_elements",
        type=_integer(1, INT32_MAX),
        default=limits.max_elements,
        help="most elements per request, all inputs together, 1..2^31 - 1 (RESOURCE_EXHAUSTED)",
    )
    parser.add_argument(
        "--max_id_bytes",
        type=_integer(1, 1024 * 1024),
        default=limits.max_id_bytes,
        help="most bytes of one string value, a raw item or user ID in UTF-8, 1..1048576 (INVALID_ARGUMENT)",
    )
    parser.add_argument(
        "--grpc_max_message_bytes",
        type=_integer(1, GRPC_MAX_MESSAGE_BYTES),
        default=DEFAULT_GRPC_MAX_MESSAGE_BYTES,
        help="largest gRPC message received or sent, 1..2^31 - 1 (TF Serving's fixed size; larger: "
        "RESOURCE_EXHAUSTED)",
    )
    parser.add_argument(
        "--rest_api_num_threads",
        type=_integer(1, 1024),
        default=rest.threads,
        help="REST worker threads, 1..1024 (TF Serving's name)",
    )
    parser.add_argument(
        "--rest_max_body_bytes",
        type=_integer(1, INT32_MAX),
        default=rest.max_body_bytes,
        help="largest REST body, 1..2^31 - 1 (larger: HTTP 413)",
    )
    parser.add_argument(
        "--rest_timeout_seconds",
        type=_seconds(0.1, DAY_S),
        default=rest.timeout_s,
        help="close a REST connection silent for this long (idle, or stalled mid-request), 0.1..86400",
    )
    parser.add_argument(
        "--rest_request_timeout_seconds",
        type=_seconds(0.1, DAY_S),
        default=rest.request_timeout_s,
        help="close a REST connection whose request (headers and body) has not all arrived this long after it "
        "began, however steadily it trickles, 0.1..86400",
    )
    parser.add_argument(
        "--rest_max_connections",
        type=_integer(1, 65536),
        default=rest.max_connections,
        help="open REST connections at most, 1..65536 (further ones wait in the listen backlog)",
    )
    parser.add_argument(
        "--rest_max_connections_per_client",
        type=_integer(1, 65536),
        default=rest.max_connections_per_client,
        help="open REST connections from one client address at most, 1..65536 (further ones: HTTP 503); "
        "behind a proxy, set it to --rest_max_connections",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rest_api_port and args.rest_port is not None and args.rest_api_port != args.rest_port:
        parser.error(f"--rest_port {args.rest_port} and --rest_api_port {args.rest_api_port} disagree; give one")
    rest_port = args.rest_port if args.rest_port is not None else (args.rest_api_port or None)
    try:
        limits = Limits(args.max_batch_size, args.max_history_length, args.max_elements, args.max_id_bytes)
        rest_options = RestOptions(
            threads=args.rest_api_num_threads,
            max_body_bytes=args.rest_max_body_bytes,
            timeout_s=args.rest_timeout_seconds,
            request_timeout_s=args.rest_request_timeout_seconds,
            max_connections=args.rest_max_connections,
            max_connections_per_client=args.rest_max_connections_per_client,
        )
    except ValueError as e:
        parser.error(str(e))
    # force: an import before this (Beam, under quiet_startup) may have logged through the root logger, which
    # installs a WARNING-level handler and makes a plain basicConfig do nothing: no load/unload lines were logged.
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    configure_threads(args.intra_op_threads, args.inter_op_threads)
    try:
        handle = serve(
            args.model_base_path,
            args.model_name,
            port=args.port,
            rest_port=rest_port,
            host=args.host,
            poll_seconds=args.poll_seconds,
            max_workers=args.max_workers,
            limits=limits,
            rest_options=rest_options,
            grpc_max_message_bytes=args.grpc_max_message_bytes,
        )
    except (FileNotFoundError, OSError, ValueError) as e:
        print(f"error: {e}", flush=True)
        return 2
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the line below: a caller may stop us once it reads it
        signal.signal(sig, lambda *_: stopped.set())
    rest = f", REST on {args.host}:{handle.rest_port}" if handle.rest_port is not None else ""
    print(
        f"serving {args.model_name!r} from {args.model_base_path}: gRPC on {args.host}:{handle.port}{rest}",
        flush=True,
    )
    stopped.wait()
    handle.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
