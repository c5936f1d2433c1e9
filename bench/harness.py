"""The bench's harness: the processes it starts and stops, an MQTT publisher that counts, and
the CPU time of each process (and of other jobs on this machine).

Imported by the bench's scripts (run as scripts, so bench/ is on sys.path); it reuses the
launchers of simulators/servers.py and never imports tests/.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt import __version__ as paho_version
from paho.mqtt.enums import CallbackAPIVersion

from simulators.servers import (
    InfluxDB,
    Mosquitto,
    children_of,
    find_binary,
    log_tail,
    spawn,
    stop_process,
)

REPO = Path(__file__).resolve().parents[1]
ENDPOINT = Path(__file__).resolve().with_name("endpoint.py")
DB = "bench"
INFLIGHT = 100  # docker/mosquitto.conf's max_inflight_messages: no client needs more
STALL_S = 30.0  # stop waiting when a count has not grown for this long
POLL_S = 0.05
READY_S = 30.0


class BenchError(RuntimeError):
    """A process did not start or the run cannot go on; the message says which and why."""


def note(text: str) -> None:
    """Progress on stderr, so that stdout holds only the figures."""
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def get_json(url: str) -> Any:
    """GET a JSON document."""
    with urllib.request.urlopen(url, timeout=10.0) as resp:
        return json.loads(resp.read())


def http_ok(url: str) -> bool:
    """True when url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def poll_until(
    read: Callable[[], int], target: int, interval: float = POLL_S
) -> tuple[int, float | None]:
    """Poll read() until it reaches target or stops growing for STALL_S.

    Returns the last value and the wall-clock time it reached target (None if it never did).
    """
    last, progressed = -1, time.monotonic()
    while True:
        value = read()
        if value >= target:
            return value, time.time()
        if value > last:
            last, progressed = value, time.monotonic()
        elif time.monotonic() - progressed > STALL_S:
            return value, None
        time.sleep(interval)


# --- the processes ---------------------------------------------------------------------------


