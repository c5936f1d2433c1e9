"""Per-message CPU of the gateway's telemetry path, stage by stage (issue 7: "measure before and
after"), on the messages bench/telemetry_load.py publishes.

No servers: the MQTT stage feeds pre-encoded PUBLISH packets through a socketpair into a real
MqttLink (paho-mqtt reading them as the event loop's reader callback does, and for QoS 1
sending the PUBACKs); the other stages call the gateway's own code, wired as gateway/runtime.py
wires it, with the alarm store faked (these messages raise no alarms). Each stage is timed over
--rounds batches of 500 (the MQTT adapter's batch) after a warm-up; the figure is the median
batch divided by 500, in microseconds of one core per message. Never run as a test.

Stages:
  mqtt qos0/qos1  socket bytes -> paho packet parsing -> MqttLink queue (-> PUBACKs sent)
  decode          the driver's decode of one payload (bytes -> canonical model)
  line            lineproto.to_line of a decoded message
  seen            AvailabilityTracker.seen of a decoded message
  ingest          Ingest.handle of a batch: rate limit, topic, decode, line, availability
  spool           Spool.append of a batch's lines (fsync off: the fsync is disk wait, not CPU)
                  + Spool.read + the writer's join + Spool.ack

    .venv/bin/python bench/ingest_micro.py                 # all stages, the bench's payloads
    .venv/bin/python bench/ingest_micro.py --mix mixed     # button/camera status, gate events
    .venv/bin/python bench/ingest_micro.py --profile ingest    # cProfile of one stage, top 25
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import cProfile
import pstats
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.alarms import NvrTroubles
from gateway.config import load_settings
from gateway.fleet import Fleet
from gateway.ingest import Ingest, parse_topic
from gateway.lineproto import to_line
from gateway.models import DeviceMessage
from gateway.mqtt import Inbound, MqttLink, roles
from gateway.runtime import DriverRouter
from gateway.spool import Spool
from gateway.stats import Stats

EXAMPLE = Path(__file__).parents[1] / "campusgw.example.toml"
BATCH = 500
DEVICES = 2000  # bench/telemetry.py's default: 4 publishers x 500
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
Batch = list[tuple[str, bytes]]


def bench_messages(rounds: int) -> list[Batch]:
    """telemetry_load.py's button status, byte for byte: compact JSON, ts to the microsecond."""
    out, n = [], 0
    for _ in range(rounds):
        batch = []
        for _ in range(BATCH):
            school, device = divmod(n % DEVICES, 500)
            ts = (T0 + timedelta(microseconds=n * 37)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            payload = f'{{"seq":{n // DEVICES},"ts":"{ts}","battery":80.0,"rssi":-60}}'
            batch.append((f"campus/tq{school}a/button/b{device + 1}/status", payload.encode()))
            n += 1
        out.append(batch)
    return out


def mixed_messages(rounds: int) -> list[Batch]:
    """Button, camera and gate status of 30 schools, a gate `open` event every 50 messages."""
    out, n = [], 0
    for _ in range(rounds):
        batch = []
        for i in range(BATCH):
            device, n = n % DEVICES, n + 1
            ts = (T0 + timedelta(milliseconds=n)).isoformat().replace("+00:00", "Z")
            if i % 50 == 0:
                topic, body = f"campus/s{device % 30}/gate/g{device}/event", '"event": "open"'
            elif i % 3 == 0:
                topic = f"campus/s{device % 30}/camera/c{device}/status"
                body = '"fps": 25.0, "recording": true, "retention_days": 31.5, "rssi": -61'
            elif i % 3 == 1:
                topic = f"campus/s{device % 30}/gate/g{device}/status"
                body = '"door": "closed", "locked": true, "battery": 64.5, "power": "battery"'
            else:
                topic = f"campus/s{device % 30}/button/b{device}/status"
                body = '"battery": 80.5, "rssi": -70, "power": "battery"'
            batch.append((topic, f'{{"seq": {n // DEVICES}, "ts": "{ts}", {body}}}'.encode()))
        out.append(batch)
    return out


class NullStore:
    """Commits instantly: the bench measures the path, not SQLite."""

    async def commit(
        self, alarms: Sequence[Any], letters: Sequence[Any], restores: Any = ()
    ) -> list[str]:
        return [f"a{n}" for n in range(len(alarms))]


def timed(work: list[Batch], warm: int, run: Callable[[Batch], None]) -> float:
    """Median µs per message of `run` over the batches after the first `warm`."""
    for batch in work[:warm]:
        run(batch)
    times = []
    for batch in work[warm:]:
        started = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / BATCH * 1e6


def atimed(work: list[Batch], warm: int, run: Callable[[Batch], Awaitable[None]]) -> float:
    async def go() -> float:
        for batch in work[:warm]:
            await run(batch)
        times = []
        for batch in work[warm:]:
            started = time.perf_counter()
            await run(batch)
            times.append(time.perf_counter() - started)
        return statistics.median(times) / BATCH * 1e6

    return asyncio.run(go())


# --- stages ------------------------------------------------------------------------------------


class _LoopStub:
    """The reader/writer registrations MqttLink makes; the bench drives paho itself."""

    def add_writer(self, *args: Any) -> None: ...
    def remove_writer(self, *args: Any) -> None: ...
    def add_reader(self, *args: Any) -> None: ...
    def remove_reader(self, *args: Any) -> None: ...


def _publish_packet(topic: str, payload: bytes, qos: int, mid: int) -> bytes:
    name = topic.encode()
    head = len(name).to_bytes(2, "big") + name + (mid.to_bytes(2, "big") if qos else b"")
    length, rest = len(head) + len(payload), bytearray()
    while True:
        length, digit = divmod(length, 128)
        rest.append(digit | (0x80 if length else 0))
        if not length:
            break
    return bytes((0x30 | qos << 1,)) + bytes(rest) + head + payload


def mqtt_stage(work: list[Batch], warm: int, qos: int) -> Callable[[], float]:
    settings = load_settings(EXAMPLE)
    link = MqttLink(settings.mqtt, roles(settings.mqtt)[1], Stats())
    ours, broker = socket.socketpair()
    for sock in (ours, broker):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    ours.setblocking(False)
    client: Any = link._client
    client._sock = ours
    link._loop = _LoopStub()  # type: ignore[assignment]
    link._connected.set()
    wire = [
        b"".join(_publish_packet(t, p, qos, n % 65535 + 1) for n, (t, p) in enumerate(batch))
        for batch in work
    ]
    broker.setblocking(False)

    def run(batch: Batch, data: bytes) -> None:
        broker.sendall(data)
        got: list[Inbound] = []
        expected = sum(not link.role.ignore(topic) for topic, _ in batch)  # events: other session
        while len(got) < expected:
            link._read_ready(ours)
            while not link._queue.empty():
                got.append(link._queue.get_nowait())
        link.ack(got)
        while client.want_write():
            client.loop_write()
        if qos:
            try:
                while broker.recv(1 << 16):
                    pass
            except BlockingIOError:
                pass

    by_batch = {id(b): d for b, d in zip(work, wire, strict=True)}
    return lambda: timed(work, warm, lambda b: run(b, by_batch[id(b)]))


def decoded(work: list[Batch]) -> list[list[DeviceMessage]]:
    settings = load_settings(EXAMPLE)
    router = DriverRouter(settings)
    out = []
    for batch in work:
        msgs = []
        for topic, payload in batch:
            t = parse_topic(topic, "campus")
            msgs.append(DeviceMessage(t, router(t).decode(t.channel, payload), T0))
        out.append(msgs)
    return out


def decode_stage(work: list[Batch], warm: int) -> Callable[[], float]:
    settings = load_settings(EXAMPLE)
    router = DriverRouter(settings)
    parsed = [[(parse_topic(t, "campus"), p) for t, p in batch] for batch in work]
    by_batch = {id(b): ps for b, ps in zip(work, parsed, strict=True)}

    def run(batch: Batch) -> None:
        for topic, payload in by_batch[id(batch)]:
            router(topic).decode(topic.channel, payload)

    return lambda: timed(work, warm, run)


def line_stage(work: list[Batch], warm: int) -> Callable[[], float]:
    msgs = {id(b): m for b, m in zip(work, decoded(work), strict=True)}

    def run(batch: Batch) -> None:
        for msg in msgs[id(batch)]:
            to_line(msg)

    return lambda: timed(work, warm, run)


def seen_stage(work: list[Batch], warm: int) -> Callable[[], float]:
    settings = load_settings(EXAMPLE)
    fleet = Fleet(settings, lambda topic, payload: True, lambda line: None)
    msgs = {id(b): m for b, m in zip(work, decoded(work), strict=True)}

    def run(batch: Batch) -> None:
        for msg in msgs[id(batch)]:
            fleet.tracker.seen(msg)

    return lambda: timed(work, warm, run)


def ingest_stage(work: list[Batch], warm: int) -> Callable[[], float]:
    """Wired as _Parts.wire wires it (fleet, troubles, NVR checks), points kept in a list."""
    loaded = load_settings(EXAMPLE)
    # The limit stays in the path, but high: the bench replays seconds of load in less.
    limits = loaded.limits.model_copy(update={"device_msgs_per_s": 10**9})
    settings = loaded.model_copy(update={"limits": limits})
    points: list[bytes] = []

    async def add_points(lines: list[bytes]) -> None:
        points.extend(lines)

    fleet = Fleet(settings, lambda topic, payload: True, lambda line: None)
    ingest = Ingest(
        settings, DriverRouter(settings), NullStore(), add_points, fleet.tracker, Stats(),
        on_alarms=lambda ids: None, troubles=fleet.troubles, on_changes=fleet.apply,
        nvr=NvrTroubles(fleet.retention_days),
    )  # type: ignore[arg-type]  # fmt: skip

    async def run(batch: Batch) -> None:
        await ingest.handle(batch)
        points.clear()

    return lambda: atimed(work, warm, run)


def spool_stage(work: list[Batch], warm: int) -> Callable[[], float]:
    lines = {id(b): [to_line(m) for m in ms] for b, ms in zip(work, decoded(work), strict=True)}
    where = Path(tempfile.mkdtemp(prefix="ingest-micro-"))
    atexit.register(shutil.rmtree, where, ignore_errors=True)
    spool = Spool(where, 1 << 30, fsync=False)

    def run(batch: Batch) -> None:
        spool.append(lines[id(batch)])
        chunk = spool.read(5000)
        b"\n".join(chunk.lines)
        spool.ack(chunk)

    return lambda: timed(work, warm, run)


STAGES: dict[str, Callable[[list[Batch], int], Callable[[], float]]] = {
    "mqtt qos0": lambda work, warm: mqtt_stage(work, warm, 0),
    "mqtt qos1": lambda work, warm: mqtt_stage(work, warm, 1),
    "decode": decode_stage,
    "line": line_stage,
    "seen": seen_stage,
    "ingest": ingest_stage,
    "spool": spool_stage,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=200, help="timed batches per stage (200)")
    p.add_argument("--repeat", type=int, default=3, help="runs per stage; the best is kept (3)")
    p.add_argument("--mix", choices=("bench", "mixed"), default="bench",
                   help="bench: telemetry_load.py's messages; mixed: three families")  # fmt: skip
    p.add_argument("--profile", choices=sorted(STAGES), help="cProfile one stage instead")
    a = p.parse_args()
    warm = 40
    make = bench_messages if a.mix == "bench" else mixed_messages
    work = make(a.rounds + warm)
    if a.profile:
        measure = STAGES[a.profile](work, warm)
        profiler = cProfile.Profile()
        profiler.runcall(measure)
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        return
    print(f"µs of one core per message, median of {a.rounds} batches of {BATCH}, best of "
          f"{a.repeat}; payloads: {a.mix}; Python {sys.version.split()[0]}")  # fmt: skip
    results = {}
    for name, stage in STAGES.items():
        measure = stage(work, warm)
        results[name] = min(measure() for _ in range(a.repeat))
        print(f"  {name:10} {results[name]:7.2f}")
    for qos in (0, 1):
        total = results[f"mqtt qos{qos}"] + results["ingest"] + results["spool"]
        print(f"  mqtt qos{qos} + ingest + spool = {total:.2f} µs/message"
              f" (at most {1e6 / total:,.0f} messages/s on one core)")  # fmt: skip


if __name__ == "__main__":
    main()
