"""Integration fixtures: real mosquitto, influxd, linkage simulator and gateway processes.

Every server runs as a subprocess on free loopback ports in the test's temp dir, is polled for
readiness (never a fixed sleep) and is stopped by PID in teardown.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.servers import InfluxDB, Mosquitto, free_port, log_tail, spawn, stop_process

pytestmark = pytest.mark.integration


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll until predicate() is truthy; fail naming what we waited for and the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last value: {value!r})")


async def eventually(check: Callable[[], Any], what: str, within_s: float = 5.0) -> Any:
    """wait_for for async tests: poll without blocking the event loop."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        await asyncio.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def get_json(url: str, timeout: float = 5.0) -> Any:
    """GET a JSON document."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: dict[str, Any]) -> Any:
    """POST a JSON document and decode the answer."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5.0) as resp:
        return json.loads(resp.read())


def http_ok(url: str) -> bool:
    """True when url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    """One influxd for the session; each test uses its own database."""
    server = InfluxDB().start(tmp_path_factory.mktemp("influxdb"), free_port())
    yield server
    server.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto per test (persistence on, like production)."""
    server = Mosquitto().start(tmp_path / "mosquitto", free_port())
    yield server
    server.stop()


class Linkage:
    """The police (110) and fire (119) simulator, one process, an HTTP port each."""

    def __init__(self, directory: Path, names: tuple[str, ...] = ("police", "fire")) -> None:
        self.ports = {name: free_port() for name in names}
        self.control_port = free_port()
        argv = [sys.executable, "-m", "gateway", "linkage-sim", "--record", str(directory),
                "--control-port", str(self.control_port)]  # fmt: skip
        for name, port in self.ports.items():
            argv += ["--endpoint", f"{name}:{port}"]
        self.log = directory / "linkage.log"
        self.proc = spawn(argv, self.log)
        wait_for(lambda: http_ok(f"http://127.0.0.1:{self.control_port}/healthz"), 15, "linkage")

    def url(self, name: str, path: str = "/alarms") -> str:
        """URL of an endpoint's path."""
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def received(self, name: str) -> dict[str, Any]:
        """What the endpoint confirmed (answered 2xx)."""
        answer: dict[str, Any] = get_json(f"http://127.0.0.1:{self.control_port}/received/{name}")
        return answer

    def control(self, name: str, **settings: Any) -> None:
        """Change an endpoint's behaviour (mode, slow_ms, fail_next, schedule, secret), through
        the control port so it works even while the endpoint refuses connections."""
        post_json(f"http://127.0.0.1:{self.control_port}/_control/{name}", settings)

    def attempts(self, name: str) -> dict[str, Any]:
        """Every request the endpoint got, answered or not."""
        answer: dict[str, Any] = get_json(f"http://127.0.0.1:{self.control_port}/attempts/{name}")
        return answer

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        stop_process(self.proc)


@pytest.fixture
def linkage(tmp_path: Path) -> Iterator[Linkage]:
    """Police and fire endpoints answering 200."""
    sim = Linkage(tmp_path / "linkage")
    yield sim
    sim.stop()


def config_for(
    directory: Path, broker: Mosquitto, influx_url: str, linkage: Linkage, db: str, api_port: int
) -> dict[str, Any]:
    """The gateway config a test starts from (tests change what they need)."""
    return {
        "mqtt": {"port": broker.port, "client_id": "campusgw-test"},
        "influxdb": {"url": influx_url, "database": db},
        "store": {"path": str(directory / "gateway.db")},
        "api": {"port": api_port},
        "linkage": {
            "retry_initial_s": 0.05,
            "retry_max_s": 1.0,
            "endpoints": {name: {"url": linkage.url(name)} for name in linkage.ports},
            "routes": {
                "police": ["police"],
                "medical": ["police"],
                "fire": ["fire"],
                "intrusion": [],
            },
        },
        "drivers": {"routes": [{"match": "*/gate/kv-*", "driver": "gate_kv"}]},
        # Tests publish bursts of hundreds of messages from one device (mosquitto_pub -l); the
        # per-device limit has tests of its own (test_backpressure.py, test_ingest.py).
        "limits": {"device_msgs_per_s": 1_000_000},
    }


