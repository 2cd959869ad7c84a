"""The transport-free core of the model server: errors, limits, servable, model manager, predict/metadata/status.

``serving/server.py`` (gRPC) and ``serving/rest.py`` (REST) both import this
module and nothing of each other, so every front end raises and catches the one
:class:`ServingError`. Behaviour follows TF Serving's defaults:

* the highest version under ``model_base_path`` is served; a new version is
  loaded (and its warm-up requests replayed) in the background while the old
  one keeps answering, and takes over only once it has loaded. Deleting the
  served version rolls back to the highest one left.
* a version that fails to load (a corrupt file, a copy still in progress) is
  retried once its files change (their sizes or modification times), no sooner
  than an exponential backoff from the poll interval, capped at
  ``MAX_RETRY_BACKOFF_S``; each failed attempt is logged once, and the highest
  loadable version keeps serving meanwhile. A version whose files do not change
  is not retried.
* an input a request leaves out is filled from its SignatureDef default, if
  it has one (as TF Serving does); it is not counted in the batch-size check.
* versions are the folders whose names are ASCII digits (as TF Serving, which
  parses a name with ``strings::safe_strto64``: ``0003`` is version 3, loaded
  from ``0003/``; of two folders that name one version, the last in sorted order
  wins). Any other name (``²``, ``abc``, a number past int64) is ignored, with
  one warning per name; hidden names (an export in progress) silently.
* a request is validated before anything is materialised: a TensorProto must
  hold exactly as many values as its shape says, with no negative dimension and
  a known dtype; batch size, history length, elements per request and the
  bytes of one string value (an item or user ID) are capped by :class:`Limits`.
  Codes: NOT_FOUND for an unknown model or version, INVALID_ARGUMENT for a bad
  request, RESOURCE_EXHAUSTED over the element cap, INTERNAL for a failure
  inside the model.

Versions are loaded with plain ``tf.saved_model.load``: no tfseq code runs
inside a servable.

What the served version is and does (:meth:`Servable.details`) is part of the
status: its top-K search (``top_k_search`` of the export's
``tfseq_export.json``: exact, or the cluster search with its clusters and
probes), and counters of the ``serving_default`` rows answered since it was
loaded, of those answered by the popularity fallback (``fallback`` output) and
of those whose ``user_id`` was unknown (``unknown_user`` output); warm-up
requests are not counted. REST shows them in ``GET /v1/models/<name>`` (key
``tfseq`` of the served version's entry); gRPC in ``GetModelMetadata`` with
``metadata_field: "tfseq"`` (a ``google.protobuf.Struct``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import posixpath
import threading
import time
from typing import Any, Iterable, Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import struct_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2, status_pb2

from serving.signature import EXPORT_INFO_FILE, FALLBACK, SERVING_SIGNATURE, UNKNOWN_USER, version_folders
from serving.warmup import read_warmup_requests

LOG = logging.getLogger("tfseq.serving")
# Present in every TF2 SavedModel (runs table initialisers); not a servable signature.
INIT_OP_SIGNATURE = "__saved_model_init_op"
State = get_model_status_pb2.ModelVersionStatus.State
INTERNAL_ERROR = 13  # tensorflow.error.Code INTERNAL, the code of a failed load in GetModelStatus
MAX_RETRY_BACKOFF_S = 60.0
SIGNATURE_DEF_FIELD = "signature_def"  # GetModelMetadata's field, as TF Serving
TFSEQ_FIELD = "tfseq"  # GetModelMetadata's field of :meth:`Servable.details`

# Where a TensorProto keeps its values when tensor_content is empty: (field, values per element).
_VALUE_FIELDS: dict[int, tuple[str, int]] = {
    types_pb2.DT_STRING: ("string_val", 1),
    types_pb2.DT_FLOAT: ("float_val", 1),
    types_pb2.DT_DOUBLE: ("double_val", 1),
    types_pb2.DT_INT64: ("int64_val", 1),
    types_pb2.DT_INT32: ("int_val", 1),
    types_pb2.DT_INT16: ("int_val", 1),
    types_pb2.DT_INT8: ("int_val", 1),
    types_pb2.DT_UINT8: ("int_val", 1),
    types_pb2.DT_UINT16: ("int_val", 1),
    types_pb2.DT_UINT32: ("uint32_val", 1),
    types_pb2.DT_UINT64: ("uint64_val", 1),
    types_pb2.DT_BOOL: ("bool_val", 1),
    types_pb2.DT_HALF: ("half_val", 1),
    types_pb2.DT_BFLOAT16: ("half_val", 1),
    types_pb2.DT_COMPLEX64: ("scomplex_val", 2),
    types_pb2.DT_COMPLEX128: ("dcomplex_val", 2),
}


class ServingError(Exception):
    """A request the server refuses: a gRPC status code and a message naming the problem."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-request caps, checked on the declared shape before any tensor is materialised.

    Attributes:
      max_batch_size: most rows (dimension 0) of any input; more is INVALID_ARGUMENT.
      max_history_length: most entries in dimension 1 (a history's length); more is INVALID_ARGUMENT.
      max_elements: most elements of one request, all its inputs together; more is RESOURCE_EXHAUSTED.
      max_id_bytes: most bytes of one string value (a raw item or user ID, UTF-8); more is INVALID_ARGUMENT.
    """

    max_batch_size: int = 1024
    max_history_length: int = 10_000
    max_elements: int = 262_144
    max_id_bytes: int = 256

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) < 1:
                raise ValueError(f"{field.name} must be >= 1, got {getattr(self, field.name)}")

    def check_shape(self, name: str, shape: Sequence[int]) -> None:
        """Raises a ServingError if ``shape`` (already non-negative) breaks a cap."""
        if len(shape) >= 1 and shape[0] > self.max_batch_size:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input {name!r}: batch size {shape[0]} exceeds the limit of {self.max_batch_size} "
                "(--max_batch_size)",
            )
        if len(shape) >= 2 and shape[1] > self.max_history_length:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input {name!r}: length {shape[1]} (dimension 1) exceeds the limit of "
                f"{self.max_history_length} (--max_history_length)",
            )
        self.check_elements(math.prod(shape), f"input {name!r} (shape {list(shape)})")

    def check_id_lengths(self, name: str, values: Iterable[bytes]) -> None:
        """INVALID_ARGUMENT if a string value of input ``name`` is longer than ``max_id_bytes``."""
        for position, value in enumerate(values):
            if len(value) > self.max_id_bytes:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input {name!r}: value {position} is {len(value)} bytes long, over the limit of "
                    f"{self.max_id_bytes} bytes per ID (--max_id_bytes)",
                )

    def check_elements(self, elements: int, what: str = "the request's inputs") -> None:
        """RESOURCE_EXHAUSTED if ``elements`` exceeds ``max_elements``."""
        if elements > self.max_elements:
            raise ServingError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{what}: {elements} elements exceed the limit of {self.max_elements} per request (--max_elements)",
            )


def _dtype_name(dtype: int) -> str:
    """``DT_STRING`` for 7; a number no DataType has (protobuf enums are open) is named as such."""
    try:
        return types_pb2.DataType.Name(dtype)
    except ValueError:
        return f"an unknown dtype number ({dtype})"


def tensor_proto_shape(name: str, proto: tensor_pb2.TensorProto, limits: Limits) -> list[int]:
    """The shape of ``proto`` once it is known to be well formed and within ``limits``.

    Well formed, as TF Serving requires: a known rank, no negative dimension, and
    exactly as many values as the shape holds (TensorFlow would otherwise repeat
    the last value up to the declared size: a 41-byte request could ask for
    gigabytes). Nothing the size of the tensor is allocated here: string
    values are measured one at a time, each a transient copy, so an ID over
    ``limits.max_id_bytes`` costs at most its own size again before it is
    refused (``proto.ByteSize()``, under protobuf's upb backend, serializes
    the whole tensor into a buffer grown by doubling, several times its size).
    """
    if proto.tensor_shape.unknown_rank:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input {name!r}: the tensor has no shape")
    shape = [d.size for d in proto.tensor_shape.dim]
    if any(size < 0 for size in shape):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input {name!r}: malformed tensor: negative dimension in shape {shape}",
        )
    elements = math.prod(shape)
    field = _VALUE_FIELDS.get(proto.dtype)
    if field is None:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT, f"input {name!r}: unsupported dtype {_dtype_name(proto.dtype)}"
        )
    content_bytes = len(proto.tensor_content)  # one transient copy (protobuf hands out bytes)
    if content_bytes:
        if proto.dtype == types_pb2.DT_STRING:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input {name!r}: malformed tensor: DT_STRING values must be in string_val, not tensor_content",
            )
        itemsize = tf.dtypes.as_dtype(proto.dtype).size
        got, want, unit = content_bytes, elements * itemsize, "bytes of tensor_content"
    else:
        got, want, unit = len(getattr(proto, field[0])), elements * field[1], f"values in {field[0]}"
    if got != want:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input {name!r}: malformed tensor: shape {shape} needs {want} {unit}, got {got}",
        )
    limits.check_shape(name, shape)
    if proto.dtype == types_pb2.DT_STRING:
        limits.check_id_lengths(name, proto.string_val)
    return shape


def read_signature_defs(saved_model_dir: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The servable signatures of a SavedModel's ``serve`` MetaGraph, from ``saved_model.pb``."""
    path = posixpath.join(saved_model_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return {k: v for k, v in meta_graph.signature_def.items() if k != INIT_OP_SIGNATURE}
    raise ValueError(f"{path}: no MetaGraph tagged 'serve'")


def _check_input(name: str, array: np.ndarray, spec: meta_graph_pb2.TensorInfo, signature_name: str) -> None:
    """Rank and fixed dimensions of ``array`` against the signature's TensorInfo."""
    shape = spec.tensor_shape
    if shape.unknown_rank:
        return
    expected = [d.size for d in shape.dim]  # -1 = any size
    if array.ndim != len(expected):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input {name!r} of signature {signature_name!r} must have rank {len(expected)} "
            f"(shape {expected}, -1 = any), got rank {array.ndim} (shape {list(array.shape)})",
        )
    for axis, (want, got) in enumerate(zip(expected, array.shape)):
        if want >= 0 and want != got:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input {name!r} of signature {signature_name!r}: dimension {axis} must be {want}, "
                f"got shape {list(array.shape)}",
            )


