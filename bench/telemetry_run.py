"""One paced load for bench/telemetry.py: the publisher children (bench/telemetry_load.py), samples
of what the consumer landed and of every process's CPU time, and the figures of a step."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import BenchError, Publisher, clean_env, cpu_shares, cpu_snapshot, note
from latency import percentiles
from telemetry_consumers import Consumer, Servers

from simulators.servers import log_tail, spawn, stop_process

LOAD = Path(__file__).resolve().with_name("telemetry_load.py")
CONNECT_S = 1.0  # the publishers connect before this; then they start together
WARM_S = 1.0  # a step's first second is left out of its rates
SAMPLE_S = 0.25
KEPT_UP = 0.97  # kept up: landed at >= 97 % of the publish rate, and everything landed
READY_TOPIC = "campus/ready/button/r1/status"


@dataclass
class Spec:
    """A load: `rate` msg/s in all for `duration` s from `publishers` processes."""

    rate: float
    duration: float
    qos: int
    publishers: int
    devices: int  # in all, split between the publishers (one school each)
    probe_rate: float  # probe messages/s in all
    prefix: str  # school ids are <prefix>1 .. <prefix>N
    seq_start: int = 0


class Load:
    """The publisher children of one load, started together at one time.time()."""

    def __init__(self, port: int, spec: Spec, root: Path) -> None:
        self.spec, self.root, self.procs = spec, root, []
        self.start_at = time.time() + CONNECT_S
        n = spec.publishers
        for i in range(n):
            out = root / f"{spec.prefix}{i + 1}.json"
            argv = [
                sys.executable, str(LOAD), "--port", str(port), "--qos", str(spec.qos),
                "--rate", repr(spec.rate / n), "--duration", repr(spec.duration),
                "--school", f"{spec.prefix}{i + 1}", "--devices", str(max(1, spec.devices // n)),
                "--probe-rate", repr(spec.probe_rate / n), "--seq-start", str(spec.seq_start),
                "--start-at", repr(self.start_at), "--out", str(out),
            ]  # fmt: skip
            self.procs.append((spawn(argv, out.with_suffix(".log"), env=clean_env()), out))

    def pids(self) -> dict[str, int]:
        """PIDs of the publishers still running."""
        return {f"load{i}": p.pid for i, (p, _) in enumerate(self.procs) if p.poll() is None}

    def alive(self) -> bool:
        """True while any publisher runs."""
        return any(p.poll() is None for p, _ in self.procs)

    def results(self) -> dict[str, Any]:
        """Wait for every publisher; their results summed (BenchError if one failed)."""
        rows = []
        for proc, out in self.procs:
            try:
                proc.wait(timeout=self.spec.duration + 60)
            except Exception:
                stop_process(proc)
            if proc.returncode != 0 or not out.exists():
                tail = log_tail(out.with_suffix(".log"), 20)
                raise BenchError(f"publisher exited {proc.returncode}:\n{tail}")
            rows.append(json.loads(out.read_text()))
        return summed(rows)

    def stop(self) -> None:
        """Stop every publisher still running."""
        for proc, _ in self.procs:
            stop_process(proc, timeout=5)


def summed(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The publishers' results as one."""
    keys = ("published", "acked", "probes", "late_ticks", "inflight_waits", "cpu_s")
    out: dict[str, Any] = {k: sum(r[k] for r in rows) for k in keys}
    out["started_at"] = min(r["started_at"] for r in rows)
    out["ended_at"] = max(r["ended_at"] for r in rows)
    out["max_behind_ms"] = max(r["max_behind_ms"] for r in rows)
    span = out["ended_at"] - out["started_at"]
    out["achieved_msg_s"] = out["published"] / span if span > 0 else None
    out["acked_all"] = rows[0]["qos"] == 0 or out["acked"] == out["published"]
    return out


@dataclass
class Sample:
    """What had landed at `t`, each process's CPU seconds, the consumer's own counters."""

    t: float
    landed: int
    cpu: dict[str, float]
    stats: dict[str, Any]


class Sampler:
    """Samples every SAMPLE_S while a load runs and while it drains."""

    def __init__(self, servers: Servers, consumer: Consumer, load: Load | None) -> None:
        self.servers, self.consumer, self.load = servers, consumer, load
        self.rows: list[Sample] = []

    def take(self) -> Sample:
        """One sample now."""
        pids = self.servers.pids() | self.consumer.pids() | {"bench": os.getpid()}
        pids |= self.load.pids() if self.load else {}
        row = Sample(time.time(), self.consumer.landed(), cpu_snapshot(pids), self.consumer.stats())
        self.rows.append(row)
        return row

    def every(self, until: Any) -> None:
        """Sample every SAMPLE_S until `until()` is true."""
        while not until():
            started = time.monotonic()
            self.take()
            time.sleep(max(0.0, SAMPLE_S - (time.monotonic() - started)))


def landed_at(rows: list[Sample], t: float) -> float:
    """What had landed at t, interpolated between samples."""
    good = [r for r in rows if r.landed >= 0]
    before = [r for r in good if r.t <= t] or good[:1]
    after = [r for r in good if r.t >= t] or good[-1:]
    a, b = before[-1], after[0]
    if b.t == a.t:
        return float(a.landed)
    return a.landed + (b.landed - a.landed) * (t - a.t) / (b.t - a.t)


