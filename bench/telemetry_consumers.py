"""What bench/telemetry.py measures on one load: the servers, and the three consumers of it.

- the gateway (`python -m gateway run`, defaults except addresses and paths);
- mosquitto_sub, draining the same topics into a file (`%U %t %p`: receive time, topic, payload);
- mqtt2influxdb, a Python MQTT -> InfluxDB bridge from PyPI, in its own venv under bench/.peers/.

Each says how much of the load has landed: points InfluxDB took over HTTP (its own counter
`pointsWrittenOK`, SHOW STATS) for the two that write there, lines written for mosquitto_sub;
and when each probe message landed (bench/telemetry_load.py sends them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import BenchError, clean_env, free_ports, get_json, http_ok, note

from simulators.servers import InfluxDB, Mosquitto, find_binary, log_tail, spawn, stop_process

DB = "bench"
TOPIC = "campus/+/button/+/status"
READY_S = 30.0
PROBE_POLL_S = 0.02
PROBE_WINDOW_US = 2_000_000  # probes are looked for back to this long before the newest seen
# mqtt2influxdb 2.x writes through influxdb3-python to /api/v3/write_lp or /api/v2/write, which
# InfluxDB 1.6 does not have; 1.5.2 is the newest that writes InfluxDB 1.x (/write). It builds
# `paho.mqtt.client.Client()` with the 1.x callback API, so it needs paho-mqtt < 2.
PEER_VERSION = "1.5.2"
PEER_PINS = (f"mqtt2influxdb=={PEER_VERSION}", "paho-mqtt<2")
PEER_DIR = Path(__file__).resolve().with_name(".peers") / f"mqtt2influxdb-{PEER_VERSION}"


class Servers:
    """mosquitto and influxd in a directory, on free loopback ports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.broker, self.influx = Mosquitto(), InfluxDB()
        self.broker_port, self.http_port, self.rpc_port, self.api_port = free_ports(4)

    def start(self) -> None:
        """Start both and wait until they answer."""
        self.broker.start(self.root / "mosquitto", self.broker_port)
        self.influx.start(self.root / "influxdb", self.http_port, rpc_port=self.rpc_port)
        self.influx.query(f"CREATE DATABASE {DB}")

    def stop(self) -> None:
        """Stop both by PID."""
        self.influx.stop()
        self.broker.stop()

    def pids(self) -> dict[str, int]:
        """PIDs of the servers that run."""
        pids = {"mosquitto": self.broker.pid, "influxd": self.influx.pid}
        return {name: pid for name, pid in pids.items() if pid is not None}

    def points_written(self) -> int:
        """Points InfluxDB took over HTTP since it started (SHOW STATS, httpd pointsWrittenOK)."""
        series = self.influx.query("SHOW STATS FOR 'httpd'")["results"][0]["series"][0]
        values = dict(zip(series["columns"], series["values"][0], strict=True))
        return int(values["pointsWrittenOK"])

    def count(self, school_prefix: str) -> int:
        """Exact count of the status points of the schools whose id starts with the prefix."""
        q = f"SELECT count(seq) FROM button_status WHERE school =~ /^{school_prefix}/"
        result = self.influx.query(q, DB)["results"][0]
        series = result.get("series") or [{"values": [[0, 0]]}]
        return int(series[0]["values"][0][1])