def _check_names(kind: str, signature: str, given: set[str], known: set[str], *, required: set[str]) -> None:
    unknown = sorted(given - known)
    if unknown:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"unknown {kind} name(s) {', '.join(map(repr, unknown))} for signature {signature!r}; "
            f"expected: {', '.join(sorted(known))}",
        )
    missing = sorted(required - given)
    if missing:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"missing {kind}(s) {', '.join(map(repr, missing))} for signature {signature!r}",
        )


class Servable:
    """One loaded version: its signature functions, with every request validated first.

    Args:
      name: the model name.
      version: the version number.
      path: the version directory.
      limits: the per-request caps.
    """

    def __init__(self, name: str, version: int, path: str, limits: Limits | None = None) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.limits = limits or Limits()
        self.signature_defs = read_signature_defs(path)
        self._loaded = tf.saved_model.load(path)
        self._functions = {k: self._loaded.signatures[k] for k in self.signature_defs}
        # SignatureDef defaults: TF Serving substitutes them for inputs a request leaves out.
        self._defaults = {
            k: {name: tf.make_ndarray(proto) for name, proto in v.defaults.items()}
            for k, v in self.signature_defs.items()
        }
        self.export_info = read_export_info(path)
        self._counter_lock = threading.Lock()
        self._counters = {"rows": 0, "fallback_rows": 0, "unknown_user_rows": 0}

    @property
    def top_k_search(self) -> dict[str, Any]:
        """The export's top-K search: ``{"method": "exact"}`` or the cluster search's facts."""
        if not self.export_info:
            return {"method": "unknown (no tfseq_export.json)"}
        return dict(self.export_info.get("top_k_search") or {"method": "exact"})  # older exports: exact

    def details(self) -> dict[str, Any]:
        """``{"top_k_search": ..., "counters": {"rows", "fallback_rows", "unknown_user_rows"}}`` of this version."""
        with self._counter_lock:
            counters = dict(self._counters)
        return {"top_k_search": self.top_k_search, "counters": counters}

    def _count(self, outputs: Mapping[str, tf.Tensor]) -> None:
        """Adds a ``serving_default`` answer's rows to the counters (answers without ``fallback``: none)."""
        if FALLBACK not in outputs:
            return
        fallback = outputs[FALLBACK].numpy()
        unknown = int(np.sum(outputs[UNKNOWN_USER].numpy())) if UNKNOWN_USER in outputs else 0
        with self._counter_lock:
            self._counters["rows"] += int(fallback.size)
            self._counters["fallback_rows"] += int(np.sum(fallback))
            self._counters["unknown_user_rows"] += unknown

    def signature(self, signature_name: str) -> meta_graph_pb2.SignatureDef:
        name = signature_name or SERVING_SIGNATURE
        if name not in self.signature_defs:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signature {name!r} not found in model {self.name!r} version {self.version}; "
                f"signatures: {', '.join(sorted(self.signature_defs))}",
            )
        return self.signature_defs[name]

    def required_inputs(self, signature_name: str) -> list[str]:
        """The inputs of a signature that have no default, sorted."""
        name = signature_name or SERVING_SIGNATURE
        return sorted(set(self.signature(name).inputs) - set(self._defaults[name]))

    def input_arrays(self, signature_name: str, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """TensorProtos -> arrays, refusing unknown/missing names, wrong dtypes and malformed or oversized tensors."""
        name = signature_name or SERVING_SIGNATURE
        specs = self.signature(name).inputs
        _check_names("input", name, set(inputs), set(specs), required=set(specs) - set(self._defaults[name]))
        elements = 0
        for key, proto in inputs.items():  # every input checked before anything is allocated
            if proto.dtype != specs[key].dtype:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input {key!r} of signature {name!r} must be {_dtype_name(specs[key].dtype)}, "
                    f"got {_dtype_name(proto.dtype)}",
                )
            elements += math.prod(tensor_proto_shape(key, proto, self.limits))
        self.limits.check_elements(elements)
        arrays = {}
        for key, proto in inputs.items():
            try:
                arrays[key] = tf.make_ndarray(proto)
            except Exception as e:  # noqa: BLE001  (any other malformation of the proto)
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"input {key!r}: malformed tensor: {e}") from None
        return arrays

    def run(
        self,
        signature_name: str,
        arrays: Mapping[str, np.ndarray],
        output_filter: Iterable[str] = (),
        *,
        count: bool = True,
    ) -> dict[str, np.ndarray]:
        """Runs a signature on validated-name arrays; returns the (filtered) outputs.

        ``count``: add the answer's rows to the :meth:`details` counters (whatever ``output_filter`` keeps).
        """
        name = signature_name or SERVING_SIGNATURE
        signature = self.signature(name)
        defaults = self._defaults[name]
        _check_names("input", name, set(arrays), set(signature.inputs), required=set(signature.inputs) - set(defaults))
        wanted = set(output_filter) or set(signature.outputs)
        _check_names("output", name, wanted, set(signature.outputs), required=set())
        self.limits.check_elements(sum(array.size for array in arrays.values()))
        filled = {k: v for k, v in defaults.items() if k not in arrays}
        arrays = {**arrays, **filled}
        tensors = {}
        for key, array in arrays.items():
            _check_input(key, array, signature.inputs[key], name)
            self.limits.check_shape(key, array.shape)
            dtype = tf.dtypes.as_dtype(signature.inputs[key].dtype)
            try:
                tensors[key] = tf.constant(array, dtype=dtype)
            except (TypeError, ValueError) as e:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input {key!r} of signature {name!r}: cannot read as {dtype.name}: {e}",
                ) from None
        # An input with a default may be sent empty, as its default usually is (hrm's user_id: [0] = no
        # users); the SavedModel accepts that, so it takes no part in the batch-size agreement.
        batch_sizes = {
            t.shape[0]
            for k, t in tensors.items()
            if t.shape.rank and k not in filled and not (k in defaults and t.shape.num_elements() == 0)
        }
        if len(batch_sizes) > 1:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT, f"inputs disagree on the batch size: {sorted(batch_sizes)}"
            )
        try:
            outputs = self._functions[name](**tensors)
        except tf.errors.InvalidArgumentError as e:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, e.message) from None
        except tf.errors.OpError as e:
            raise ServingError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e.message}") from None
        if count:
            self._count(outputs)
        return {k: v.numpy() for k, v in outputs.items() if k in wanted}

    def warm_up(self) -> int:
        """Replays the version's warm-up requests; returns how many ran."""
        requests = read_warmup_requests(self.path)
        for number, request in enumerate(requests):
            try:
                signature = request.model_spec.signature_name
                self.run(signature, self.input_arrays(signature, request.inputs), request.output_filter, count=False)
            except ServingError as e:
                raise ValueError(f"warm-up request {number} failed: {e.message}") from None
        return len(requests)