class Stack:
    """mosquitto, influxd, police endpoint and gateway: started in order, stopped in reverse."""

    def __init__(self, root: Path, video: dict[str, bool | int] | None = None) -> None:
        self.root = root
        self.video = video or {}  # [video_quality] settings other than the defaults
        self.broker = Mosquitto()
        self.influx = InfluxDB()
        # Chosen together so that no two are the same (free_port() twice can be).
        ports = free_ports(5)
        self.police_port, self.api_port, self.broker_port, *self.influx_ports = ports
        self.children: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self) -> None:
        """Start everything and wait until each answers; BenchError with its log if not."""
        note(f"starting mosquitto, influxd, police endpoint and gateway in {self.root}")
        self.broker.start(self.root / "mosquitto", self.broker_port)
        http, rpc = self.influx_ports
        self.influx.start(self.root / "influxdb", http, rpc_port=rpc)
        police = [str(ENDPOINT), "--port", str(self.police_port)]
        self._spawn("police", police, self.police("/healthz"))
        config = self.root / "campusgw.toml"
        config.write_text(gateway_config(self), encoding="utf-8")
        gateway = ["-m", "gateway", "run", "--config", str(config)]
        self._spawn("gateway", gateway, self.api("/healthz"))

    def _spawn(self, name: str, args: list[str], ready_url: str) -> None:
        log = self.root / f"{name}.log"
        proc = spawn([sys.executable, *args], log, env=clean_env())
        self.children.append((name, proc, log))
        deadline = time.monotonic() + READY_S
        while not http_ok(ready_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                why = "was not ready in time" if proc.poll() is None else f"exited {proc.poll()}"
                raise BenchError(f"{name} {why}; last lines of {log}:\n{log_tail(log, 30)}")
            time.sleep(POLL_S)

    def stop(self) -> None:
        """Stop every child by PID, the gateway first so that it flushes."""
        while self.children:
            name, proc, _ = self.children.pop()
            code = stop_process(proc, timeout=20)
            note(f"stopped {name} (pid {proc.pid}, exit code {code})")
        self.influx.stop()
        self.broker.stop()

    def gateway_exit(self) -> int | None:
        """The gateway's exit code if it died during the run, else None."""
        return next((p.poll() for n, p, _ in self.children if n == "gateway"), None)

    def pids(self) -> dict[str, int]:
        """PID of every process the stack runs, by name."""
        pids = {name: proc.pid for name, proc, _ in self.children}
        for name, server in (("mosquitto", self.broker), ("influxd", self.influx)):
            if server.pid is not None:
                pids[name] = server.pid
        if "gateway" in pids:  # its video quality worker processes, once it started them
            workers = sorted(
                pid for pid, cmd in children_of(pids["gateway"]) if "spawn_main" in cmd
            )
            pids |= {f"vqd-worker-{n}": pid for n, pid in enumerate(workers, 1)}
        return pids

    def stats(self) -> dict[str, Any]:
        """The gateway's GET /api/stats; BenchError when it does not answer."""
        try:
            return dict(get_json(self.api("/api/stats")))
        except (OSError, ValueError) as exc:
            raise BenchError(f"gateway API /api/stats did not answer: {exc}") from exc

    def police(self, path: str) -> str:
        """URL of a path of the police endpoint."""
        return f"http://127.0.0.1:{self.police_port}{path}"

    def api(self, path: str) -> str:
        """URL of a path of the gateway API."""
        return f"http://127.0.0.1:{self.api_port}{path}"


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback TCP ports that nothing listens on right now."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def clean_env() -> dict[str, str]:
    """This environment minus CAMPUSGW_*, which would override the bench's gateway config."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CAMPUSGW_")}


def gateway_config(stack: Stack) -> str:
    """The gateway's TOML: defaults except addresses, a fresh store, short retry delays and
    evidence frames kept in the run's folder (video quality on, default workers, unless
    stack.video says otherwise)."""
    video = {"enabled": True} | stack.video
    video_keys = "".join(f"{k} = {str(v).lower()}\n" for k, v in video.items())
    return (
        'log_level = "INFO"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {stack.broker.port}\nclient_id = "campusgw-bench"\n\n'
        f'[influxdb]\nurl = "{stack.influx.url}"\ndatabase = "{DB}"\n\n'
        f'[store]\npath = "{stack.root / "gateway" / "gateway.db"}"\n\n'
        f'[api]\nhost = "127.0.0.1"\nport = {stack.api_port}\n\n'
        f'[video_quality]\n{video_keys}evidence_dir = "{stack.root / "evidence"}"\n\n'
        "[linkage]\nretry_initial_s = 0.05\nretry_max_s = 1.0\n\n"
        f'[linkage.endpoints.police]\nurl = "{stack.police("/alarms")}"\n\n'
        '[linkage.routes]\npolice = ["police"]\nmedical = ["police"]\nfire = []\nintrusion = []\n'
    )


# --- MQTT publishing -------------------------------------------------------------------------


class Publisher:
    """One paho client that counts acknowledgements.

    Threaded, paho's own network thread (loop_start) sends what `publish` queues; unthreaded,
    `publish` writes to the socket at once and the caller reads answers with `pump`, so the
    moment a message leaves does not wait for another thread to get the GIL.
    """

    def __init__(self, port: int, client_id: str, *, threaded: bool = True) -> None:
        self.acked = 0
        self.target = 0
        self.done_at = 0.0  # perf_counter() when `target` messages were acknowledged
        self.errors = 0
        self.threaded = threaded
        self.connected = False
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(INFLIGHT)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        if threaded:
            self.client.loop_start()
        deadline = time.monotonic() + READY_S
        while not self.connected and time.monotonic() < deadline:
            self.pump(POLL_S)
        if not self.connected:
            self.close()
            raise BenchError(f"MQTT client {client_id} did not connect to port {port}")

    def _on_connect(self, *_: Any) -> None:
        self.connected = True

    def _on_publish(self, *_: Any) -> None:
        self.acked += 1  # only the thread running paho's loop writes it
        if self.acked == self.target:
            self.done_at = time.perf_counter()

    def pump(self, seconds: float) -> int:
        """Let paho read and write for up to `seconds`; the count of acknowledged messages."""
        if self.threaded:
            time.sleep(seconds)
        else:
            self.client.loop(timeout=seconds)
        return self.acked

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Send (unthreaded) or queue (threaded) one message."""
        if self.client.publish(topic, payload, qos).rc != paho.MQTT_ERR_SUCCESS:
            self.errors += 1

    def publish_all(self, messages: list[tuple[str, bytes]], qos: int) -> None:
        """Publish a prepared list as fast as paho takes it."""
        for topic, payload in messages:
            self.publish(topic, payload, qos)

    def close(self) -> None:
        """Disconnect and join the network thread."""
        self.client.disconnect()
        if self.threaded:
            self.client.loop_stop()


