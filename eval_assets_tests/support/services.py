"""Real services for integration tests: MLflow tracking server, moto S3 server, Dagster.

Every service here is a child process that

- binds to 127.0.0.1 on a free port (chosen by binding a socket to port 0),
- runs in its own session and process group (``start_new_session=True``),
- writes stdout and stderr to one log file per service in a directory the caller gives,
- is health-checked with a bounded wait; if it exits or the wait runs out, the error says so and
  quotes the tail of its log,
- is always stopped: SIGTERM to the whole process group, up to 10 s of grace, then SIGKILL; a
  context manager guarantees this even when the test body raises, and an ``atexit`` hook catches
  handles that were never stopped.

The handles (:class:`MlflowServer`, :class:`MotoS3Server`, :class:`DagsterDev`,
:class:`DagsterWebserver`, :class:`DagsterDaemon`) can be stopped and started again on the same
port and the same state directories, which is what "MLflow goes down and comes back" and "restart
the daemon" tests need.

Each command is launched through a tiny Python wrapper that resets SIGINT and SIGTERM to their
default dispositions before ``exec``: a process started from a background shell inherits SIGINT as
ignored, and ``dagster dev`` maps SIGTERM onto the SIGINT handler, so without the reset it ignores
both. On Linux, when started from the main thread, the wrapper also asks the kernel to send SIGTERM
to the service if the test process dies without cleaning up (``PR_SET_PDEATHSIG``).

The module doubles as a pytest plugin (``pytest_plugins = ["eval_assets_tests.support.services"]``)
providing the fixtures ``services_dir``, ``mlflow_service``, ``s3_service`` and
``private_mlflow_service``; run it as a script (``python -m eval_assets_tests.support.services``)
to print start-up time and resident memory of each service on this machine.

PYTEST_DONT_REWRITE (no test assertions here; lets test modules import it before registering it).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import pytest

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 10.0
KILL_TIMEOUT_S = 5.0
ZOMBIE_REAP_TIMEOUT_S = 5.0  # orphans are reaped by init, here about 1 s after they exit
POLL_INTERVAL_S = 0.25
HTTP_TIMEOUT_S = 3.0
LOG_TAIL_LINES = 40
# Start-up budgets. On an idle 2-CPU machine MLflow needs ~10-25 s, dagster dev ~15-45 s, moto
# ~1-4 s; under load from parallel jobs we measured up to 4x that. Scale with
# EVAL_ASSETS_SERVICE_TIMEOUT_SCALE (e.g. 2 on a slow CI runner).
TIMEOUT_SCALE = float(os.environ.get("EVAL_ASSETS_SERVICE_TIMEOUT_SCALE", "1") or "1")
MLFLOW_STARTUP_TIMEOUT_S = 120.0 * TIMEOUT_SCALE
MOTO_STARTUP_TIMEOUT_S = 60.0 * TIMEOUT_SCALE
DAGSTER_STARTUP_TIMEOUT_S = 180.0 * TIMEOUT_SCALE
PORT_FREE_TIMEOUT_S = 10.0
_PORT_RETRIES = 3
_ADDRESS_IN_USE_MARKERS = ("address already in use", "errno 98", "port is already in use")

# Resets SIGINT/SIGTERM to their defaults, optionally arms PR_SET_PDEATHSIG, then execs the
# service. argv: [wrapper, parent_pid_or_0, executable, *args]. Exit code 127 = exec failed.
_EXEC_WRAPPER = """\
import os, signal, sys
for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, signal.SIG_DFL)
_parent = int(sys.argv[1])
if _parent and sys.platform.startswith("linux"):
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != _parent:
        sys.exit(1)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    print(f"cannot exec {sys.argv[2]!r}: {exc}", file=sys.stderr, flush=True)
    os._exit(127)