def to_toml(table: dict[str, Any], prefix: str = "") -> str:
    """Just enough TOML for gateway configs: scalars, lists of scalars, tables, arrays of tables."""
    scalars, tables = [], []
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            tables.append(f"[{name}]\n{to_toml(value, name)}")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            tables += [f"[[{name}]]\n{to_toml(item, name)}" for item in value]
        else:
            scalars.append(f"{key} = {json.dumps(value)}")
    return "\n".join(scalars) + "\n\n" + "\n".join(tables)


@pytest.fixture
def linkage3(tmp_path: Path) -> Iterator[Linkage]:
    """Police, a backup police centre (police2) and fire."""
    sim = Linkage(tmp_path / "linkage3", names=("police", "police2", "fire"))
    yield sim
    sim.stop()


class Gateway:
    """`python -m gateway run` as a subprocess with a config pointing at the test's servers."""

    def __init__(
        self, directory: Path, broker: Mosquitto, influx: InfluxDB, linkage: Linkage, db: str
    ) -> None:
        self.dir = directory
        self.db = db
        self.api_port = free_port()
        self.config = directory / "campusgw.toml"
        self.log = directory / "gateway.log"
        self.env: dict[str, str] = {}
        directory.mkdir(parents=True, exist_ok=True)
        self.settings = config_for(directory, broker, influx.url, linkage, db, self.api_port)
        self.proc: subprocess.Popen[bytes] | None = None

    def configure(self, **sections: dict[str, Any]) -> Gateway:
        """Merge settings into the config (one level deep per section) before start()."""
        for section, values in sections.items():
            self.settings.setdefault(section, {}).update(values)
        return self

    def start(self, healthy: bool = True) -> Gateway:
        """Start and wait until /healthz says all is up (or, healthy=False, MQTT is)."""
        self.config.write_text(to_toml(self.settings))
        argv = [sys.executable, "-m", "gateway", "run", "--config", str(self.config)]
        self.proc = spawn(argv, self.log, env={**os.environ, **self.env})
        wait_for(self._healthy if healthy else self.mqtt_connected, 20, "gateway /healthz")
        return self

    def _alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"gateway exited with {self.proc.returncode}:\n{log_tail(self.log, 40)}")

    def _healthy(self) -> bool:
        self._alive()
        return http_ok(self.api("/healthz"))

    def health(self) -> dict[str, Any]:
        """The /healthz document, whatever its status code."""
        try:
            return dict(get_json(self.api("/healthz")))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read()))

    def mqtt_connected(self) -> bool:
        """Both MQTT sessions are up."""
        self._alive()
        try:
            sessions = self.health()["mqtt"].values()
        except (urllib.error.URLError, OSError):
            return False
        return all(session["connected"] for session in sessions)

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        return stop_process(self.proc, timeout=20)

    def api(self, path: str) -> str:
        """URL of an API path."""
        return f"http://127.0.0.1:{self.api_port}{path}"

    def get(self, path: str) -> Any:
        """GET an API path as JSON."""
        return get_json(self.api(path))


@pytest.fixture
def gateway(
    tmp_path: Path,
    broker: Mosquitto,
    influx: InfluxDB,
    linkage: Linkage,
    request: pytest.FixtureRequest,
) -> Iterator[Gateway]:
    """A running gateway with its own InfluxDB database and SQLite file."""
    db = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    gw = Gateway(tmp_path / "gateway", broker, influx, linkage, db).start()
    yield gw
    if gw.proc is not None and gw.proc.poll() is None:
        gw.stop()


def publish_lines(port: int, topic: str, payloads: list[str], qos: int = 1) -> None:
    """Publish each line as one message with the real `mosquitto_pub -l` (not our code)."""
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", str(qos), "-t", topic, "-l"],
        input="\n".join(payloads).encode() + b"\n",
        check=True,
        timeout=60,
    )


def publish(port: int, topic: str, payload: bytes, qos: int = 1) -> None:
    """Publish one message (any bytes) with `mosquitto_pub -s` reading stdin."""
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", str(qos), "-t", topic, "-s"],
        input=payload,
        check=True,
        timeout=30,
    )