def read_export_info(path: str) -> dict[str, Any]:
    """The version's ``tfseq_export.json`` (what was exported, how it searches); ``{}`` if it has none."""
    info_path = posixpath.join(path, EXPORT_INFO_FILE)
    try:
        with tf.io.gfile.GFile(info_path) as f:
            info = json.loads(f.read())
    except tf.errors.NotFoundError:
        return {}
    except ValueError as e:
        raise ValueError(f"{info_path}: not JSON: {e}") from None
    if not isinstance(info, dict):
        raise ValueError(f"{info_path}: expected a JSON object, got {type(info).__name__}")
    return info


def files_fingerprint(path: str) -> tuple[tuple[str, int, int], ...]:
    """``(relative path, size, mtime ns)`` of every file under ``path``: changes while a copy is in progress."""
    entries = []
    try:
        for directory, _, files in tf.io.gfile.walk(path):
            for name in files:
                full = posixpath.join(directory, name)
                try:
                    stat = tf.io.gfile.stat(full)
                except tf.errors.OpError:  # deleted between listing and stat
                    continue
                entries.append((posixpath.relpath(full, path), stat.length, stat.mtime_nsec))
    except tf.errors.OpError:
        pass
    return tuple(sorted(entries))


@dataclasses.dataclass
class VersionStatus:
    state: int  # ModelVersionStatus.State
    error_code: int = 0  # tensorflow.error.Code of a failed load; 0 = OK
    error_message: str = ""
    attempts: int = 0  # failed loads in a row
    fingerprint: tuple = ()  # the version's files at the last failed attempt
    retry_after: float = 0.0  # time.monotonic() before which a failed version is not retried