"""

_LIVE_SERVICES: weakref.WeakSet[ServiceProcess] = weakref.WeakSet()


class ServiceError(RuntimeError):
    """A managed service could not be started, checked or stopped."""


class ServiceStartError(ServiceError):
    """A managed service exited or did not become healthy within its start-up timeout."""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago (bind to port 0, then close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server using SO_REUSEADDR (uvicorn, werkzeug) could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_port_free(port: int, host: str = HOST, timeout: float = PORT_FREE_TIMEOUT_S) -> None:
    """Wait until ``host:port`` can be bound again; raise :class:`ServiceError` on timeout."""
    deadline = time.monotonic() + timeout
    while not port_is_free(port, host):
        if time.monotonic() >= deadline:
            raise ServiceError(f"port {host}:{port} still in use after {timeout:.0f} s")
        time.sleep(POLL_INTERVAL_S)


def venv_executable(name: str) -> str:
    """Path of console script ``name`` next to the running interpreter, else from ``PATH``."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    import shutil

    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"executable {name!r} found neither beside {sys.executable} nor on PATH")
    return found


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_request(
    url: str,
    *,
    payload: Mapping[str, Any] | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> tuple[int, bytes]:
    """GET ``url`` (or POST ``payload`` as JSON), bypassing proxies; return (status, body).

    HTTP error statuses are returned, not raised; connection errors and timeouts raise ``OSError``.
    """
    data = None if payload is None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with _NO_PROXY_OPENER.open(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, start_offset: int = 0) -> str:
    """The last ``lines`` lines of ``path`` after byte ``start_offset`` ('' if unreadable)."""
    try:
        with path.open("rb") as handle:
            handle.seek(start_offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of ``pid`` from /proc, or None if gone or not on Linux."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _pgid_of(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[2]


def _all_pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def process_group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid`` (Linux /proc; else [])."""
    members = []
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None and stat[2] == pgid and stat[0] != "Z":
            members.append(pid)
    return members


def descendants(root: int) -> list[int]:
    """All live descendants of ``root`` (Linux /proc; else [])."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None and stat[0] != "Z":
            children.setdefault(stat[1], []).append(pid)
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def rss_bytes(pids: list[int]) -> int:
    """Sum of VmRSS over ``pids`` (shared pages are counted once per process)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def group_alive(pgid: int) -> bool:
    """Whether any process (zombies included) is still in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def _wait_no_live_members(pgid: int, deadline: float, others: list[int] | None = None) -> bool:
    """Wait until no live (non-zombie) process is left in the group, nor any of ``others``.

    True if that happened by ``deadline``.
    """
    linux = sys.platform.startswith("linux")
    while True:
        group_done = not group_alive(pgid) or (linux and not process_group_members(pgid))
        if group_done and not any(_live(pid) for pid in others or []):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _wait_zombies_reaped(pgid: int, timeout: float) -> None:
    """Give init time to reap orphaned members, so that ``killpg(pgid, 0)`` fails afterwards."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _merged_env(overrides: Mapping[str, str] | None) -> dict[str, str]:
    """os.environ + overrides, with loopback addresses exempt from any configured proxy."""
    env = dict(os.environ)
    env.update(overrides or {})
    for key in ("NO_PROXY", "no_proxy"):
        parts = [p for p in env.get(key, "").split(",") if p]
        for host in ("127.0.0.1", "localhost"):
            if host not in parts:
                parts.append(host)
        env[key] = ",".join(parts)
    return env


# --------------------------------------------------------------------------------------------
# The generic handle
# --------------------------------------------------------------------------------------------


class ServiceProcess:
    """A long-running child process with a log file, a health check and a guaranteed stop.

    Subclasses implement :meth:`command` and :meth:`is_healthy`. ``start()`` launches and waits
    for health (no-op if already running); ``stop()`` terminates the whole process group (no-op
    if not running); both may be called any number of times, and a stopped service restarts on
    the same port with the same arguments and state.
    """

    name = "service"
    poll_interval = POLL_INTERVAL_S  # seconds between health probes during start-up

    def __init__(
        self,
        log_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = STOP_TIMEOUT_S,
        log_name: str | None = None,
    ) -> None:
        """Prepare (but do not start) the service; ``port=None`` means it listens on no port."""
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / (log_name or f"{self.name}.log")
        self.env_overrides: dict[str, str] = dict(env or {})
        self.cwd = Path(cwd) if cwd is not None else self.log_dir
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._port = port
        self._port_fixed = False  # becomes True once the service has been healthy on it
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self.started_at: float | None = None  # wall clock (time.time()) of the last launch
        self.startup_seconds: float | None = None  # launch-to-healthy of the last start
        self.start_count = 0

    # -- to implement ------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The argv to run (absolute executable path first)."""
        raise NotImplementedError

    def is_healthy(self) -> bool:
        """One bounded health probe; may raise (counted as 'not yet')."""
        raise NotImplementedError

    # -- properties --------------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The TCP port, or None for services without one."""
        return self._port

    @property
    def url(self) -> str | None:
        """Base URL ``http://127.0.0.1:PORT``, or None for services without a port."""
        return None if self._port is None else f"http://{HOST}:{self._port}"

    @property
    def pid(self) -> int | None:
        """PID of the process-group leader while running."""
        return self._proc.pid if self._proc is not None else None

    @property
    def pgid(self) -> int | None:
        """Process group id while running (equal to the leader's pid)."""
        return self.pid

    @property
    def running(self) -> bool:
        """Whether the leader process is alive (says nothing about health)."""
        return self._proc is not None and self._proc.poll() is None

    def environment(self) -> dict[str, str]:
        """The full environment the process is started with."""
        return _merged_env(self.env_overrides)

    def rss_bytes(self) -> int:
        """Resident memory summed over the process group and any escaped descendants."""
        if self._proc is None:
            return 0
        pids = set(process_group_members(self._proc.pid)) | set(descendants(self._proc.pid))
        pids.add(self._proc.pid)
        return rss_bytes(sorted(pids))

    def log_text(self, lines: int = LOG_TAIL_LINES) -> str:
        """Tail of the log written since the last start."""
        return log_tail(self.log_path, lines, self._log_offset)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Launch and wait until healthy; raise :class:`ServiceStartError` (process stopped)."""
        if self.running:
            return self
        if self._proc is not None:  # died on its own since the last start: reap its group
            self.stop()
        attempts = 1 if (self._port is None or self._port_fixed) else _PORT_RETRIES
        for attempt in range(1, attempts + 1):
            try:
                self._launch_and_wait()
            except ServiceStartError as exc:
                if attempt < attempts and any(
                    marker in str(exc).lower() for marker in _ADDRESS_IN_USE_MARKERS
                ):
                    self._port = free_port()
                    continue
                raise
            break
        self._port_fixed = True
        return self

    def _launch_and_wait(self) -> None:
        if self._port is not None and self._port_fixed:
            wait_port_free(self._port)
        argv = self.command()
        parent = os.getpid() if threading.current_thread() is threading.main_thread() else 0
        with self.log_path.open("ab") as log:
            header = f"\n===== {time.strftime('%H:%M:%S')} start {self.name}: {' '.join(argv)}\n"
            log.write(header.encode())
            log.flush()
            self._log_offset = log.tell()
            self.started_at = time.time()
            started = time.monotonic()
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _EXEC_WRAPPER, str(parent), *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.environment(),
                start_new_session=True,
            )
        self.start_count += 1
        _LIVE_SERVICES.add(self)
        deadline = started + self.startup_timeout
        last_error: BaseException | None = None
        while True:
            code = self._proc.poll()
            if code is not None:
                self.stop()
                raise ServiceStartError(
                    f"{self.name} exited with code {code} during start-up "
                    f"(log {self.log_path}):\n{self.log_text()}"
                )
            try:
                if self.is_healthy():
                    break
                last_error = None
            except Exception as exc:  # noqa: BLE001 - any probe failure means "not yet"
                last_error = exc
            if time.monotonic() >= deadline:
                self.stop()
                probe = f"; last probe error: {last_error!r}" if last_error else ""
                raise ServiceStartError(
                    f"{self.name} not healthy after {self.startup_timeout:.0f} s{probe} "
                    f"(log {self.log_path}):\n{self.log_text()}"
                )
            time.sleep(self.poll_interval)
        self.startup_seconds = time.monotonic() - started

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the process group, wait up to ``timeout`` (10 s), then SIGKILL it.

        Returns once no process of the group (and no escaped descendant) is alive; raises
        :class:`ServiceError` only if even SIGKILL did not clear them within 5 s.
        """
        proc = self._proc
        if proc is None:
            return
        grace = self.stop_timeout if timeout is None else timeout
        pgid = proc.pid
        escaped = [pid for pid in descendants(pgid) if _pgid_of(pid) not in (None, pgid)]
        _signal_group(pgid, signal.SIGTERM)
        for pid in escaped:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        clean = proc.poll() is not None and _wait_no_live_members(pgid, deadline, escaped)
        if not clean:
            _signal_group(pgid, signal.SIGKILL)
            for pid in escaped:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=KILL_TIMEOUT_S)
            _wait_no_live_members(pgid, time.monotonic() + KILL_TIMEOUT_S, escaped)
        _wait_zombies_reaped(pgid, ZOMBIE_REAP_TIMEOUT_S)
        self._proc = None
        _LIVE_SERVICES.discard(self)
        with contextlib.suppress(OSError), self.log_path.open("ab") as log:
            how = "terminated" if clean else "killed"
            log.write(f"===== {time.strftime('%H:%M:%S')} {how} {self.name}\n".encode())
        if proc.poll() is None or process_group_members(pgid) or any(map(_live, escaped)):
            raise ServiceError(f"{self.name}: process group {pgid} survived SIGKILL")

    def restart(self) -> Self:
        """Stop, then start again on the same port."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        """Start (if needed) and return self."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Always stop."""
        self.stop()

    def __repr__(self) -> str:
        """Short description for test output."""
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.url or ''} {state} log={self.log_path}>"


