"""The long phases of bench/telemetry.py, each on a fresh mosquitto, influxd and gateway:
memory at 10,000 devices reporting every 10 s, and the soak with an InfluxDB outage."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from harness import BenchError, cpu_shares, cpu_snapshot, note
from telemetry_consumers import Gateway, Servers
from telemetry_run import Load, Spec, ready

SOAK_SAMPLE_S = 1.0
COUNT_EVERY_S = 5.0
COUNT_STALL_S = 60.0  # the soak's final count stops waiting when it has not grown this long


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, KiB (/proc/PID/status); {} when it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    fields = (line.split() for line in lines if line.startswith(("VmRSS:", "VmHWM:")))
    return {f[0].rstrip(":"): int(f[1]) for f in fields}


def gateway_stack(root: Path, qos: int, overrides: list[str]) -> tuple[Servers, Gateway]:
    """Start mosquitto, influxd and the gateway; wait until a message gets through."""
    servers = Servers(root)
    gateway = Gateway(servers, root, qos, overrides)
    try:
        servers.start()
        gateway.start()
        ready(servers, gateway)
    except BaseException:
        gateway.stop()
        servers.stop()
        raise
    return servers, gateway


def run_memory(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """--memory-devices devices, each reporting every --memory-interval s, for
    --memory-duration s (QoS 1); the gateway's VmRSS every second and VmHWM at the end."""
    rate = args.memory_devices / args.memory_interval
    servers, gateway = gateway_stack(root, 1, args.gateway_set)
    try:
        assert gateway.proc is not None
        pid = gateway.proc.pid
        idle = proc_memory(pid)
        note(f"memory: {args.memory_devices:,} devices at {rate:,.0f} msg/s for "
             f"{args.memory_duration:g} s")  # fmt: skip
        spec = Spec(rate, args.memory_duration, 1, args.publishers, args.memory_devices, 0, "mem")
        load = Load(servers.broker_port, spec, root)
        pids = servers.pids() | gateway.pids() | {"bench": os.getpid()}
        rss: list[tuple[float, int]] = []
        first = cpu_snapshot(pids)
        started = time.monotonic()
        while load.alive():
            rss.append((time.time(), proc_memory(pid).get("VmRSS", 0)))
            time.sleep(1.0)
        cpu = cpu_snapshot(pids)
        span = time.monotonic() - started
        pub = load.results()
        end = proc_memory(pid)
        stats = gateway.stats()
    finally:
        gateway.stop()
        servers.stop()
    load_pct = {"load": pub["cpu_s"] / max(1e-9, pub["ended_at"] - pub["started_at"]) * 100}
    after_first_round = [kb for t, kb in rss if t >= pub["started_at"] + args.memory_interval]
    return {
        "devices": args.memory_devices, "interval_s": args.memory_interval, "rate": rate,
        "duration_s": args.memory_duration, "publish": pub,
        "rss_idle_kb": idle.get("VmRSS"), "rss_end_kb": end.get("VmRSS"),
        "rss_max_kb": max((kb for _, kb in rss), default=None),
        "rss_min_after_first_round_kb": min(after_first_round, default=None),
        "hwm_kb": end.get("VmHWM"), "gateway_devices": stats.get("devices"),
        "points_written": stats.get("points_written"), "rate_limited": stats.get("rate_limited"),
        "cpu_pct": cpu_shares(first, cpu, span, load_pct),
    }  # fmt: skip


class Outage:
    """Stops influxd (by PID) at 1/3 of the soak and starts it again on the same data at 2/3."""

    def __init__(self, servers: Servers, start: float, duration: float) -> None:
        self.servers = servers
        self.stop_at, self.start_at = start + duration / 3, start + 2 * duration / 3
        self.stopped: float | None = None
        self.restarted: float | None = None

    def tick(self, now: float) -> None:
        """Act when its time has come."""
        if self.stopped is None and now >= self.stop_at:
            note("soak: stopping influxd")
            self.servers.influx.stop()
            self.stopped = time.time()
        elif self.stopped is not None and self.restarted is None and now >= self.start_at:
            note("soak: starting influxd again (same data directory)")
            self.servers.influx.restart()
            self.restarted = time.time()