class ModelManager:
    """Keeps the highest loadable version of one model loaded; thread-safe.

    Args:
      model_name: the name requests must use.
      model_base_path: the directory of version directories.
      poll_seconds: how often :meth:`start`'s thread looks for new versions; <= 0 looks once, at
        start (TF Serving's ``--file_system_poll_wait_seconds=0``). Also the first retry backoff.
      limits: the per-request caps of every servable.
    """

    def __init__(
        self,
        model_name: str,
        model_base_path: str,
        *,
        poll_seconds: float = 2.0,
        limits: Limits | None = None,
    ) -> None:
        if not tf.io.gfile.isdir(model_base_path):
            raise FileNotFoundError(f"--model_base_path {model_base_path}: no such directory")
        self.model_name = model_name
        self.model_base_path = model_base_path
        self.poll_seconds = poll_seconds
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._current: Servable | None = None
        self._status: dict[int, VersionStatus] = {}
        self._folders: dict[int, str] = {}  # version -> its folder's name, from the last listing
        self._warned_names: set[str] = set()  # names not a version, each warned about once
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- loading ---------------------------------------------------------------------------
    def _path(self, version: int) -> str:
        return posixpath.join(self.model_base_path, self._folders.get(version, str(version)))

    def _list_versions(self) -> list[int]:
        """The versions under ``model_base_path`` (remembering their folders), warning once per other name."""
        if not tf.io.gfile.isdir(self.model_base_path):
            return []
        names = [name.rstrip("/") for name in tf.io.gfile.listdir(self.model_base_path)]
        folders, skipped = version_folders(names)
        for name, reason in skipped.items():
            if name not in self._warned_names:
                self._warned_names.add(name)
                LOG.warning("ignoring %r in %s: %s", name, self.model_base_path, reason)
        self._folders = folders
        return sorted(folders)

    def _retryable(self, version: int, now: float) -> bool:
        """False for a version whose last load failed, until its files change and its backoff ends."""
        status = self._status.get(version)
        if status is None or status.error_code == 0:
            return True
        return now >= status.retry_after and files_fingerprint(self._path(version)) != status.fingerprint

    def _target(self, versions: list[int]) -> int | None:
        """The highest version on disk that is not a failed load waiting for its files to change."""
        now = time.monotonic()
        for version in sorted(versions, reverse=True):
            if self._retryable(version, now):
                return version
        return None

    def no_versions_warning(self) -> str | None:
        """A sentence explaining why ``model_base_path`` has no version folder, or ``None``."""
        try:
            with self._poll_lock:
                if self._list_versions():
                    return None
            names = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(self.model_base_path))
        except tf.errors.OpError:
            return None
        message = f"--model_base_path {self.model_base_path} has no version folders (integer names such as 1/)"
        if "saved_model.pb" in names:
            return message + "; it holds a SavedModel itself: pass its parent folder and name the version folder 1"
        return message + (f" (found: {', '.join(names[:5])})" if names else "") + "; waiting for one"

    def poll_once(self) -> int | None:
        """Syncs with the folder once; returns the version now served (``None`` if none)."""
        with self._poll_lock:
            try:
                versions = self._list_versions()
            except tf.errors.OpError as e:
                LOG.warning("cannot list %s: %s", self.model_base_path, e)
                return self.served_version()
            current = self._current
            if current is not None and current.version not in versions:
                LOG.warning("version %d of %s was deleted", current.version, self.model_name)
            target = self._target(versions)
            if target is None or (current is not None and target == current.version):
                return self.served_version()
            self._load(target)
            return self.served_version()

    def _load(self, version: int) -> None:
        path = self._path(version)
        fingerprint = files_fingerprint(path)  # before loading: a change during the load shows next time
        with self._lock:
            status = self._status.setdefault(version, VersionStatus(State.LOADING))
            status.state = State.LOADING
        LOG.debug("loading %s version %d from %s", self.model_name, version, path)
        try:
            servable = Servable(self.model_name, version, path, self.limits)
            count = servable.warm_up()
        except Exception as e:  # noqa: BLE001  (any load failure keeps the old version serving)
            with self._lock:
                status.attempts += 1
                backoff = min(max(self.poll_seconds, 0.01) * 2 ** (status.attempts - 1), MAX_RETRY_BACKOFF_S)
                status.state, status.error_code = State.END, INTERNAL_ERROR
                status.error_message = f"{type(e).__name__}: {e}".replace("\n", " ")[:2000]
                status.fingerprint, status.retry_after = fingerprint, time.monotonic() + backoff
            LOG.error(
                "failed to load %s version %d (attempt %d; retried when its files change, "
                "not before %.1f s): %s",
                self.model_name,
                version,
                status.attempts,
                backoff,
                status.error_message,
            )
            return
        with self._lock:
            previous, self._current = self._current, servable
            self._status[version] = VersionStatus(State.AVAILABLE)
            if previous is not None:
                self._status[previous.version] = VersionStatus(State.END)  # unloaded, no error
        search = servable.top_k_search
        LOG.info(
            "loaded %s version %d from %s and serving it (%d warm-up requests replayed; top-K search: %s)",
            self.model_name,
            version,
            path,
            count,
            search["method"] if search["method"] != "clusters"
            else f"{search['probes']} of {search['clusters']} item clusters",
        )
        if previous is not None:
            LOG.info("unloaded %s version %d (replaced by version %d)", self.model_name, previous.version, version)

    def start(self) -> None:
        """Loads what is there now (warning if there is no version), then polls in a daemon thread."""
        warning = self.no_versions_warning()
        if warning:
            LOG.warning("%s", warning)
        self.poll_once()
        if self.poll_seconds <= 0:
            return
        self._thread = threading.Thread(target=self._poll_loop, name="tfseq-version-poller", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001  (the poller must outlive any one bad poll)
                LOG.exception("polling %s failed", self.model_base_path)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    # -- queries ---------------------------------------------------------------------------
    def served_version(self) -> int | None:
        current = self._current
        return None if current is None else current.version

    def servable(self, model_name: str, version: int | None = None) -> Servable:
        """The servable a request names; NOT_FOUND for another model or a version not loaded."""
        self.check_name(model_name)
        current = self._current
        if current is None:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"model {model_name!r} has no loaded version yet (looking in {self.model_base_path})",
            )
        if version is not None and version != current.version:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"version {version} of model {model_name!r} is not loaded; serving version {current.version}",
            )
        return current

    def details(self, model_name: str) -> dict[int, dict[str, Any]]:
        """``{served version: its Servable.details()}`` (``{}`` while none is loaded)."""
        self.check_name(model_name)
        current = self._current
        return {} if current is None else {current.version: current.details()}

    def check_name(self, model_name: str) -> None:
        if model_name != self.model_name:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"model {model_name!r} not found; this server serves {self.model_name!r}"
            )

    def statuses(self, model_name: str, version: int | None = None) -> list[tuple[int, VersionStatus]]:
        """``(version, status)`` of every version seen, newest first (or of ``version``)."""
        self.check_name(model_name)
        with self._lock:
            known = sorted(self._status.items(), reverse=True)
        if version is not None:
            known = [(v, s) for v, s in known if v == version]
            if not known:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND, f"version {version} of model {model_name!r} is unknown"
                )
        return [(v, dataclasses.replace(s)) for v, s in known]