class HttpService(ServiceProcess):
    """A service listening on a TCP port on 127.0.0.1 (allocated at construction)."""

    def __init__(self, log_dir: Path, **kwargs: Any) -> None:
        """Like :class:`ServiceProcess`, but always with a port (a free one unless given)."""
        if kwargs.get("port") is None:
            kwargs["port"] = free_port()
        super().__init__(log_dir, **kwargs)

    @property
    def port(self) -> int:
        """The TCP port."""
        assert self._port is not None
        return self._port

    @property
    def url(self) -> str:
        """Base URL ``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"


@atexit.register
def _stop_leftovers() -> None:
    for service in list(_LIVE_SERVICES):
        with contextlib.suppress(Exception):
            service.stop(timeout=3.0)


# --------------------------------------------------------------------------------------------
# MLflow
# --------------------------------------------------------------------------------------------


class MlflowServer(HttpService):
    """``mlflow server`` on SQLite, with proxied artifact serving (``mlflow-artifacts:/``).

    Artifacts are uploaded and downloaded through the server itself, so any client that can reach
    the URL can log and load models, and no client needs file-system access or S3 credentials.
    """

    name = "mlflow-server"

    def __init__(
        self,
        workdir: Path,
        *,
        artifacts_destination: str | None = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        startup_timeout: float = MLFLOW_STARTUP_TIMEOUT_S,
    ) -> None:
        """State lives in ``workdir/mlflow.db`` and ``workdir/artifacts`` (or the destination)."""
        workdir = Path(workdir)
        self.workdir = workdir
        self.backend_store_uri = f"sqlite:///{workdir / 'mlflow.db'}"
        self.artifacts_destination = artifacts_destination or str(workdir / "artifacts")
        merged = {
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **(env or {}),
        }
        super().__init__(
            workdir, env=merged, cwd=workdir, port=port, startup_timeout=startup_timeout
        )

    def command(self) -> list[str]:
        """The ``mlflow server`` argv."""
        return [
            venv_executable("mlflow"),
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            self.artifacts_destination,
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def is_healthy(self) -> bool:
        """GET /health answers 200."""
        return http_request(f"{self.url}/health")[0] == 200

    def env(self) -> dict[str, str]:
        """Client environment: ``MLFLOW_TRACKING_URI`` pointing at this server."""
        return {"MLFLOW_TRACKING_URI": self.url}


@contextlib.contextmanager
def mlflow_server(
    workdir: Path,
    *,
    artifacts_destination: str | None = None,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = MLFLOW_STARTUP_TIMEOUT_S,
) -> Iterator[MlflowServer]:
    """Run an MLflow tracking server on ``workdir`` for the duration of the block."""
    server = MlflowServer(
        workdir,
        artifacts_destination=artifacts_destination,
        env=env,
        startup_timeout=startup_timeout,
    )
    with server:
        yield server


# --------------------------------------------------------------------------------------------
# S3 (moto server mode)
# --------------------------------------------------------------------------------------------


class MotoS3Server(HttpService):
    """``moto_server`` on 127.0.0.1: an in-memory S3 (and friends) reachable over HTTP.

    State is in memory: a restart comes back empty.
    """

    name = "moto-server"

    def __init__(
        self,
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        startup_timeout: float = MOTO_STARTUP_TIMEOUT_S,
    ) -> None:
        """Logs go to ``workdir/moto-server.log``."""
        super().__init__(
            Path(workdir), env=env, cwd=Path(workdir), port=port, startup_timeout=startup_timeout
        )

    def command(self) -> list[str]:
        """The ``moto_server`` argv."""
        return [venv_executable("moto_server"), "-H", HOST, "-p", str(self.port)]

    def is_healthy(self) -> bool:
        """Any HTTP response at all."""
        http_request(f"{self.url}/")
        return True

    def env(self) -> dict[str, str]:
        """Client environment for boto3, dagster-aws and MLflow's S3 artifact store."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_S3_ENDPOINT_URL": self.url,
        }