def run_soak(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """--soak-rate msg/s QoS 1 for --soak-minutes with the outage; then the spool drains and
    the points in InfluxDB are counted exactly."""
    duration = args.soak_minutes * 60
    servers, gateway = gateway_stack(root, 1, args.gateway_set)
    samples: list[tuple[float, dict[str, Any]]] = []
    try:
        note(f"soak: {args.soak_rate:,.0f} msg/s QoS 1 for {args.soak_minutes:g} min; "
             "InfluxDB down from 1/3 to 2/3")  # fmt: skip
        spec = Spec(args.soak_rate, duration, 1, args.publishers, args.devices, 0, "soak")
        load = Load(servers.broker_port, spec, root)
        outage = Outage(servers, load.start_at, duration)
        pids = servers.pids() | gateway.pids() | {"bench": os.getpid()}
        first, started = cpu_snapshot(pids), time.monotonic()
        while load.alive():
            outage.tick(time.time())
            samples.append((time.time(), gateway.stats()))
            time.sleep(SOAK_SAMPLE_S)
        pids = servers.pids() | gateway.pids() | {"bench": os.getpid()}
        cpu = cpu_shares(first, cpu_snapshot(pids), time.monotonic() - started, {})
        pub = load.results()
        if outage.restarted is None:
            raise BenchError("the soak ended before InfluxDB was started again")
        written, counted_at = final_count(servers, gateway, pub["published"], samples)
        log_text = (root / "mosquitto" / "mosquitto.log").read_text(errors="replace")
    finally:
        gateway.stop()
        servers.stop()
    load_pct = pub["cpu_s"] / max(1e-9, pub["ended_at"] - pub["started_at"]) * 100
    return soak_figures(args, pub, samples, outage, written, counted_at) | {
        "cpu_pct": cpu | {"load": load_pct},
        "broker_drop_lines": [line for line in log_text.splitlines() if "dropped" in line][:5],
    }


def final_count(
    servers: Servers, gateway: Gateway, target: int, samples: list[tuple[float, dict[str, Any]]]
) -> tuple[int, float]:
    """Count the soak's points in InfluxDB every COUNT_EVERY_S until they reach `target` or
    stop growing for COUNT_STALL_S (while the gateway's counters are sampled on)."""
    note("soak: load done; waiting for the spool to drain and counting the points")
    best, grew = -1, time.monotonic()
    while True:
        samples.append((time.time(), gateway.stats()))
        count = servers.count("soak")
        if count > best:
            best, grew = count, time.monotonic()
        if count >= target or time.monotonic() - grew > COUNT_STALL_S:
            return count, time.time()
        time.sleep(COUNT_EVERY_S)


def soak_figures(
    args: argparse.Namespace,
    pub: dict[str, Any],
    samples: list[tuple[float, dict[str, Any]]],
    outage: Outage,
    written: int,
    counted_at: float,
) -> dict[str, Any]:
    """Sent, acked, written, spool peak, the drain after recovery, evicted, PASS or FAIL."""
    stats = [s for _, s in samples if s]
    first, last = stats[0], stats[-1]
    up = outage.restarted or 0.0
    after = [(t, s) for t, s in samples if s and t >= up]
    # Drained: the first sample after the restart with less than a second of load pending.
    drained = next((t for t, s in after if s["points_pending"] < args.soak_rate), None)
    w0 = next((s["points_written"] for _, s in after), None)
    w1 = next((s["points_written"] for t, s in after if t == drained), None)
    drain_s = None if drained is None else drained - up
    evicted = last.get("points_evicted", 0) - first.get("points_evicted", 0)
    ok = written == pub["published"] == pub["acked"] and evicted == 0
    return {
        "rate": args.soak_rate, "minutes": args.soak_minutes, "publish": pub,
        "written": written, "counted_after_s": counted_at - pub["ended_at"],
        "outage_s": up - (outage.stopped or up),
        "spool_peak": max(s.get("points_pending", 0) for s in stats),
        "pending_at_restart": next((s["points_pending"] for _, s in after), None),
        "drain_s": drain_s,
        "drain_points_s": None if not drain_s or w0 is None or w1 is None
        else (w1 - w0) / drain_s,
        "evicted": evicted,
        "holds": last.get("telemetry_holds", 0) - first.get("telemetry_holds", 0),
        "write_errors": last.get("write_errors", 0) - first.get("write_errors", 0),
        "rate_limited": last.get("rate_limited", 0) - first.get("rate_limited", 0),
        "messages_in": last.get("messages_in", 0) - first.get("messages_in", 0),
        "passed": ok,
    }  # fmt: skip