# -- the API's three calls, on protos, for any transport ---------------------------------------
def requested_version(model_spec: Any) -> int | None:
    """The version a ModelSpec asks for (``None`` = the served one); labels are refused."""
    if model_spec.WhichOneof("version_choice") == "version_label":
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"version labels are not supported (got {model_spec.version_label!r}); ask for a version number",
        )
    return model_spec.version.value if model_spec.HasField("version") else None


def predict(manager: ModelManager, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    spec = request.model_spec
    servable = manager.servable(spec.name, requested_version(spec))
    signature = spec.signature_name or SERVING_SIGNATURE
    arrays = servable.input_arrays(signature, request.inputs)
    outputs = servable.run(signature, arrays, request.output_filter)
    response = predict_pb2.PredictResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tensor_proto(value))
    return response


def tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """``array`` as a TensorProto: strings in ``string_val``, numbers as raw ``tensor_content``.

    Equivalent to ``tf.make_tensor_proto`` for what signatures return, without
    its per-call overhead (a noticeable share of a small request's latency).
    """
    if array.dtype == object or array.dtype.kind in "SU":
        proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.flat)
    elif array.dtype.kind in "biuf" and array.dtype.byteorder in "=|":
        proto = tensor_pb2.TensorProto(dtype=tf.dtypes.as_dtype(array.dtype).as_datatype_enum)
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    else:
        return tf.make_tensor_proto(array)
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    return proto