@contextlib.contextmanager
def moto_s3_server(
    workdir: Path, *, startup_timeout: float = MOTO_STARTUP_TIMEOUT_S
) -> Iterator[MotoS3Server]:
    """Run a moto S3 server for the duration of the block."""
    with MotoS3Server(workdir, startup_timeout=startup_timeout) as server:
        yield server


# --------------------------------------------------------------------------------------------
# Dagster
# --------------------------------------------------------------------------------------------

_DAEMON_HEALTH_QUERY = (
    "{ instance { daemonHealth { allDaemonStatuses "
    "{ daemonType required healthy lastHeartbeatTime } } } }"
)


class _DagsterBase(ServiceProcess):
    """Shared settings of the Dagster processes: DAGSTER_HOME, code location, working dir."""

    def __init__(
        self,
        workdir: Path,
        dagster_home: Path,
        env: Mapping[str, str] | None,
        cwd: Path,
        module: str | None,
        *,
        port: int | None,
        startup_timeout: float,
    ) -> None:
        self.dagster_home = Path(dagster_home)
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        self.module = module
        merged = {**(env or {}), "DAGSTER_HOME": str(self.dagster_home)}
        super().__init__(
            Path(workdir), env=merged, cwd=Path(cwd), port=port, startup_timeout=startup_timeout
        )

    def _location_args(self) -> list[str]:
        return ["-m", self.module] if self.module else []


