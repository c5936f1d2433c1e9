"""Alarm latency while a paced telemetry load flows, with the gateway's counters and CPU shares.

bench/load.py runs as a child process and publishes --load-rate status messages per second for
--load-duration seconds. One second after it starts, police presses go out at --press-rate
until one second before it ends, so every press meets the load at steady state. While waiting
between presses the bench samples GET /api/stats and /proc CPU times every half second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from harness import BenchError, Stack, clean_env, cpu_shares, cpu_snapshot, note
from latency import latency_figures, run_presses

from simulators.servers import log_tail, spawn, stop_process

LOAD = Path(__file__).resolve().with_name("load.py")
CONNECT_S = 1.5  # the generator's clients are connected by then
WARMUP_S = 1.0  # presses start this long after the load starts and stop this long before it ends
SAMPLE_S = 0.5
QUIET_S = 1.0  # settled: nothing pending and no counter moved for this long
SETTLE_MAX_S = 60.0


class Sampler:
    """The gateway's counters and every process's CPU time, at most every SAMPLE_S."""

    def __init__(self, stack: Stack, extra_pids: dict[str, int]) -> None:
        self.stack = stack
        self.pids = stack.pids() | extra_pids | {"bench": os.getpid()}
        self.samples: list[tuple[float, dict[str, Any], dict[str, float]]] = []
        self.next = 0.0

    def maybe(self) -> None:
        """Sample if the last sample is SAMPLE_S old."""
        if time.monotonic() >= self.next:
            self.sample()

    def sample(self) -> None:
        """One sample now (skipped when the API does not answer)."""
        self.next = time.monotonic() + SAMPLE_S
        try:
            stats = self.stack.stats()
        except BenchError:
            return
        self.samples.append((time.time(), stats, cpu_snapshot(self.pids)))


def run_loaded(stack: Stack, args: argparse.Namespace, qos: int) -> dict[str, Any]:
    """Start the load generator, press during it, collect its result and the gateway's."""
    out = stack.root / f"load-q{qos}.json"
    start_at = time.time() + CONNECT_S
    argv = [
        sys.executable, str(LOAD), "--port", str(stack.broker.port), "--qos", str(qos),
        "--rate", str(args.load_rate), "--duration", str(args.load_duration),
        "--publishers", str(args.load_publishers), "--devices", str(args.load_devices),
        "--school", f"l{qos}x", "--start-at", repr(start_at), "--out", str(out),
    ]  # fmt: skip
    log = stack.root / f"load-q{qos}.log"
    note(f"load: {args.load_rate:g} msg/s QoS {qos} for {args.load_duration:g} s")
    before = stack.stats()
    proc = spawn(argv, log, env=clean_env())
    try:
        time.sleep(max(0.0, start_at + WARMUP_S - time.time()))
        if proc.poll() is not None:
            raise BenchError(f"load generator exited {proc.poll()}:\n{log_tail(log, 20)}")
        sampler = Sampler(stack, {"load": proc.pid})
        sampler.sample()
        presses = max(1, int(args.press_rate * (args.load_duration - 2 * WARMUP_S)))
        sent, records = run_presses(stack, f"q{qos}", presses, args.press_rate, sampler.maybe)
        while proc.poll() is None:
            sampler.maybe()
            time.sleep(0.05)
    finally:
        stop_process(proc, timeout=5)
    if proc.returncode != 0 or not out.exists():
        raise BenchError(f"load generator exited {proc.returncode}:\n{log_tail(log, 20)}")
    load = json.loads(out.read_text())
    figures = {"qos": qos, "load": load, "latency": latency_figures(sent, records)}
    return figures | loaded_counters(stack, sampler, before, load)


def loaded_counters(
    stack: Stack, sampler: Sampler, before: dict[str, Any], load: dict[str, Any]
) -> dict[str, Any]:
    """What the gateway did with the load: counters, write rate, backlog, drain, CPU."""
    settled_at, after = settle(stack)
    window = [s for s in sampler.samples if s[0] <= load["ended_at"]]
    if len(window) < 2:
        raise BenchError("the gateway's /api/stats did not answer during the load")
    first, last = window[0], window[-1]
    span = last[0] - first[0]
    written = last[1]["points_written"] - first[1]["points_written"]
    gateway = {
        "messages_in": after["messages_in"] - before["messages_in"],
        "points_written": after["points_written"] - before["points_written"],
        "write_rate_msg_s": written / span if span > 0 else None,
        "points_pending_max": max(s[1]["points_pending"] for s in window),
        "points_pending_at_load_end": last[1]["points_pending"],
        "drain_s": None if settled_at is None else max(0.0, settled_at - load["ended_at"]),
    }
    load_pct = {"load": load["cpu_s"] / load["elapsed_s"] * 100}
    return {"gateway": gateway, "cpu_pct": cpu_shares(first[2], last[2], span, load_pct)}


def settle(stack: Stack) -> tuple[float | None, dict[str, Any]]:
    """Wait until nothing is pending and no counter moved for QUIET_S.

    Returns when the counters last moved (None when they never settled) and the last stats."""
    keys = ("messages_in", "points_written", "alarms_raised", "deliveries_ok")
    deadline = time.monotonic() + SETTLE_MAX_S
    last, moved_at = None, time.time()
    while time.monotonic() < deadline:
        stats = stack.stats()
        now = tuple(stats.get(k) for k in keys)
        if now != last:
            last, moved_at = now, time.time()
        idle = not stats["points_pending"] and not stats["deliveries_pending"]
        if idle and time.time() - moved_at >= QUIET_S:
            return moved_at, stats
        time.sleep(0.1)
    return None, stats
