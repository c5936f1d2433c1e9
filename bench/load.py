"""Paced telemetry load: button status messages at a fixed rate from several MQTT clients.

Run by bench/pipeline.py as a child process, so that its publishing shares neither a GIL nor a
clock with the bench's press publisher. Every 10 ms tick it publishes what is due by then
(rate x elapsed time), round-robin over its clients, and between ticks reads their PUBACKs.
When it falls behind (a tick started late) it catches up on the next tick and records by how
much, so "achieved" below is what really went out. It writes one JSON result to --out.

    python bench/load.py --port 1883 --rate 10000 --duration 20 --qos 1 --out load.json
"""

from __future__ import annotations

import argparse
import os
import select
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from harness import Publisher

TICK_S = 0.01
DRAIN_S = 10.0  # after the last publish, how long QoS 1 acknowledgements may take


@dataclass
class LoadResult:
    """What the generator did; rates are messages per second over `elapsed_s`."""

    rate_target: float
    duration_s: float
    qos: int
    publishers: int
    devices: int
    published: int = 0
    acked: int = 0
    errors: int = 0
    started_at: float = 0.0  # time.time() of the first tick
    ended_at: float = 0.0  # time.time() after the last publish
    elapsed_s: float = 0.0
    achieved_msg_s: float = 0.0
    acked_msg_s: float | None = None
    late_ticks: int = 0  # ticks that began more than one tick late
    max_behind_ms: float = 0.0  # the most the schedule was behind at a tick's start
    cpu_s: float = 0.0  # this process's CPU time while publishing


class Fleet:
    """The status messages of one client's devices: one school, seq counting up per device."""

    def __init__(self, school: str, devices: int) -> None:
        self.topics = [f"campus/{school}/button/b{d + 1}/status" for d in range(devices)]
        self.next = 0

    def take(self, count: int, now: datetime) -> list[tuple[str, bytes]]:
        """`count` messages; ts distinct per message so that InfluxDB keeps every point."""
        out = []
        for i in range(count):
            n, self.next = self.next, self.next + 1
            seq, topic = n // len(self.topics), self.topics[n % len(self.topics)]
            body = {"seq": seq, "ts": now + timedelta(microseconds=i), "battery": 80.0, "rssi": -60}
            out.append((topic, orjson.dumps(body, option=orjson.OPT_UTC_Z)))
        return out


def service(pubs: list[Publisher], until: float) -> None:
    """Read acknowledgements and write queued packets until perf_counter() reaches `until`."""
    while (left := until - time.perf_counter()) > 0:
        by_sock = {p.client.socket(): p for p in pubs}
        writers = [s for s, p in by_sock.items() if p.client.want_write()]
        readable, writable, _ = select.select(list(by_sock), writers, [], left)
        for sock in readable:
            by_sock[sock].client.loop_read()
        for sock in writable:
            by_sock[sock].client.loop_write()
    for pub in pubs:
        pub.client.loop_misc()


def run(pubs: list[Publisher], fleets: list[Fleet], result: LoadResult) -> None:
    """Publish on schedule for the duration, then wait for the outstanding PUBACKs."""
    start, cpu0 = time.perf_counter(), time.process_time()
    result.started_at = time.time()
    tick, sent, total = 0, 0, int(result.rate_target * result.duration_s)
    while sent < total:
        elapsed = time.perf_counter() - start
        behind = elapsed - tick * TICK_S
        result.late_ticks += behind > TICK_S
        result.max_behind_ms = max(result.max_behind_ms, behind * 1000)
        due = min(int(result.rate_target * elapsed), total)
        now, share = datetime.now(UTC), due - sent
        for i, pub in enumerate(pubs):
            for topic, payload in fleets[i].take(share // len(pubs) + (i < share % len(pubs)), now):
                pub.publish(topic, payload, result.qos)
        sent = due
        tick = max(tick + 1, int(elapsed / TICK_S) + 1)
        service(pubs, start + tick * TICK_S)
    result.ended_at, result.elapsed_s = time.time(), time.perf_counter() - start
    result.cpu_s = time.process_time() - cpu0
    result.published = sent
    if result.qos > 0:
        drain(pubs, sent)


def drain(pubs: list[Publisher], target: int) -> None:
    """Service the clients until every QoS 1 message is acknowledged or DRAIN_S passed."""
    deadline = time.perf_counter() + DRAIN_S
    while sum(p.acked for p in pubs) < target and time.perf_counter() < deadline:
        service(pubs, time.perf_counter() + TICK_S)


def finish(pubs: list[Publisher], result: LoadResult) -> LoadResult:
    """Fill in the counts and rates."""
    result.errors = sum(p.errors for p in pubs)
    result.acked = sum(p.acked for p in pubs)
    if result.elapsed_s:
        result.achieved_msg_s = result.published / result.elapsed_s
        if result.qos > 0:
            result.acked_msg_s = result.acked / result.elapsed_s
    return result


def main() -> None:
    """Connect, wait for --start-at, publish, write the result."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True, help="broker port on 127.0.0.1")
    p.add_argument("--rate", type=float, required=True, help="messages per second, all clients")
    p.add_argument("--duration", type=float, required=True, help="seconds of publishing")
    p.add_argument("--qos", type=int, choices=(0, 1), default=0, help="QoS of every message")
    p.add_argument("--publishers", type=int, default=4, help="MQTT clients (default: 4)")
    p.add_argument("--devices", type=int, default=1000, help="devices, all clients (default 1000)")
    p.add_argument("--school", default="load", help="school id prefix; client i uses <prefix>i")
    p.add_argument("--start-at", type=float, default=0.0, help="time.time() to start at")
    p.add_argument("--out", type=Path, required=True, help="where the JSON result goes")
    a = p.parse_args()
    result = LoadResult(a.rate, a.duration, a.qos, a.publishers, a.devices)
    per_client = max(1, a.devices // a.publishers)
    fleets = [Fleet(f"{a.school}{i + 1}", per_client) for i in range(a.publishers)]
    tag = f"{a.school}-{os.getpid()}"
    pubs = [Publisher(a.port, f"bench-{tag}-{i}", threaded=False) for i in range(a.publishers)]
    try:
        time.sleep(max(0.0, a.start_at - time.time()))
        run(pubs, fleets, result)
    finally:
        for pub in pubs:
            pub.close()
    a.out.write_bytes(orjson.dumps(asdict(finish(pubs, result))))


if __name__ == "__main__":
    main()