class Probes:
    """Polls InfluxDB every PROBE_POLL_S for probe points and notes when each first showed.

    A point counts as landed halfway between the poll that first saw it and the one before
    (so each delay is within +-PROBE_POLL_S / 2 plus a query's time). The publish time is the
    point's `ts` field if it has one (mqtt2influxdb stamps points with its own clock, to the
    second) and else the point's time (the gateway writes the device's ts)."""

    def __init__(self, influx: InfluxDB) -> None:
        self.url = f"{influx.url}/query"
        self.landed: dict[tuple[str, str, int], tuple[float, float]] = {}  # -> (sent, landed)
        self._first: dict[tuple[str, str, int], float] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._newest_us = int(time.time() * 1e6)
        self._thread = threading.Thread(target=self._run, name="probes", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        previous = time.time()
        while not self._stop.wait(PROBE_POLL_S):
            now = time.time()
            try:
                self._poll((previous + now) / 2)
            except (OSError, ValueError, KeyError):
                self.errors += 1
            previous = now

    def _poll(self, landed: float) -> None:
        since = self._newest_us - PROBE_WINDOW_US
        q = f"SELECT * FROM button_status WHERE device =~ /^probe/ AND time > {since}u"
        params = urllib.parse.urlencode({"db": DB, "q": q, "epoch": "u"})
        with urllib.request.urlopen(f"{self.url}?{params}", timeout=5) as resp:
            result = json.loads(resp.read())["results"][0]
        for series in result.get("series", []):
            cols = series["columns"]
            for row in series["values"]:
                self._note(dict(zip(cols, row, strict=True)), landed)

    def _note(self, point: dict[str, Any], landed: float) -> None:
        # A point can show with some fields still missing (InfluxDB 1.x makes the fields of a
        # write visible one by one): it is landing, so its first sighting counts.
        key = (point["school"], point["device"], int(point["time"]))
        first = self._first.setdefault(key, landed)
        if key in self.landed:
            return
        if "ts" in point:  # mqtt2influxdb's points: the publish time is this field
            if point["ts"] is None:
                return
            sent = datetime.fromisoformat(point["ts"]).timestamp()
        else:
            sent = point["time"] / 1e6
        self.landed[key] = (sent, first)
        self._newest_us = max(self._newest_us, int(point["time"]))

    def between(self, start: float, end: float) -> list[float]:
        """Delays (s) of the probes published between start and end that have landed."""
        return [lnd - snt for snt, lnd in list(self.landed.values()) if start <= snt <= end]

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        self._thread.join()


class Consumer:
    """One process that drains the load; subclasses say how it starts and what landed."""

    name = "consumer"

    def __init__(self, servers: Servers, root: Path, qos: int) -> None:
        self.servers, self.root, self.qos = servers, root, qos
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / f"{self.name}.log"
        self.probes: Probes | None = None

    def start(self) -> None:
        """Start the process; wait until it runs (readiness of the data path is checked by
        the bench with a first message)."""
        self.proc = spawn(self.argv(), self.log, env=clean_env())
        self.wait_ready()
        self.probes = Probes(self.servers.influx)

    def argv(self) -> list[str]:
        """The command line."""
        raise NotImplementedError

    def wait_ready(self) -> None:
        """Wait for the process to be up (default: a moment's check that it did not exit)."""
        time.sleep(0.5)
        self.check_alive()

    def check_alive(self) -> None:
        """BenchError with the log's tail when the process exited."""
        if self.proc is not None and self.proc.poll() is not None:
            tail = log_tail(self.log, 30)
            raise BenchError(f"{self.name} exited {self.proc.poll()}; {self.log}:\n{tail}")

    def landed(self) -> int:
        """Points (or messages) this consumer has delivered so far."""
        try:
            return self.servers.points_written()
        except (OSError, ValueError, KeyError, IndexError):
            return -1

    def delays(self, start: float, end: float) -> list[float]:
        """Publish -> landed delays of the probes published between start and end."""
        return self.probes.between(start, end) if self.probes else []

    def pids(self) -> dict[str, int]:
        """The consumer's PID by its name, while it runs."""
        alive = self.proc is not None and self.proc.poll() is None
        return {self.name: self.proc.pid} if alive and self.proc else {}

    def stats(self) -> dict[str, Any]:
        """Counters of its own, if it has any."""
        return {}

    def stop(self) -> None:
        """Stop polling and the process, by PID."""
        if self.probes is not None:
            self.probes.stop()
        if self.proc is not None:
            code = stop_process(self.proc, timeout=20)
            note(f"stopped {self.name} (pid {self.proc.pid}, exit code {code})")


class Gateway(Consumer):
    """`python -m gateway run` with the defaults except addresses, paths and --gateway-set."""

    name = "gateway"

    def __init__(self, servers: Servers, root: Path, qos: int, overrides: list[str]) -> None:
        super().__init__(servers, root, qos)
        self.overrides = overrides

    def argv(self) -> list[str]:
        config = self.root / "campusgw.toml"
        config.write_text(self.config(), encoding="utf-8")
        return [sys.executable, "-m", "gateway", "run", "--config", str(config)]

    def config(self) -> str:
        """The TOML; --gateway-set section.key=value lines are added to their sections."""
        s, d = self.servers, self.root / "gateway"
        sections: dict[str, list[str]] = {
            "mqtt": ['host = "127.0.0.1"', f"port = {s.broker_port}", 'client_id = "bench-gw"'],
            "influxdb": [f'url = "{s.influx.url}"', f'database = "{DB}"'],
            "spool": [f'path = "{d / "spool"}"'],
            "store": [f'path = "{d / "gateway.db"}"', f'registry_path = "{d / "registry.db"}"'],
            "api": ['host = "127.0.0.1"', f"port = {s.api_port}"],
            "video_quality": [f'evidence_dir = "{d / "evidence"}"'],
        }
        for item in self.overrides:
            key, value = item.split("=", 1)
            section, name = key.strip().rsplit(".", 1)
            sections.setdefault(section, []).append(f"{name} = {value.strip()}")
        body = "\n\n".join(f"[{name}]\n" + "\n".join(lines) for name, lines in sections.items())
        return f'log_level = "INFO"\n\n{body}\n'

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_S
        while not http_ok(self.api("/healthz")):
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"gateway not ready in time; {self.log}:\n{log_tail(self.log)}")
            time.sleep(0.05)

    def api(self, path: str) -> str:
        """URL of a path of the gateway's API."""
        return f"http://127.0.0.1:{self.servers.api_port}{path}"

    def stats(self) -> dict[str, Any]:
        try:
            return dict(get_json(self.api("/api/stats")))
        except (OSError, ValueError):
            return {}


