"""Start real mosquitto, influxd and VictoriaMetrics as subprocesses for the integration tests
and `campusgw demo`.

Each server runs with its config and data in its own directory, on loopback, and is ready when
polling says so (a TCP connect for mosquitto, GET /ping for influxd, GET /health for
VictoriaMetrics), never after a fixed sleep. Children run in their own process group, so a
Ctrl-C at the terminal reaches only the parent, which stops them by PID in order; on Linux they
also get SIGTERM when the thread that started them exits, so a crashed parent leaves no orphan.
Start them from a long-lived thread.

    with Mosquitto().start(tmp_path / "mqtt", free_port()) as broker:
        ...  # broker.host, broker.port
"""

from __future__ import annotations

import ctypes
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

LOOPBACK = "127.0.0.1"
MOSQUITTO_TEMPLATE = Path(__file__).resolve().parents[1] / "docker" / "mosquitto.conf"
_PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """A server binary is missing, did not become ready, or died; the message says which."""


_GIVEN: set[int] = set()  # ports free_port handed out in this process


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now, and that this process was not
    given before (two calls before either port is bound could otherwise get the same one)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        if port not in _GIVEN:
            if len(_GIVEN) > 10_000:  # a long-lived caller: forget (the ephemeral range is ~28k)
                _GIVEN.clear()
            _GIVEN.add(port)
            return port


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts connections on host:port or holds it bound."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def find_binary(name: str) -> str:
    """The path of a server binary on PATH or in /usr/sbin, else a ServerError naming the fix."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise ServerError(
            f"{name} is not installed (not on PATH nor in /usr/sbin); run `make setup`"
        )
    return found


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, or a note that it does not exist."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when its parent thread exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None  # not Linux: the parent's try/finally is the only guard

    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def spawn(
    argv: list[str], log_path: Path, *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a child with stdout and stderr appended to log_path, in its own process group."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            process_group=0,
            preexec_fn=_die_with_parent(),
        )


def children_of(parent: int) -> dict[int, str]:
    """The processes whose parent is `parent` (from /proc), with their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().decode()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return found


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM the child by PID, SIGKILL it after timeout seconds; return its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


class _Server:
    """What mosquitto and influxd share: one child process, a port, a directory, a log."""

    name = "server"
    ready_timeout_s = 30.0

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = Path()
        self.port = 0
        self.log_path = Path()

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return LOOPBACK

    @property
    def pid(self) -> int | None:
        """PID of the running child, None when stopped."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def alive(self) -> bool:
        """True while the child runs."""
        return self.pid is not None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child (SIGTERM, then SIGKILL after timeout); a no-op when stopped."""
        if self.proc is not None:
            stop_process(self.proc, timeout)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL the child, as a crash would; nothing is saved on the way out."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> Self:
        """Stop, then start again with the same directory, port and state."""
        if not self.port:
            raise ServerError(f"{self.name} was never started; call start() first")
        self.stop()
        return self._launch()

    def tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        return log_tail(self.log_path, lines)

    def _configure(self) -> list[str]:
        """Write the config file; return the command line."""
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _start(self, dir: Path, port: int, log_path: Path | None) -> Self:
        if self.alive():
            raise ServerError(f"{self.name} already runs (pid {self.pid})")
        if port_in_use(LOOPBACK, port):
            raise ServerError(f"port {port} is in use; {self.name} cannot listen on it")
        self.dir = dir.resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.log_path = (log_path or self.dir / f"{self.name}.log").resolve()
        return self._launch()

    def _launch(self) -> Self:
        self.proc = spawn(self._configure(), self.log_path)
        deadline = time.monotonic() + self.ready_timeout_s
        while not self._ready():
            code = self.proc.poll()
            if code is not None or time.monotonic() > deadline:
                why = (
                    f"exited with code {code} before it was ready"
                    if code is not None
                    else f"was not ready after {self.ready_timeout_s:.0f} s"
                )
                self.stop()
                raise ServerError(
                    f"{self.name} on port {self.port} {why}; "
                    f"last lines of {self.log_path}:\n{self.tail()}"
                )
            time.sleep(0.05)
        return self

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def mosquitto_conf(template: str, port: int, data_dir: Path, log_path: Path) -> str:
    """docker/mosquitto.conf with the listener, persistence directory and log file replaced."""
    replace = {
        "listener": f"listener {port} {LOOPBACK}",
        "persistence_location": f"persistence_location {data_dir}/",
        "log_dest": f"log_dest file {log_path}",
    }
    seen = dict.fromkeys(replace, 0)
    out = ["# Generated by simulators/servers.py from docker/mosquitto.conf; do not edit."]
    for line in template.splitlines():
        key = line.split(maxsplit=1)[0] if line.strip() else ""
        if key in replace:
            seen[key] += 1
            line = replace[key]
        out.append(line)
    wrong = {key: n for key, n in seen.items() if n != 1}
    if wrong:
        raise ServerError(f"the mosquitto template must have each of these lines once: {wrong}")
    if os.geteuid() == 0:
        out.append(f"user {getpass.getuser()}")  # as root, mosquitto would switch to `mosquitto`
    return "\n".join(out) + "\n"