class _DagsterHttp(_DagsterBase):
    """A Dagster process that serves the UI and GraphQL."""

    def __init__(
        self,
        workdir: Path,
        dagster_home: Path,
        env: Mapping[str, str] | None,
        cwd: Path,
        module: str | None = None,
        *,
        port: int | None = None,
        startup_timeout: float = DAGSTER_STARTUP_TIMEOUT_S,
    ) -> None:
        """Logs in ``workdir``; ``-m module`` if given, else ``workspace.yaml`` in ``cwd``."""
        super().__init__(
            workdir,
            dagster_home,
            env,
            cwd,
            module,
            port=port if port is not None else free_port(),
            startup_timeout=startup_timeout,
        )

    @property
    def port(self) -> int:
        """The webserver port."""
        assert self._port is not None
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the webserver."""
        return f"http://{HOST}:{self.port}"

    def graphql(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """POST a GraphQL query; return ``data``, raising :class:`ServiceError` on errors."""
        status, body = http_request(
            f"{self.url}/graphql",
            payload={"query": query, "variables": dict(variables or {})},
            timeout=timeout,
        )
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise ServiceError(f"GraphQL answered {status} with non-JSON: {body[:200]!r}") from exc
        if status != 200 or document.get("errors"):
            raise ServiceError(f"GraphQL answered {status}: {document.get('errors')}")
        return document["data"]

    def webserver_healthy(self) -> bool:
        """/server_info answers 200 and GraphQL answers ``{ version }``."""
        if http_request(f"{self.url}/server_info")[0] != 200:
            return False
        return bool(self.graphql("{ version }", timeout=HTTP_TIMEOUT_S).get("version"))

    def daemon_statuses(self) -> list[dict[str, Any]]:
        """``allDaemonStatuses`` as reported by the webserver."""
        data = self.graphql(_DAEMON_HEALTH_QUERY, timeout=HTTP_TIMEOUT_S)
        return list(data["instance"]["daemonHealth"]["allDaemonStatuses"])

    def daemons_healthy(self, since: float | None = None) -> bool:
        """Every required daemon is healthy, with a heartbeat at or after ``since`` (epoch s)."""
        statuses = [s for s in self.daemon_statuses() if s["required"]]
        return bool(statuses) and all(
            s["healthy"] and (since is None or (s["lastHeartbeatTime"] or 0) >= since - 1)
            for s in statuses
        )


class DagsterWebserver(_DagsterHttp):
    """``dagster-webserver`` alone (pair it with :class:`DagsterDaemon` on the same home)."""

    name = "dagster-webserver"

    def command(self) -> list[str]:
        """The ``dagster-webserver`` argv."""
        return [
            venv_executable("dagster-webserver"),
            "-h",
            HOST,
            "-p",
            str(self.port),
            *self._location_args(),
        ]

    def is_healthy(self) -> bool:
        """The webserver answers /server_info and GraphQL."""
        return self.webserver_healthy()


class DagsterDev(_DagsterHttp):
    """``dagster dev``: webserver, daemon and code server in one process group."""

    name = "dagster-dev"

    def command(self) -> list[str]:
        """The ``dagster dev`` argv."""
        return [
            venv_executable("dagster"),
            "dev",
            "-h",
            HOST,
            "-p",
            str(self.port),
            *self._location_args(),
        ]

    def is_healthy(self) -> bool:
        """Webserver answers and every required daemon heartbeated since this launch."""
        return self.webserver_healthy() and self.daemons_healthy(since=self.started_at)


class DagsterDaemon(_DagsterBase):
    """``dagster-daemon run`` alone; it has no port (``.port`` and ``.url`` are None).

    Healthy when every daemon the instance requires has written a heartbeat since this launch,
    read from the instance in ``dagster_home`` (the probe opens it in the calling process, so a
    ``dagster.yaml`` that reads environment variables needs them set here too).
    """

    name = "dagster-daemon"
    poll_interval = 1.0  # each probe opens the instance

    def __init__(
        self,
        workdir: Path,
        dagster_home: Path,
        env: Mapping[str, str] | None,
        cwd: Path,
        module: str | None = None,
        *,
        startup_timeout: float = DAGSTER_STARTUP_TIMEOUT_S,
    ) -> None:
        """Settings as for the other Dagster processes; the daemon serves no port."""
        super().__init__(
            workdir, dagster_home, env, cwd, module, port=None, startup_timeout=startup_timeout
        )

    def command(self) -> list[str]:
        """The ``dagster-daemon run`` argv."""
        return [venv_executable("dagster-daemon"), "run", *self._location_args()]

    def heartbeats(self) -> dict[str, float]:
        """Latest heartbeat time (epoch s) per daemon type, and the required types (key '')."""
        from dagster import DagsterInstance

        with DagsterInstance.from_config(str(self.dagster_home)) as instance:
            beats = {k: v.timestamp for k, v in instance.get_daemon_heartbeats().items()}
            required = instance.get_required_daemon_types()
        return {kind: beats.get(kind, 0.0) for kind in required}

    def is_healthy(self) -> bool:
        """Every required daemon type heartbeated since this launch."""
        config = self.dagster_home / "dagster.yaml"
        custom_storage = config.exists() and "storage" in config.read_text()
        if not custom_storage and not (self.dagster_home / "history" / "runs.db").exists():
            return False  # let the daemon create the SQLite storage before we open it
        since = (self.started_at or 0.0) - 1
        beats = self.heartbeats()
        return bool(beats) and all(stamp >= since for stamp in beats.values())


# The handles start on entry and always stop on exit, so the classes are the context managers.
dagster_dev = DagsterDev  # ``dagster dev`` (``-m module``, else workspace.yaml in ``cwd``)
dagster_webserver = DagsterWebserver  # ``dagster-webserver`` alone
dagster_daemon = DagsterDaemon  # ``dagster-daemon run`` alone


def _revive(service: ServiceProcess) -> None:
    if not service.running:
        service.start()


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory per test session for the shared services' state and logs."""
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def _mlflow_session_server(services_dir: Path) -> Iterator[MlflowServer]:
    with mlflow_server(services_dir / "mlflow") as server:
        yield server


