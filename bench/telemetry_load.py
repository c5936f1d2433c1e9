"""Paced MQTT load for bench/telemetry.py: button status messages over one raw MQTT 3.1.1 socket.

Run as a child process (several at once), so that publishing shares no GIL with the bench or
with the other publishers. Unlike bench/load.py (paho), it writes pre-encoded PUBLISH packets
straight to a socket: on a 2-core machine that the broker, the database and the consumer
share, every CPU second the load generator spends is taken from what is being measured, and
paho costs about 20 us of Python per message where this costs about 3.

Every TICK_S it sends what is due by then (rate x elapsed) as one write, and reads PUBACKs
(QoS 1) until the next tick. A tick that starts late catches up and is counted. Each message
carries its send time as `ts` (microseconds apart within a tick, so every point is distinct),
which is also the InfluxDB point time the gateway writes. Every 1/--probe-rate s one of the
messages goes to a probe device (`probe1`..`probeN` round robin, each reporting at most every
2 s so that a consumer that stamps points to the second keeps them apart): bench/telemetry.py
polls for those to time publish -> point visible. Writes one JSON result to --out.

    python bench/telemetry_load.py --port 1883 --rate 5000 --duration 10 --qos 1 \\
        --school tq1a --devices 500 --out load.json
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

TICK_S = 0.005
DRAIN_S = 15.0  # after the last publish, how long QoS 1 acknowledgements may take
MAX_INFLIGHT = 30_000  # unacknowledged QoS 1 messages; below 65,535 packet ids
PROBE_SPACING_S = 2.0


@dataclass
class Result:
    """What this publisher did; rates are messages per second over `elapsed_s`."""

    rate_target: float
    duration_s: float
    qos: int
    devices: int
    published: int = 0
    acked: int = 0
    probes: int = 0
    started_at: float = 0.0  # time.time() of the first tick
    ended_at: float = 0.0  # time.time() after the last write
    elapsed_s: float = 0.0
    achieved_msg_s: float = 0.0
    late_ticks: int = 0  # ticks that began more than one tick late
    max_behind_ms: float = 0.0
    inflight_waits: int = 0  # ticks that waited for PUBACKs (MAX_INFLIGHT reached)
    cpu_s: float = 0.0


def varint(n: int) -> bytes:
    """MQTT's remaining-length encoding."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect(port: int, client_id: str) -> socket.socket:
    """Open a clean MQTT 3.1.1 session with keepalive off; raises when refused."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(cid).to_bytes(2, "big") + cid
    sock.sendall(b"\x10" + varint(len(body)) + body)
    answer = b""
    while len(answer) < 4:
        chunk = sock.recv(4 - len(answer))
        if not chunk:
            raise ConnectionError("broker closed the connection before CONNACK")
        answer += chunk
    if answer[0] != 0x20 or answer[3] != 0:
        raise ConnectionError(f"broker refused CONNECT: {answer.hex()}")
    sock.settimeout(None)
    return sock


class Stream:
    """The messages of one publisher: its school's devices round robin, probes interleaved."""

    def __init__(
        self, school: str, devices: int, probe_devices: int, qos: int, seq_start: int
    ) -> None:
        self.topics = [f"campus/{school}/button/b{d + 1}/status".encode() for d in range(devices)]
        self.probe_topics = [
            f"campus/{school}/button/probe{p + 1}/status".encode() for p in range(probe_devices)
        ]
        self.probe_seq = [seq_start] * probe_devices
        self.seq_start = seq_start
        self.sent = 0
        self.probes = 0
        self.qos = qos
        self.mid = 0
        self._second = -1
        self._prefix = ""

    def _ts(self, us: int) -> str:
        second, micro = divmod(us, 1_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{micro:06d}Z"

    def packet(self, topic: bytes, seq: int, us: int) -> bytes:
        """One PUBLISH packet; QoS 1 gets the next packet id."""
        ts = self._ts(us)
        payload = f'{{"seq":{seq},"ts":"{ts}","battery":80.0,"rssi":-60}}'.encode()
        head = len(topic).to_bytes(2, "big") + topic
        if self.qos:
            self.mid = self.mid % 65535 + 1
            head += self.mid.to_bytes(2, "big")
        return bytes((0x30 | self.qos << 1,)) + varint(len(head) + len(payload)) + head + payload

    def take(self, count: int, probes: int, now: float) -> bytes:
        """`count` messages stamped from `now` on, `probes` of them to probe devices."""
        base, out = int(now * 1_000_000), []
        for i in range(count):
            if i < probes and self.probe_topics:
                p = self.probes % len(self.probe_topics)
                out.append(self.packet(self.probe_topics[p], self.probe_seq[p], base + i))
                self.probe_seq[p] += 1
                self.probes += 1
            else:
                n, self.sent = self.sent, self.sent + 1
                seq, topic = divmod(n, len(self.topics))
                out.append(self.packet(self.topics[topic], self.seq_start + seq, base + i))
        return b"".join(out)


class Acks:
    """Counts PUBACKs in what the broker sends."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.count = 0

    def read(self) -> None:
        """Read what is there and count the whole PUBACK packets in it."""
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("broker closed the connection")
        buf, pos = self.buf + data, 0
        while (end := _packet_end(buf, pos)) is not None:
            self.count += buf[pos] >> 4 == 4
            pos = end
        self.buf = buf[pos:]

    def wait(self, until: float) -> None:
        """Read acknowledgements until perf_counter() reaches `until`."""
        while (left := until - time.perf_counter()) > 0:
            if select.select([self.sock], [], [], left)[0]:
                self.read()


def _packet_end(buf: bytes, pos: int) -> int | None:
    """Where the packet starting at `pos` ends, or None while it is incomplete."""
    i, length, shift = pos + 1, 0, 0
    while i < len(buf):
        digit = buf[i]
        length, shift, i = length | (digit & 0x7F) << shift, shift + 7, i + 1
        if not digit & 0x80:
            return i + length if i + length <= len(buf) else None
    return None


def run(sock: socket.socket, stream: Stream, probe_rate: float, r: Result) -> None:
    """Publish on schedule for the duration, then wait for the outstanding PUBACKs."""
    acks = Acks(sock)
    start, cpu0 = time.perf_counter(), time.process_time()
    r.started_at = time.time()
    tick, sent, total = 0, 0, int(r.rate_target * r.duration_s)
    while sent < total:
        elapsed = time.perf_counter() - start
        behind = elapsed - tick * TICK_S
        r.late_ticks += behind > TICK_S
        r.max_behind_ms = max(r.max_behind_ms, behind * 1000)
        due = min(int(r.rate_target * elapsed), total)
        if r.qos and sent - acks.count > MAX_INFLIGHT:
            r.inflight_waits += 1
            due = sent
        probes = max(0, int(probe_rate * elapsed) - stream.probes)
        if due > sent:
            sock.sendall(stream.take(due - sent, probes, time.time()))
            sent = due
        tick = max(tick + 1, int(elapsed / TICK_S) + 1)
        if r.qos:
            acks.wait(start + tick * TICK_S)
        else:
            time.sleep(max(0.0, start + tick * TICK_S - time.perf_counter()))
    r.ended_at, r.elapsed_s = time.time(), time.perf_counter() - start
    r.cpu_s = time.process_time() - cpu0
    r.published, r.probes = sent, stream.probes
    deadline = time.perf_counter() + DRAIN_S
    while r.qos and acks.count < sent and time.perf_counter() < deadline:
        acks.wait(time.perf_counter() + 0.05)
    r.acked = acks.count if r.qos else 0
    r.achieved_msg_s = sent / r.elapsed_s if r.elapsed_s else 0.0


def main() -> None:
    """Connect, wait for --start-at, publish, write the result."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True, help="broker port on 127.0.0.1")
    p.add_argument("--rate", type=float, required=True, help="messages per second")
    p.add_argument("--duration", type=float, required=True, help="seconds of publishing")
    p.add_argument("--qos", type=int, choices=(0, 1), default=0, help="QoS of every message")
    p.add_argument("--school", required=True, help="school id of this publisher's devices")
    p.add_argument("--devices", type=int, default=500, help="devices (default: 500)")
    p.add_argument("--probe-rate", type=float, default=10.0, help="probe messages/s (default 10)")
    p.add_argument("--seq-start", type=int, default=0, help="first seq of every device")
    p.add_argument("--start-at", type=float, default=0.0, help="time.time() to start at")
    p.add_argument("--out", type=Path, required=True, help="where the JSON result goes")
    a = p.parse_args()
    probe_devices = int(a.probe_rate * PROBE_SPACING_S) + 1 if a.probe_rate > 0 else 0
    stream = Stream(a.school, a.devices, probe_devices, a.qos, a.seq_start)
    result = Result(a.rate, a.duration, a.qos, a.devices)
    sock = connect(a.port, f"bench-{a.school}-{os.getpid()}")
    try:
        time.sleep(max(0.0, a.start_at - time.time()))
        run(sock, stream, a.probe_rate, result)
        sock.sendall(b"\xe0\x00")  # DISCONNECT
    finally:
        sock.close()
    a.out.write_text(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