class Mosquitto(_Server):
    """A mosquitto broker configured from docker/mosquitto.conf, on loopback."""

    name = "mosquitto"
    ready_timeout_s = 15.0

    def start(self, dir: Path, port: int, log_path: Path | None = None) -> Self:
        """Write dir/mosquitto.conf, start the broker and wait until it accepts connections."""
        return self._start(dir, port, log_path)

    def _configure(self) -> list[str]:
        try:
            template = MOSQUITTO_TEMPLATE.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ServerError(f"broker template {MOSQUITTO_TEMPLATE} is missing") from exc
        conf = self.dir / "mosquitto.conf"
        conf.write_text(mosquitto_conf(template, self.port, self.dir, self.log_path))
        return [find_binary("mosquitto"), "-c", str(conf)]

    def _ready(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5):
                return True
        except OSError:
            return False


class InfluxError(RuntimeError):
    """InfluxDB answered a request with an error; the message carries its answer."""


class InfluxDB(_Server):
    """An InfluxDB 1.x server with its meta, data and WAL directories in one directory."""

    name = "influxd"

    def __init__(self) -> None:
        super().__init__()
        self.rpc_port = 0

    @property
    def url(self) -> str:
        """Base URL of the HTTP API, e.g. http://127.0.0.1:8086."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(
        self, dir: Path, http_port: int, log_path: Path | None = None, rpc_port: int | None = None
    ) -> Self:
        """Write dir/influxdb.conf, start influxd and wait until GET /ping answers 204."""
        self.rpc_port = rpc_port or free_port()
        return self._start(dir, http_port, log_path)

    def _configure(self) -> list[str]:
        d = self.dir
        conf = d / "influxdb.conf"
        conf.write_text(
            "# Generated by simulators/servers.py; do not edit.\n"
            # Upstream 1.x reads reporting-disabled, Debian's build reporting-enabled; each
            # ignores the other's key.
            "reporting-disabled = true\n"
            "reporting-enabled = false\n"
            f'bind-address = "{LOOPBACK}:{self.rpc_port}"\n\n'
            f'[meta]\n  dir = "{d / "meta"}"\n  logging-enabled = false\n\n'
            f'[data]\n  dir = "{d / "data"}"\n  wal-dir = "{d / "wal"}"\n'
            "  query-log-enabled = false\n\n"
            f'[http]\n  bind-address = "{LOOPBACK}:{self.port}"\n  log-enabled = false\n\n'
            "[monitor]\n  store-enabled = false\n\n"
            "[continuous_queries]\n  enabled = true\n\n"
            '[logging]\n  level = "warn"\n  suppress-logo = true\n'
        )
        return [find_binary("influxd"), "-config", str(conf)]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1.0) as resp:
                return int(resp.status) == 204
        except OSError:
            return False

    def _request(self, path: str, params: dict[str, str], body: bytes | None) -> bytes:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, data=body, timeout=30.0) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            raise InfluxError(f"{path} answered {exc.code}: {exc.read().decode()}") from exc

    def query(self, q: str, db: str = "") -> dict[str, Any]:
        """Run InfluxQL through /query (POST unless it is a SELECT or SHOW); the JSON answer."""
        read_only = q.lstrip().upper().startswith(("SELECT", "SHOW"))
        params = {"q": q, "db": db} if db else {"q": q}
        body = None if read_only else b""
        answer: dict[str, Any] = json.loads(self._request("/query", params, body))
        return answer

    def write(self, db: str, lines: str | Iterable[str], precision: str = "ns") -> None:
        """Write line protocol through /write; raises InfluxError unless InfluxDB answers 204."""
        text = lines if isinstance(lines, str) else "\n".join(lines)
        self._request("/write", {"db": db, "precision": precision}, text.encode())

    def count_points(self, db: str, measurement: str, field: str = "seq") -> int:
        """Points in a measurement, counted on one field every point has (the gateway's `seq`).

        `count(*)` answers one column per field, so it cannot say how many points there are.
        A database that does not exist yet holds 0 points; any other error raises InfluxError.
        """
        name = measurement.replace('"', '\\"')
        result = self.query(f'SELECT count("{field}") FROM "{name}"', db)["results"][0]
        if "error" in result:
            if "database not found" in result["error"]:
                return 0
            raise InfluxError(f"counting {measurement} in {db}: {result['error']}")
        series = result.get("series") or [{"values": [[0, 0]]}]
        return int(series[0]["values"][0][1])

    def count(self, measurement: str, db: str) -> int:
        """Same as count_points(db, measurement): the number of points in a measurement."""
        return self.count_points(db, measurement)


class VictoriaMetrics(_Server):
    """A single-node VictoriaMetrics: a time-series database that accepts InfluxDB line
    protocol on /write and /api/v2/write (each field becomes a metric `measurement_field`) and
    answers PromQL/MetricsQL and /api/v1/export. Stands in for an InfluxDB v2 API in tests."""

    name = "victoria-metrics"

    @property
    def url(self) -> str:
        """Base URL of the HTTP API, e.g. http://127.0.0.1:8428."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, dir: Path, http_port: int, log_path: Path | None = None) -> Self:
        """Start with its data in dir/data and wait until GET /health answers 200."""
        return self._start(dir, http_port, log_path)

    def _configure(self) -> list[str]:
        return [
            find_binary("victoria-metrics"),
            f"-storageDataPath={self.dir / 'data'}",
            f"-httpListenAddr={LOOPBACK}:{self.port}",
            "-loggerLevel=WARN",
        ]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1.0) as resp:
                return int(resp.status) == 200
        except OSError:
            return False

    def _get(self, path: str, params: dict[str, str]) -> bytes:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30.0) as resp:
            return bytes(resp.read())

    def export(self, selector: str) -> list[dict[str, Any]]:
        """Every series matching a series selector, e.g. `{__name__="button_status_seq"}`,
        with all its samples (`values`, `timestamps`), after flushing what was just written."""
        self._get("/internal/force_flush", {})  # rows arrive in memory first, searchable ~1 s later
        # `end` defaults to now: a point stamped a few ms ahead (a device clock) would be missed.
        params = {"match[]": selector, "end": str(int(time.time()) + 86_400)}
        text = self._get("/api/v1/export", params).decode()
        return [json.loads(line) for line in text.splitlines() if line]

    def count_samples(self, metric: str) -> int:
        """Samples stored under one metric name over all its series, e.g. `button_status_seq`
        (measurement button_status, field seq): one per point written."""
        return sum(len(series["values"]) for series in self.export(f'{{__name__="{metric}"}}'))