@pytest.fixture(scope="session")
def _s3_session_server(services_dir: Path) -> Iterator[MotoS3Server]:
    with moto_s3_server(services_dir / "moto") as server:
        yield server


@pytest.fixture
def mlflow_service(_mlflow_session_server: MlflowServer) -> Iterator[MlflowServer]:
    """The session's shared MLflow server, running when the test starts.

    Shared state: use unique experiment and model names. A test may stop it; it is brought back
    (same port, same store) afterwards. Use ``private_mlflow_service`` for a store of your own.
    """
    _revive(_mlflow_session_server)
    yield _mlflow_session_server
    _revive(_mlflow_session_server)


@pytest.fixture
def s3_service(_s3_session_server: MotoS3Server) -> Iterator[MotoS3Server]:
    """The session's shared moto S3 server, running when the test starts (use unique buckets)."""
    _revive(_s3_session_server)
    yield _s3_session_server
    _revive(_s3_session_server)


@pytest.fixture
def private_mlflow_service(tmp_path: Path) -> Iterator[MlflowServer]:
    """An MLflow server with its own store in ``tmp_path/mlflow``, stopped after the test."""
    with mlflow_server(tmp_path / "mlflow") as server:
        yield server


# --------------------------------------------------------------------------------------------
# Measurement: python -m eval_assets_tests.support.services
# --------------------------------------------------------------------------------------------

