"""The registry scale bench's registry, gateway stack, fleet and HTTP timing (for
bench/registry_scale.py).

The registry comes from `campusgw simulate registry --csv`, topped up with corridor cameras
(`x1`, `x2` ... spread round-robin over the schools) when the generator's ~16.5 devices per
school fall short of the wanted device count. The fleet is one status message per registered
device, published by a few paho clients; publishing pauses while the gateway lags more than a
window of messages behind, so that the broker's queue for the gateway never overflows.
"""

from __future__ import annotations

import csv
import http.client
import json
import math
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
from harness import BenchError, Publisher, Stack, note
from paho.mqtt.enums import CallbackAPIVersion

CHUNK = 2000  # messages published between two looks at the gateway's progress
STATS_EVERY_S = 2.0  # GET /api/stats walks every device (~0.4 s at 100k): ask it sparingly
STALL_S = 120.0
LONG_S = 86_400  # availability timeouts: nobody goes offline by silence during the run
LOAD_LINE = re.compile(r"registry version (\d+): (\d+) schools, (\d+) devices \(([\d.]+) s\)")


def campusgw(*args: str) -> tuple[float, str]:
    """Run `python -m gateway ARGS`; its wall time and output; BenchError when it fails."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"campusgw {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return wall, done.stdout + done.stderr


def make_registry(folder: Path, schools: int, devices: int, counties: int, seed: int) -> float:
    """folder/schools.csv and devices.csv with `schools` schools and at least `devices`
    devices; returns the generator's wall time."""
    wall, _ = campusgw(
        "simulate", "registry", "--schools", str(schools), "--counties", str(counties),
        "--seed", str(seed), "--vendor-schools", "0", "--csv", str(folder),
    )  # fmt: skip
    top_up(folder / "schools.csv", folder / "devices.csv", devices)
    return wall