def publish_plans(
    pubs: list[Publisher], plans: list[list[tuple[str, bytes]]], qos: int
) -> tuple[float, float]:
    """One thread per publisher hands its plan to paho; returns the start (wall, perf)."""
    for pub, plan in zip(pubs, plans, strict=True):
        pub.target = len(plan)
    threads = [
        threading.Thread(target=pub.publish_all, args=(plan, qos), name=f"publisher-{i}")
        for i, (pub, plan) in enumerate(zip(pubs, plans, strict=True))
    ]
    t0_wall, t0 = time.time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return t0_wall, t0


def split(total: int, parts: int) -> list[int]:
    """total as `parts` near-equal shares."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system, all threads) each process used so far; gone ones are left out."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """cpu_seconds of the processes, plus `machine`: every process on this machine."""
    return cpu_seconds(pids) | {"machine": machine_busy_seconds()}


def cpu_shares(
    first: dict[str, float], last: dict[str, float], span: float, extra: dict[str, float]
) -> dict[str, float]:
    """% of one core per process between two snapshots `span` seconds apart, `extra` shares
    overriding; `other` is what processes the bench did not start used (another job on a
    shared machine skews every figure)."""
    if span <= 0:
        return {}
    cpu = {n: (last[n] - first[n]) / span * 100 for n in last if n in first} | extra
    machine = cpu.pop("machine")
    cpu["other"] = max(0.0, machine - sum(cpu.values()))
    return cpu


class CpuWindow:
    """CPU shares of the stack's processes, the bench and everything else, from creation on."""

    def __init__(self, stack: Stack) -> None:
        self.pids = stack.pids() | {"bench": os.getpid()}
        self.started = time.monotonic()
        self.first = cpu_snapshot(self.pids)

    def shares(self) -> dict[str, float]:
        """% of one core each used since creation."""
        span = time.monotonic() - self.started
        return cpu_shares(self.first, cpu_snapshot(self.pids), span, {})


def wait_quiet(limit_s: float, pids: dict[str, int], max_pct: float = 15.0) -> float:
    """Wait up to limit_s for a second in which processes other than `pids` and the bench used
    less than max_pct % of one core; returns that last second's figure (one second at least)."""
    pids = pids | {"bench": os.getpid()}
    deadline = time.monotonic() + limit_s
    while True:
        first, started = cpu_snapshot(pids), time.monotonic()
        time.sleep(1.0)
        span = time.monotonic() - started
        other = cpu_shares(first, cpu_snapshot(pids), span, {})["other"]
        if other < max_pct or time.monotonic() >= deadline:
            return other


def machine_busy_seconds() -> float:
    """CPU time all processes on this machine used so far, all CPUs (/proc/stat, not idle)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def version_of(argv: list[str], prefix: str) -> str:
    """The version a server prints, e.g. `mosquitto -h` -> 2.0.11."""
    try:
        argv = [find_binary(argv[0]), *argv[1:]]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    for line in (out.stdout + out.stderr).splitlines():
        if line.startswith(prefix):
            return line.removeprefix(prefix).strip()
    return "unknown"


def machine_facts() -> dict[str, Any]:
    """What the figures depend on besides the code."""
    git = ["git", "-C", str(REPO), "describe", "--always", "--dirty"]
    commit = subprocess.run(git, capture_output=True, text=True, check=False).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "mosquitto": version_of(["mosquitto", "-h"], "mosquitto version"),
        "influxd": version_of(["influxd", "version"], "InfluxDB"),
        "paho_mqtt": paho_version,
        "commit": commit or "unknown",
    }