_MEASURE_DEFS = """\
from dagster import Definitions, asset


@asset
def hello() -> int:
    return 1


defs = Definitions(assets=[hello])
"""


def _measure(label: str, factory: Callable[[], contextlib.AbstractContextManager[Any]]) -> None:
    with factory() as service:
        time.sleep(1.0)
        rss = service.rss_bytes() / 2**20
        print(f"{label:<20} start-up {service.startup_seconds:6.1f} s   RSS {rss:7.0f} MiB")
        began = time.monotonic()
    print(f"{label:<20} stop {time.monotonic() - began:6.1f} s")


def main() -> None:
    """Start each service once and print its start-up time and resident memory."""
    with tempfile.TemporaryDirectory(prefix="services-measure-") as tmp:
        root = Path(tmp)
        home = root / "home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        (root / "measure_defs.py").write_text(_MEASURE_DEFS)
        _measure("moto_server", lambda: moto_s3_server(root / "moto"))
        _measure("mlflow server", lambda: mlflow_server(root / "mlflow"))
        _measure(
            "dagster dev",
            lambda: dagster_dev(root / "dev", home, {}, root, module="measure_defs"),
        )
        _measure(
            "dagster-webserver",
            lambda: dagster_webserver(root / "web", home, {}, root, module="measure_defs"),
        )
        _measure(
            "dagster-daemon",
            lambda: dagster_daemon(root / "daemon", home, {}, root, module="measure_defs"),
        )


if __name__ == "__main__":
    main()