def ready(servers: Servers, consumer: Consumer, limit_s: float = 30.0) -> None:
    """Publish a status message every 0.5 s until the consumer shows it landed."""
    base = consumer.landed()
    pub = Publisher(servers.broker_port, "bench-ready")
    try:
        deadline = time.monotonic() + limit_s
        seq = 0
        while consumer.landed() <= base:
            consumer.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"{consumer.name} did not deliver a message in {limit_s:g} s")
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{seq:06d}Z"
            payload = f'{{"seq":{seq},"ts":"{ts}","battery":80.0,"rssi":-60}}'.encode()
            pub.publish(READY_TOPIC, payload, 1)
            seq += 1
            pub.pump(0.5)
    finally:
        pub.close()


def run_load(
    servers: Servers, consumer: Consumer, spec: Spec, root: Path, drain_max_s: float
) -> dict[str, Any]:
    """Publish one load, sample it and its drain; the step's figures."""
    base = consumer.landed()
    load = Load(servers.broker_port, spec, root)
    sampler = Sampler(servers, consumer, load)
    try:
        sampler.every(lambda: not load.alive())
        pub = load.results()
    finally:
        load.stop()
    sampler.load = None
    deadline = time.monotonic() + drain_max_s
    sampler.every(
        lambda: sampler.rows[-1].landed - base >= pub["published"] or time.monotonic() > deadline
    )
    consumer.check_alive()
    return figures(spec, pub, sampler.rows, base, consumer)


def figures(
    spec: Spec, pub: dict[str, Any], rows: list[Sample], base: int, consumer: Consumer
) -> dict[str, Any]:
    """Rates over the steady window (a second after the start -> last publish), the backlog,
    what landed after the drain, probe delays, CPU shares and the consumer's counters."""
    t0, t1 = pub["started_at"] + WARM_S, pub["ended_at"]
    l0, l1 = landed_at(rows, t0), landed_at(rows, t1)
    e2e = (l1 - l0) / (t1 - t0) if t1 > t0 else None
    landed = max(r.landed for r in rows) - base
    done = next((r.t for r in rows if r.landed - base >= pub["published"]), None)
    delays = [d * 1000 for d in consumer.delays(pub["started_at"], pub["ended_at"])]
    achieved = pub["achieved_msg_s"] or 0.0
    kept_up = e2e is not None and e2e >= KEPT_UP * achieved and landed >= pub["published"]
    return {
        "rate": spec.rate, "qos": spec.qos, "duration_s": spec.duration, "publish": pub,
        "end_to_end_msg_s": e2e, "landed": landed,
        "backlog_at_end": max(0, round(pub["published"] - (l1 - base))),
        "drain_s": None if done is None else max(0.0, done - t1),
        "lost_or_late": max(0, pub["published"] - landed), "kept_up": kept_up,
        "delay": percentiles(delays) | {"probes": len(delays), "probes_sent": pub["probes"]},
        "cpu_pct": window_cpu(rows, t0, t1, pub), "consumer": counters(rows, t0, t1),
    }  # fmt: skip


def window_cpu(rows: list[Sample], t0: float, t1: float, pub: dict[str, Any]) -> dict[str, float]:
    """% of one core per process between the samples nearest the window's ends."""
    inside = [r for r in rows if t0 <= r.t <= t1] or rows
    first, last = inside[0], inside[-1]
    span = last.t - first.t
    load_pct = pub["cpu_s"] / (pub["ended_at"] - pub["started_at"]) * 100
    shares = cpu_shares(first.cpu, last.cpu, span, {"load": load_pct})
    return {k: v for k, v in shares.items() if not k.startswith("load") or k == "load"}


def counters(rows: list[Sample], t0: float, t1: float) -> dict[str, Any]:
    """The gateway's counters over the load (empty for consumers without /api/stats)."""
    with_stats = [r for r in rows if r.stats]
    if not with_stats:
        return {}
    first, last = with_stats[0].stats, with_stats[-1].stats
    keys = ("messages_in", "points_written", "rate_limited", "telemetry_holds", "points_evicted",
            "write_errors", "dead_letters_in")  # fmt: skip
    out: dict[str, Any] = {k: last.get(k, 0) - first.get(k, 0) for k in keys}
    inside = [r.stats.get("points_pending", 0) for r in with_stats if t0 <= r.t <= t1]
    out["points_pending_max"] = max(inside, default=None)
    return out


def seq_after(spec: Spec) -> int:
    """A seq start above every seq this load used (each device's seq keeps increasing)."""
    per_device = spec.rate * spec.duration / max(1, spec.devices)
    return spec.seq_start + math.ceil(per_device * 1.1 + spec.duration) + 10


def step_note(r: dict[str, Any], name: str) -> None:
    """One progress line per step."""
    e2e = r["end_to_end_msg_s"]
    p99 = r["delay"]["p99_ms"]
    note(
        f"{name} QoS {r['qos']} {r['rate']:,.0f} msg/s: end to end "
        f"{'n/a' if e2e is None else f'{e2e:,.0f}'} msg/s, p99 "
        f"{'n/a' if p99 is None else f'{p99:.0f} ms'}, kept up: {r['kept_up']}"
    )
