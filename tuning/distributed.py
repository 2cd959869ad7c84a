"""Distributed search: KerasTuner's chief oracle over gRPC, the workers that run its trials, local workers.

KerasTuner's distributed mode has one *chief* process that holds the oracle
and serves it over gRPC, and *workers* that ask it for trials, run them and
report their ends. Which a process is comes from three environment variables,
as in KerasTuner (:func:`role_from_env`):

* ``KERASTUNER_TUNER_ID``: ``chief``, or a worker's own id (``tuner0``,
  ``tuner1`` ...; unique per worker process: the oracle hands a worker that
  asks again under the same id its unfinished trial);
* ``KERASTUNER_ORACLE_IP`` / ``KERASTUNER_ORACLE_PORT``: the chief's address as
  the workers reach it; the chief listens on it (or on ``0.0.0.0``, all its
  interfaces, if its own variable says so).

Every process runs the same ``python -m tuning.search ...`` command over one
``--output_dir`` that all of them see (a shared file system or ``gs://``):
the chief preprocesses the data, starts the search there and only then opens
its oracle; workers wait for it (``--chief_timeout``), check that their command
is the chief's search, and write nothing but their trials' folders
(``trials/<id>/``, the trial's ``result.json`` last). The chief runs no trial;
when a worker reports a trial's end it reads that ``result.json`` and rewrites
the reports (:mod:`tuning.report`), so it alone writes them.
``--workers N`` does all of this on one machine: the chief serves on a free
localhost port and starts N workers as child processes, with their logs in
``<output_dir>/workers/``; they die with their chief (Linux), so a chief
killed outright leaves no worker training into a trial the resumed search runs again.

KerasTuner's own chief loop (``keras_tuner.src.distribute.oracle_chief``) is
not used: two chiefs on one port would share it (gRPC's SO_REUSEPORT), it
looks for its end every 20 s, waits forever for a worker that died, and its
workers wait an hour for each answer. :class:`Chief` keeps its servicer (the
gRPC methods) and oracle, with every answer under one lock. A local worker that dies (killed, or exiting with an
error) gives its unfinished trial back to the oracle's retry queue, where the
next worker to ask takes it, and a killed one is started again (at most
:data:`MAX_RESTARTS` times each); when no worker is left the chief stops with
an error and the same command resumes. A worker on another machine cannot be
watched: its trial waits until a worker with the same ``KERASTUNER_TUNER_ID``
asks again (KerasTuner hands it back), or until the chief is restarted (a
reloaded oracle queues unfinished trials again).
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Protocol, Sequence

from tfseq.config import ConfigError

ENV_TUNER_ID = "KERASTUNER_TUNER_ID"
ENV_ORACLE_IP = "KERASTUNER_ORACLE_IP"
ENV_ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
ENV_VARS = (ENV_TUNER_ID, ENV_ORACLE_IP, ENV_ORACLE_PORT)
ENV_LOCAL_CHIEF = "TFSEQ_LOCAL_CHIEF_PID"  # set by --workers: a local worker dies with its chief
CHIEF = "chief"
DEFAULT_CHIEF_TIMEOUT_S = 300.0  # a worker's wait for each answer of the chief (--chief_timeout)
LOCAL_IP = "127.0.0.1"
WORKERS_DIR = "workers"
MAX_RESTARTS = 2  # per local worker killed by a signal
POLL_SECONDS = 0.2  # the chief's look at its workers and at the end of the search
IDLE_SECONDS = 1.0  # a worker told to wait (Hyperband between rounds) asks again after this
STOP_GRACE_SECONDS = 10.0  # the chief's wait for workers that have not yet been told to stop
SERVER_THREADS = 4


class DistributedError(RuntimeError):
    """The chief and its workers cannot go on together (exit status 1, one line)."""


class OracleUnreachable(DistributedError):
    """A worker got no answer from the chief's oracle in time, or an error answer."""


class WorkersLost(DistributedError):
    """Every local worker exited before the search finished."""


@dataclasses.dataclass(frozen=True)
class Role:
    """This process's part in a distributed search, from KerasTuner's environment variables."""

    tuner_id: str
    ip: str
    port: int

    @property
    def is_chief(self) -> bool:
        return CHIEF in self.tuner_id  # KerasTuner's own test (keras_tuner.src.distribute.utils)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