def top_up(schools_csv: Path, devices_csv: Path, wanted: int) -> int:
    """Append corridor cameras x1.. round-robin over the schools until there are `wanted`
    devices; returns how many were added (none when there are enough already)."""
    with schools_csv.open(encoding="utf-8", newline="") as f:
        school_ids = [row["id"] for row in csv.DictReader(f)]
    with devices_csv.open(encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
        have = sum(1 for _ in f)
    missing = max(0, wanted - have)
    per_school: Counter[str] = Counter()
    with devices_csv.open("a", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, header)
        for n in range(missing):
            school = school_ids[n % len(school_ids)]
            per_school[school] += 1
            number = per_school[school]
            writer.writerow({
                "school": school, "kind": "camera", "id": f"x{number}", "zone": "main",
                "location": "corridor", "power": "mains", "install_date": "2024-09-01",
                "linkage": "", "name": f"扩容走廊摄像机{number}",
            })  # fmt: skip
    return missing


def read_keys(devices_csv: Path) -> list[tuple[str, str, str]]:
    """(school, kind, id) of every device in a devices.csv, in file order."""
    with devices_csv.open(encoding="utf-8", newline="") as f:
        return [(row["school"], row["kind"], row["id"]) for row in csv.DictReader(f)]


def parse_import(output: str) -> dict[str, float]:
    """The figures of `campusgw registry import`'s summary line."""
    found = re.search(r"in ([\d.]+) s \(files read and checked in ([\d.]+) s, stored in ([\d.]+)",
                      output)  # fmt: skip
    if found is None:
        raise BenchError(f"no summary line in the import's output:\n{output[-2000:]}")
    total, read, stored = map(float, found.groups())
    return {"reported_s": total, "read_s": read, "stored_s": stored}


def registry_loads(log: Path) -> list[dict[str, float]]:
    """Every `registry version N: ... (X s)` line of the gateway's log, in order."""
    text = log.read_text(encoding="utf-8", errors="replace")
    return [
        {"version": int(v), "schools": int(s), "devices": int(d), "load_s": float(t)}
        for v, s, d, t in LOAD_LINE.findall(text)
    ]


# --- the stack --------------------------------------------------------------------------------


class ScaleStack(Stack):
    """harness.Stack without the police endpoint, its gateway reading a given registry."""

    def __init__(self, root: Path, registry_db: Path, refresh_s: float) -> None:
        super().__init__(root)
        self.registry_db = registry_db
        self.refresh_s = refresh_s

    def start(self) -> None:
        """mosquitto, influxd, then the gateway; BenchError with its log if one fails."""
        note(f"starting mosquitto, influxd and the gateway in {self.root}")
        self.broker.start(self.root / "mosquitto", self.broker_port)
        http, rpc = self.influx_ports
        self.influx.start(self.root / "influxdb", http, rpc_port=rpc)
        config = self.root / "campusgw.toml"
        config.write_text(self.config(), encoding="utf-8")
        self._spawn(
            "gateway", ["-m", "gateway", "run", "--config", str(config)], self.api("/healthz")
        )

    def config(self) -> str:
        """Defaults except addresses, the registry, the refresh and long silence timeouts."""
        timeouts = "".join(
            f"{kind}_timeout_s = {LONG_S}\n" for kind in ("mains", "battery", "camera", "gate")
        )
        return (
            'log_level = "INFO"\n\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.broker.port}\n'
            'client_id = "campusgw-scale"\n\n'
            f'[influxdb]\nurl = "{self.influx.url}"\ndatabase = "registry_scale"\n\n'
            f'[store]\npath = "{self.root / "gateway" / "gateway.db"}"\n'
            f'registry_path = "{self.registry_db}"\n\n'
            f'[api]\nhost = "127.0.0.1"\nport = {self.api_port}\n\n'
            f"[availability]\n{timeouts}\n"
            f"[coverage]\nrefresh_s = {self.refresh_s}\n"
        )

    def gateway_memory(self) -> dict[str, float]:
        """The gateway's VmRSS and VmHWM, MB (/proc/PID/status)."""
        status = Path(f"/proc/{self.gateway()[0]}/status").read_text().splitlines()
        fields = dict(line.split(":", 1) for line in status)
        return {name: int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM")}

    def gateway(self) -> tuple[int, Path]:
        """The gateway's PID and log file."""
        for name, proc, log in self.children:
            if name == "gateway":
                return proc.pid, log
        raise BenchError("the gateway is not running")


# --- the fleet --------------------------------------------------------------------------------


def status_messages(keys: list[tuple[str, str, str]]) -> list[tuple[str, bytes]]:
    """One canonical status message per device: cameras recording and keeping 90 days (more
    than any school asks), gates closed, so every school can meet its rates."""
    ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    extra: dict[str, dict[str, Any]] = {
        "button": {},
        "camera": {"fps": 25.0, "recording": True, "retention_days": 90},
        "gate": {"door": "closed", "locked": True},
    }
    payloads = {kind: orjson.dumps({"seq": 1, "ts": ts, **more}) for kind, more in extra.items()}
    return [(f"campus/{s}/{k}/{d}/status", payloads[k]) for s, k, d in keys]


def publish_fleet(
    port: int, messages: list[tuple[str, bytes]], clients: int, qos: int, window: int,
    progress: Callable[[], int],
) -> dict[str, float]:  # fmt: skip
    """Publish every message round-robin over `clients` paho clients, never more than `window`
    ahead of progress() (0: no limit). Returns publish wall time and the last PUBACK's time."""
    pubs = [Publisher(port, f"registry-scale-{i}") for i in range(clients)]
    try:
        for i, pub in enumerate(pubs):
            pub.target = len(range(i, len(messages), clients)) if qos else 0
        started, ahead = time.perf_counter(), Throttled(progress, STATS_EVERY_S)
        for first in range(0, len(messages), CHUNK):
            if window:
                caught_up = lambda first=first: ahead() >= first - window  # noqa: E731
                wait_for(caught_up, "the gateway to catch up", 0.1)
            for n in range(first, min(first + CHUNK, len(messages))):
                topic, payload = messages[n]
                pubs[n % clients].publish(topic, payload, qos)
        queued_s = time.perf_counter() - started
        if qos:
            wait_for(lambda: sum(p.acked for p in pubs) >= len(messages), "every PUBACK")
        acked = max(p.done_at for p in pubs) - started if qos else queued_s
        return {"started": started, "queued_s": queued_s, "acked_s": acked,
                "errors": sum(p.errors for p in pubs)}  # fmt: skip
    finally:
        for pub in pubs:
            pub.close()


class Throttled:
    """A reading taken at most every `every_s`; the last one in between."""

    def __init__(self, read: Callable[[], int], every_s: float) -> None:
        self.read, self.every_s = read, every_s
        self.value, self.at = 0, -float("inf")

    def __call__(self) -> int:
        if time.monotonic() - self.at >= self.every_s:
            self.value, self.at = self.read(), time.monotonic()
        return self.value


class Announcements:
    """Counts the devices the gateway announced online (retained `{"state": "online", "by":
    "gateway"}` on campus/+/+/+/availability): how far its outgoing queue has drained."""

    def __init__(self, port: int) -> None:
        self.online: set[str] = set()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="registry-scale-sub")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda client, *_: client.subscribe("campus/+/+/+/availability")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, msg: paho.MQTTMessage) -> None:
        if b'"gateway"' in msg.payload and b'"online"' in msg.payload:
            self.online.add(msg.topic)

    def close(self) -> None:
        """Disconnect and join the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(done: Callable[[], bool], what: str, every_s: float = 0.05) -> None:
    """Poll done() every every_s; BenchError after STALL_S without it becoming true."""
    deadline = time.monotonic() + STALL_S
    while not done():
        if time.monotonic() > deadline:
            raise BenchError(f"waited {STALL_S:.0f} s for {what}")
        time.sleep(every_s)


# --- HTTP -------------------------------------------------------------------------------------


def get(conn: http.client.HTTPConnection, path: str) -> tuple[bytes, Any]:
    """GET on a keep-alive connection (again on a new one if the server closed it while idle:
    uvicorn does after 5 s); the body and its JSON; BenchError unless 200."""
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
    except (http.client.RemoteDisconnected, ConnectionError):
        conn.close()
        conn.request("GET", path)
        resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise BenchError(f"GET {path} answered {resp.status}: {body[:300]!r}")
    return body, json.loads(body)


def time_gets(port: int, path: str, count: int, budget_s: float, rate: float) -> dict[str, Any]:
    """Latency of `count` GETs of path (after one warm-up), at most budget_s in all, started
    `rate` a second (0: back to back) so that every query is sampled over the same span of the
    gateway's life (its coverage refreshes stall the event loop now and then)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body, _ = get(conn, path)
    times: list[float] = []
    first = time.perf_counter()
    while len(times) < count and time.perf_counter() < first + budget_s:
        if rate:
            time.sleep(max(0.0, first + len(times) / rate - time.perf_counter()))
        started = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        times.append((time.perf_counter() - started) * 1000)
    conn.close()
    return {"requests": len(times), "p50_ms": round(percentile(times, 50), 2),
            "p99_ms": round(percentile(times, 99), 2), "max_ms": round(max(times), 2),
            "bytes": len(body)}  # fmt: skip


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]