class MosquittoSub(Consumer):
    """mosquitto_sub writing every message's receive time, topic and payload to a file."""

    name = "mosquitto_sub"

    def __init__(self, servers: Servers, root: Path, qos: int) -> None:
        super().__init__(servers, root, qos)
        self.out = root / "mosquitto_sub.out"
        self._read = 0
        self._lines = 0
        self._probes: list[tuple[float, float]] = []

    def start(self) -> None:
        # stdout to the file, stderr to the log: the file holds only messages.
        session = ["-c", "-i", "bench-sub"] if self.qos else []
        port = str(self.servers.broker_port)
        argv = [find_binary("mosquitto_sub"), "-h", "127.0.0.1", "-p", port, "-t", TOPIC,
                "-q", str(self.qos), *session, "-F", "%U %t %p"]  # fmt: skip
        with self.out.open("wb") as out, self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=log, stdin=subprocess.DEVNULL, process_group=0
            )
        self.wait_ready()

    def landed(self) -> int:
        with self.out.open("rb") as f:
            f.seek(self._read)
            data = f.read()
        whole = data.rfind(b"\n") + 1
        self._read += whole
        chunk = data[:whole]
        self._lines += chunk.count(b"\n")
        if b"/probe" in chunk:
            for line in chunk.splitlines():
                if b"/probe" in line:
                    self._probes.append(_probe_line(line))
        return self._lines

    def delays(self, start: float, end: float) -> list[float]:
        self.landed()
        return [lnd - snt for snt, lnd in self._probes if start <= snt <= end]


def _probe_line(line: bytes) -> tuple[float, float]:
    """(sent, received) of a `%U %t %p` line: the payload's ts, mosquitto_sub's clock."""
    received, _topic, payload = line.split(b" ", 2)
    ts = json.loads(payload)["ts"]
    return datetime.fromisoformat(ts).timestamp(), float(received)


class Mqtt2InfluxDB(Consumer):
    """mqtt2influxdb 1.5.2 mapping the status messages to the same points the gateway writes
    (tags school, kind, device; fields seq, battery, rssi) plus `ts`, to time the probes."""

    name = "mqtt2influxdb"

    def argv(self) -> list[str]:
        install_peer()
        config = self.root / "mqtt2influxdb.yaml"
        config.write_text(self.config(), encoding="utf-8")
        return [str(PEER_DIR / "bin" / "mqtt2influxdb"), "-c", str(config)]

    def config(self) -> str:
        """Its YAML (schema in its config.py): one point per status message."""
        s = self.servers
        fields = "".join(f"      {f}: $.payload.{f}\n" for f in ("seq", "battery", "rssi", "ts"))
        names = ("school", "kind", "device")
        tags = "".join(f"      {t}: $.topic[{i}]\n" for i, t in enumerate(names, 1))
        return (
            f"mqtt:\n  host: 127.0.0.1\n  port: {s.broker_port}\n"
            f"influxdb:\n  host: 127.0.0.1\n  port: {s.http_port}\n  database: {DB}\n"
            f"points:\n  - measurement: button_status\n    topic: {TOPIC}\n"
            f"    fields:\n{fields}    tags:\n{tags}"
        )


def install_peer() -> None:
    """Create bench/.peers/mqtt2influxdb-<version> (a venv, pip from PyPI) unless it is there."""
    python = PEER_DIR / "bin" / "python"
    if (PEER_DIR / "bin" / "mqtt2influxdb").exists():
        return
    note(f"installing mqtt2influxdb {PEER_VERSION} into {PEER_DIR} (once)")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_DIR)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *PEER_PINS], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BenchError(f"could not install mqtt2influxdb {PEER_VERSION}: {exc}") from exc


def peer_versions() -> str:
    """`mqtt2influxdb 1.5.2, paho-mqtt 1.6.1, influxdb 5.3.2` as pip has them in the venv."""
    pip = [str(PEER_DIR / "bin" / "python"), "-m", "pip", "list", "--format", "json"]
    try:
        found = json.loads(subprocess.run(pip, capture_output=True, check=True).stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return "not installed"
    wanted = {"mqtt2influxdb", "paho-mqtt", "influxdb"}
    return ", ".join(f"{p['name']} {p['version']}" for p in found if p["name"] in wanted)