def model_metadata(manager: ModelManager, request: Any) -> get_model_metadata_pb2.GetModelMetadataResponse:
    spec = request.model_spec
    servable = manager.servable(spec.name, requested_version(spec))
    fields = list(request.metadata_field)
    known = (SIGNATURE_DEF_FIELD, TFSEQ_FIELD)
    if not fields or any(field not in known for field in fields):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"metadata_field must name {SIGNATURE_DEF_FIELD} (TF Serving's) and/or {TFSEQ_FIELD} (the search and "
            f"counters of the served version), got {fields}",
        )
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    if SIGNATURE_DEF_FIELD in fields:
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, value in servable.signature_defs.items():
            signatures.signature_def[key].CopyFrom(value)
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signatures)
    if TFSEQ_FIELD in fields:
        details = struct_pb2.Struct()
        details.update(servable.details())
        response.metadata[TFSEQ_FIELD].Pack(details)
    return response


def model_status(manager: ModelManager, request: Any) -> get_model_status_pb2.GetModelStatusResponse:
    spec = request.model_spec
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, status in manager.statuses(spec.name, requested_version(spec)):
        entry = response.model_version_status.add()
        entry.version = version
        entry.state = status.state
        entry.status.CopyFrom(status_pb2.StatusProto(error_code=status.error_code, error_message=status.error_message))
    return response


def configure_threads(intra_op_threads: int, inter_op_threads: int) -> None:
    """TF's thread pools; call before TensorFlow runs its first op (0 = TF's default).

    One thread per op cuts the latency of a single small request (splitting a
    small op across threads costs more than it saves), and concurrent requests
    still use every core through the request thread pool.
    """
    if intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    if inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