def role_from_env(environ: Any = None) -> Role | None:
    """The role the environment gives this process; None when none of the variables is set.

    Raises:
      ConfigError: some but not all of the variables are set, or the port is not one.
    """
    environ = os.environ if environ is None else environ
    values = {name: environ.get(name, "").strip() for name in ENV_VARS}
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ConfigError(f"a distributed search needs {', '.join(ENV_VARS)}; unset: {', '.join(missing)}")
    port = values[ENV_ORACLE_PORT]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{ENV_ORACLE_PORT} must be a port number (1-65535), got {port!r}")
    return Role(values[ENV_TUNER_ID], values[ENV_ORACLE_IP], int(port))


# ----------------------------------------------------------------------------- the chief


class ChiefListener(Protocol):
    def trial_started(self, trial_id: str, params: dict[str, Any], worker: str | None = None) -> None: ...

    def trial_finished(self, record: Any) -> None: ...

    def trial_lost(self, trial_id: str, worker: str) -> None: ...


class Chief:
    """The oracle's side of a distributed search: hands out trials and records their ends.

    Every answer (gRPC handler threads) and every look from the main thread
    (:meth:`finished`, :meth:`worker_lost`) holds :attr:`lock`, so the oracle,
    whose methods KerasTuner synchronises one by one, is also consistent across them.

    Args:
      oracle: the search's oracle, already reloaded from the output folder.
      listener: told of each trial's start (with its worker), end and loss.
      record_of: a finished KerasTuner trial -> its :class:`tuning.report.TrialRecord`.
      params_of: a trial's hyperparameter values -> its config overrides.
    """

    def __init__(self, oracle: Any, listener: ChiefListener, record_of: Callable[[Any], Any],
                 params_of: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.oracle = oracle
        self.listener = listener
        self.record_of = record_of
        self.params_of = params_of
        self.lock = threading.RLock()
        self.stopped = False  # the oracle has no more trials to hand out
        self.failure: BaseException | None = None  # the listener's error: no more trials, raised at the end
        self.last_answer = time.monotonic()

    def create_trial(self, tuner_id: str) -> Any:
        from keras_tuner.src.engine import trial as trial_module

        with self.lock:
            self.last_answer = time.monotonic()
            if self.failure is not None:  # stopping: tell every worker that asks
                self.oracle.tuner_ids.discard(tuner_id)
                return trial_module.Trial(self.oracle.get_space(), status=trial_module.TrialStatus.STOPPED)
            trial = self.oracle.create_trial(tuner_id)
            if trial.status == trial_module.TrialStatus.STOPPED:
                self.stopped = True
            elif trial.status == trial_module.TrialStatus.RUNNING:  # new, queued again, or a restarted worker's
                self.listener.trial_started(trial.trial_id, self.params_of(trial.hyperparameters.values), tuner_id)
            return trial

    def end_trial(self, trial: Any) -> None:
        with self.lock:
            self.last_answer = time.monotonic()
            if trial.trial_id in self.oracle._retry_queue:  # a reloaded oracle queued it, but its worker went on
                self.oracle._retry_queue.remove(trial.trial_id)
            self.oracle.end_trial(trial)
            self.oracle.save()  # end_trial saves before it forgets the trial as running (a lone tuner saves again)
            if self.failure is not None:
                return
            try:
                self.listener.trial_finished(self.record_of(trial))
            except Exception as e:  # noqa: BLE001  (raised by serve() once the running trials end)
                self.failure = e
                running = len(self.oracle.ongoing_trials)
                print(f"stopping: {e}" + (f"; waiting for {running} running trial(s)" if running else ""),
                      flush=True)

    def worker_lost(self, tuner_id: str) -> str | None:
        """Puts the unfinished trial of a worker that died back in the oracle's queue; returns its id."""
        with self.lock:
            trial = self.oracle.ongoing_trials.pop(tuner_id, None)
            self.oracle.tuner_ids.discard(tuner_id)
            if trial is None:
                return None
            self.oracle._retry_queue.append(trial.trial_id)  # what a reloaded oracle does with it too
            self.oracle.save()
            self.listener.trial_lost(trial.trial_id, tuner_id)
            return str(trial.trial_id)

    def nothing_left(self) -> bool:
        """Every trial of the oracle's budget has ended (a finished search run again)."""
        with self.lock:
            remaining = self.oracle.remaining_trials()
            return remaining is not None and remaining <= 0 and not self.oracle.ongoing_trials \
                and not self.oracle._retry_queue

    def finished(self) -> bool:
        """No trial is running or queued and the oracle stopped (or the search is stopping on an error),
        and every worker has been told so (or has been quiet for :data:`STOP_GRACE_SECONDS`)."""
        with self.lock:
            if self.oracle.ongoing_trials or not (self.stopped or self.failure is not None):
                return False
            if self.oracle._retry_queue and self.failure is None:
                return False
            return not self.oracle.tuner_ids or time.monotonic() - self.last_answer > STOP_GRACE_SECONDS


def _servicer(chief: Chief) -> Any:
    """KerasTuner's gRPC oracle servicer, every method under the chief's lock; trials through the chief."""
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer
    from keras_tuner.src.engine import trial as trial_module

    class Servicer(OracleServicer):
        def CreateTrial(self, request: Any, context: Any) -> Any:
            trial = chief.create_trial(request.tuner_id)
            return protos.get_service().CreateTrialResponse(trial=trial.to_proto())

        def EndTrial(self, request: Any, context: Any) -> Any:
            chief.end_trial(trial_module.Trial.from_proto(request.trial))
            return protos.get_service().EndTrialResponse()

        def GetSpace(self, request: Any, context: Any) -> Any:
            with chief.lock:
                return super().GetSpace(request, context)

        def UpdateSpace(self, request: Any, context: Any) -> Any:
            with chief.lock:
                return super().UpdateSpace(request, context)

        def UpdateTrial(self, request: Any, context: Any) -> Any:
            with chief.lock:
                return super().UpdateTrial(request, context)

        def GetTrial(self, request: Any, context: Any) -> Any:
            with chief.lock:
                return super().GetTrial(request, context)

        def GetBestTrials(self, request: Any, context: Any) -> Any:
            with chief.lock:
                return super().GetBestTrials(request, context)

    return Servicer(chief.oracle)


def check_port_free(ip: str, port: int) -> None:
    """Raises a one-line ConfigError when ``ip:port`` cannot be listened on (gRPC would log and raise)."""
    try:
        infos = socket.getaddrinfo(ip, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"{ENV_ORACLE_IP}={ip}: not an address of this machine ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC: a closed chief's port is free
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ConfigError(f"the chief's oracle cannot listen on {ip}:{port}: the port is in use "
                                  f"(another chief or program); set {ENV_ORACLE_PORT} to a free port") from None
            raise ConfigError(f"the chief's oracle cannot listen on {ip}:{port}: {e.strerror} "
                              f"({ENV_ORACLE_IP} must be an address of the chief's machine)") from None


def start_server(chief: Chief, ip: str, port: int) -> tuple[Any, int]:
    """The chief's gRPC server listening on ``ip:port`` (0: a free port); returns it and its port."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos

    if port:
        check_port_free(ip, port)
    # No SO_REUSEPORT: a second chief on the same port must fail, not share the first one's workers.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=SERVER_THREADS),
                         options=[("grpc.so_reuseport", 0)])
    protos.get_service_grpc().add_OracleServicer_to_server(_servicer(chief), server)
    try:
        bound = server.add_insecure_port(f"{ip}:{port}")
    except RuntimeError as e:  # a race with another program since the check
        raise ConfigError(f"the chief's oracle cannot listen on {ip}:{port}: {e}") from None
    server.start()
    return server, bound


def serve(chief: Chief, role: Role | None, workers: LocalWorkers | None = None) -> None:
    """Serves the chief's oracle until the search is over; with ``workers``, on localhost for them.

    Raises:
      ConfigError: the port cannot be listened on.
      WorkersLost: every local worker exited before the search finished.
      Exception: whatever stopped the chief's reporting (``SearchFailed`` after too many failures).
    """
    if workers is not None and chief.nothing_left():
        return  # no worker to start (remote workers, though, are told so by the oracle)
    ip, port = (role.ip, role.port) if role is not None else (LOCAL_IP, 0)
    server, port = start_server(chief, ip, port)
    over = False
    try:
        if workers is not None:
            workers.start(port)
            print(f"chief: oracle on {ip}:{port}; {len(workers.processes)} local worker(s), logs in "
                  f"{workers.log_dir}", flush=True)
        else:
            print(f"chief: oracle on {ip}:{port}; waiting for workers (the same command with "
                  f"{ENV_TUNER_ID}=tuner0, tuner1 ... and {ENV_ORACLE_IP}={ip} {ENV_ORACLE_PORT}={port})", flush=True)
        while not chief.finished():
            time.sleep(POLL_SECONDS)
            if workers is not None:
                workers.check(chief)
        over = True
    finally:
        if workers is not None:
            workers.stop(wait_s=30.0 if over else 0.0)  # told to stop, they exit by themselves
        server.stop(grace=1.0).wait(5.0)  # answers in flight end before the chief's last reports
    if chief.failure is not None:
        raise chief.failure


# ----------------------------------------------------------------------------- local workers


@dataclasses.dataclass
class LocalWorker:
    tuner_id: str
    process: subprocess.Popen[bytes]
    restarts: int = 0


class LocalWorkers:
    """``count`` worker processes on this machine running ``python -m tuning.search *argv``.

    Each gets KerasTuner's variables (``tuner<i>``, localhost, the chief's port)
    and ``--workers 0``; its output goes to ``<log_dir>/<tuner id>.log``.
    """

    def __init__(self, count: int, argv: Sequence[str], log_dir: str) -> None:
        self.count = count
        self.argv = [*argv, "--workers", "0"]  # the last --workers wins, over a config file too
        self.log_dir = log_dir
        self.port = 0
        self.processes: dict[str, LocalWorker] = {}
        self.last_exit = ""

    def start(self, port: int) -> None:
        self.port = port
        os.makedirs(self.log_dir, exist_ok=True)
        for i in range(self.count):
            tuner_id = f"tuner{i}"
            self.processes[tuner_id] = LocalWorker(tuner_id, self._spawn(tuner_id))

    def log_path(self, tuner_id: str) -> str:
        return os.path.join(self.log_dir, f"{tuner_id}.log")

    def _spawn(self, tuner_id: str) -> subprocess.Popen[bytes]:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the workers run this tfseq
        env = {**os.environ, ENV_TUNER_ID: tuner_id, ENV_ORACLE_IP: LOCAL_IP, ENV_ORACLE_PORT: str(self.port),
               ENV_LOCAL_CHIEF: str(os.getpid()),
               "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        with open(self.log_path(tuner_id), "ab") as log:
            log.write(f"--- {tuner_id} started {datetime.datetime.now().isoformat(timespec='seconds')}\n".encode())
            log.flush()
            return subprocess.Popen([sys.executable, "-m", "tuning.search", *self.argv], env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def check(self, chief: Chief) -> None:
        """Notices workers that exited: a failed one's trial goes back to the queue; a killed one restarts.

        Raises:
          WorkersLost: none is left and the search is not over.
        """
        for worker in list(self.processes.values()):
            code = worker.process.poll()
            if code is None:
                continue
            del self.processes[worker.tuner_id]
            if code == 0:  # told to stop by the oracle
                continue
            reason = self._exit_reason(worker.tuner_id, code)
            restart = code < 0 and worker.restarts < MAX_RESTARTS
            print(f"worker {worker.tuner_id} {reason}"
                  + (f"; starting it again ({worker.restarts + 1}/{MAX_RESTARTS})" if restart else ""), flush=True)
            chief.worker_lost(worker.tuner_id)
            self.last_exit = f"{worker.tuner_id} {reason}"
            if restart:
                worker.restarts += 1
                worker.process = self._spawn(worker.tuner_id)
                self.processes[worker.tuner_id] = worker
        if not self.processes and not chief.finished():
            raise WorkersLost(f"every worker exited before the search finished (last: {self.last_exit}); "
                              "re-run the same command to resume")

    def _exit_reason(self, tuner_id: str, code: int) -> str:
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed ({name})"
        last = _last_line(self.log_path(tuner_id))
        return f"exited with status {code}" + (f": {last}" if last else "") + f" (log: {self.log_path(tuner_id)})"

    def stop(self, wait_s: float) -> None:
        """Waits up to ``wait_s`` for the workers to exit, then terminates the rest."""
        deadline = time.monotonic() + wait_s
        for worker in self.processes.values():
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.terminate()
        for worker in self.processes.values():
            try:
                worker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def local_log_dir(output_dir: str) -> str:
    """``<output_dir>/workers`` for a local output folder, else a temporary folder (logs are local files)."""
    if "://" in output_dir:
        return tempfile.mkdtemp(prefix="tfseq-workers-")
    return os.path.join(output_dir, WORKERS_DIR)


# ----------------------------------------------------------------------------- workers


def follow_local_chief(environ: Any = None) -> None:
    """A local worker (``--workers``) is killed when its chief exits, however it exits (Linux).

    Otherwise a chief killed outright would leave workers training into trial
    folders that the resumed search runs again.
    """
    environ = os.environ if environ is None else environ
    chief_pid = environ.get(ENV_LOCAL_CHIEF)
    if not chief_pid or not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != int(chief_pid):
        raise WorkersLost(f"the chief (process {chief_pid}) exited before this worker started")


def unreachable(role: Role, error: Any, timeout_s: float) -> OracleUnreachable:
    """A worker's one-line error for a failed call to the chief."""
    import grpc

    code = error.code()
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
        return OracleUnreachable(
            f"{role.tuner_id}: no answer from the chief's oracle at {role.address} within {timeout_s:g}s "
            f"(--chief_timeout): is the chief running, and are {ENV_ORACLE_IP} and {ENV_ORACLE_PORT} its address?")
    return OracleUnreachable(f"{role.tuner_id}: the chief's oracle at {role.address} answered {code.name}: "
                             f"{error.details()}")


def wait_for_chief(role: Role, timeout_s: float) -> None:
    """Waits up to ``timeout_s`` for the chief's oracle to answer (it opens once the data is ready)."""
    import grpc
    from keras_tuner.src import protos

    with grpc.insecure_channel(role.address) as channel:
        stub = protos.get_service_grpc().OracleStub(channel)
        try:
            stub.GetSpace(protos.get_service().GetSpaceRequest(), wait_for_ready=True, timeout=timeout_s)
        except grpc.RpcError as e:
            raise unreachable(role, e, timeout_s) from None


class _Deadlines:
    """A gRPC oracle stub whose every call waits at most ``timeout_s`` (KerasTuner's client: an hour)
    and fails as ``raise_as``, and whose ``CreateTrial`` pauses :data:`IDLE_SECONDS` after an IDLE
    answer (KerasTuner's loop asks again at once)."""

    def __init__(self, stub: Any, role: Role, timeout_s: float, raise_as: type[OracleUnreachable]) -> None:
        self._stub = stub
        self._role = role
        self._timeout_s = timeout_s
        self._raise_as = raise_as

    def __getattr__(self, name: str) -> Callable[..., Any]:
        import grpc

        call = getattr(self._stub, name)

        def with_deadline(request: Any, **kwargs: Any) -> Any:
            try:
                response = call(request, **{**kwargs, "timeout": self._timeout_s})
            except grpc.RpcError as e:
                raise self._raise_as(str(unreachable(self._role, e, self._timeout_s))) from None
            if name == "CreateTrial" and _is_idle(response.trial):
                time.sleep(IDLE_SECONDS)
            return response

        return with_deadline


def _is_idle(proto: Any) -> bool:
    from keras_tuner.src.engine import trial as trial_module

    return bool(trial_module.Trial.from_proto(proto).status == trial_module.TrialStatus.IDLE)


def bound_client(client: Any, timeout_s: float, raise_as: type[OracleUnreachable] = OracleUnreachable) -> Any:
    """KerasTuner's ``OracleClient`` (built from the environment) with :class:`_Deadlines` on its stub."""
    role = role_from_env()
    assert role is not None, "a worker's OracleClient is built from KerasTuner's environment variables"
    client.stub = _Deadlines(client.stub, role, timeout_s, raise_as)
    return client
