"""Alarm latency while video quality diagnosis (VQD) runs at full speed: camera snapshots arrive
faster than the gateway's worker pool (`video_quality.workers` threads) can check them.

bench/snapshots.py runs as a child process and publishes 1080p JPEG snapshots (quality 70,
--vqd-frames distinct frames per camera, rendered once into the bench's temp dir) from
--vqd-cameras cameras, QoS 0. Without --vqd-rate the pool's capacity is measured first:
CALIBRATE_S s of snapshots at CALIBRATE_RATE/s, checks/s counted after CALIBRATE_SKIP_S; the
phase then publishes at RATE_FACTOR x that for --vqd-duration s, so that every camera always
has a newer frame waiting (the gateway keeps only that one and counts the ones it replaces as
skipped). Presses at --press-rate go out from 1 s after it starts to 1 s before it ends, as in
the load phase; counters and CPU times are sampled every half second meanwhile.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import pairwise as pairs
from pathlib import Path
from typing import Any

from harness import BenchError, Stack, clean_env, cpu_shares, note
from latency import latency_figures, run_presses
from loaded import CONNECT_S, WARMUP_S, Sampler, settle
from snapshots import render

from simulators.servers import log_tail, spawn, stop_process

SNAPSHOTS = Path(__file__).resolve().with_name("snapshots.py")
CALIBRATE_RATE = 500.0  # snapshots/s: above what 2 workers check on 2 cores (~260/s per core)
CALIBRATE_S = 6.0
CALIBRATE_SKIP_S = 2.0  # the pool fills up and the cameras learn their baselines meanwhile
RATE_FACTOR = 2.0
COUNTERS = ("snapshots_in", "snapshots_checked", "snapshots_skipped", "video_troubles",
            "dead_letters_in", "messages_in")  # fmt: skip


class SnapshotChild:
    """bench/snapshots.py publishing `rate` snapshots/s for `duration` s from `start_at`."""

    def __init__(self, stack: Stack, frames: Path, rate: float, duration: float, name: str):
        self.out, self.log = stack.root / f"{name}.json", stack.root / f"{name}.log"
        self.start_at = time.time() + CONNECT_S
        argv = [
            sys.executable, str(SNAPSHOTS), "--port", str(stack.broker.port),
            "--frames", str(frames), "--rate", f"{rate:.1f}", "--duration", str(duration),
            "--start-at", repr(self.start_at), "--out", str(self.out),
        ]  # fmt: skip
        self.proc = spawn(argv, self.log, env=clean_env())

    def sleep_until(self, offset: float) -> None:
        """Sleep until `offset` s after the publishing started; BenchError if it died."""
        time.sleep(max(0.0, self.start_at + offset - time.time()))
        if self.proc.poll() is not None:
            raise BenchError(f"snapshot generator exited {self.proc.poll()}:\n{self.tail()}")

    def result(self, sampler: Sampler | None = None) -> dict[str, Any]:
        """Wait for the child to end (sampling meanwhile); its JSON result."""
        while self.proc.poll() is None:
            if sampler is not None:
                sampler.maybe()
            time.sleep(0.05)
        if self.proc.returncode != 0 or not self.out.exists():
            raise BenchError(f"snapshot generator exited {self.proc.returncode}:\n{self.tail()}")
        return dict(json.loads(self.out.read_text()))

    def stop(self) -> None:
        """Stop it if it still runs."""
        stop_process(self.proc, timeout=5)

    def tail(self) -> str:
        """The last lines of its log."""
        return log_tail(self.log, 20)


def run_vqd(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Render the frames, find the rate (calibrating unless --vqd-rate), press while it runs."""
    frames = stack.root.parent / "snapshots"  # shared by the runs: rendered once
    note(f"vqd: rendering {args.vqd_frames} 1080p JPEGs for each of {args.vqd_cameras} cameras")
    jpeg_kb = render(frames, args.vqd_cameras, args.vqd_frames)
    capacity = None if args.vqd_rate else calibrate(stack, frames)
    rate = args.vqd_rate or RATE_FACTOR * (capacity or 0.0)
    if rate <= 0:
        raise BenchError("vqd: the gateway checked no snapshot while calibrating")
    note(f"vqd: {rate:.0f} snapshots/s from {args.vqd_cameras} cameras for {args.vqd_duration:g} s")
    before = stack.stats()
    child = SnapshotChild(stack, frames, rate, args.vqd_duration, "vqd-snapshots")
    try:
        child.sleep_until(WARMUP_S)
        sampler = Sampler(stack, {"snapshots": child.proc.pid})
        sampler.sample()
        presses = max(1, int(args.press_rate * (args.vqd_duration - 2 * WARMUP_S)))
        sent, records = run_presses(stack, "vqd", presses, args.press_rate, sampler.maybe)
        published = child.result(sampler)
    finally:
        child.stop()
    figures = {"capacity_s": capacity, "rate_factor": None if args.vqd_rate else RATE_FACTOR,
               "rate": rate, "jpeg_kb": jpeg_kb, "publish": published,
               "checks_off": args.vqd_off}  # fmt: skip
    figures["latency"] = latency_figures(sent, records)
    return figures | vqd_counters(stack, sampler, before, published)


def calibrate(stack: Stack, frames: Path) -> float:
    """Snapshots the pool checks per second when it always has work: what it can do here."""
    note(f"vqd: measuring the pool's capacity ({CALIBRATE_RATE:g} snapshots/s offered)")
    child = SnapshotChild(stack, frames, CALIBRATE_RATE, CALIBRATE_S, "vqd-calibrate")
    try:
        child.sleep_until(CALIBRATE_SKIP_S)
        t0, first = time.monotonic(), stack.stats()["snapshots_checked"]
        child.sleep_until(CALIBRATE_S - 0.2)
        checked = stack.stats()["snapshots_checked"] - first
        capacity = checked / (time.monotonic() - t0)
        child.result()
    finally:
        child.stop()
    settle(stack)
    note(f"vqd: the pool checked {capacity:.0f} snapshots/s")
    return capacity


def vqd_counters(
    stack: Stack, sampler: Sampler, before: dict[str, Any], published: dict[str, Any]
) -> dict[str, Any]:
    """What the gateway did with the snapshots: received, checked, skipped; checks/s; in how
    many sampling intervals it skipped some (the pool had more than it could check); CPU."""
    _, after = settle(stack)
    window = [s for s in sampler.samples if s[0] <= published["ended_at"]]
    if len(window) < 2:
        raise BenchError("the gateway's /api/stats did not answer during the vqd phase")
    first, last = window[0], window[-1]
    span = last[0] - first[0]
    checked = last[1]["snapshots_checked"] - first[1]["snapshots_checked"]
    gateway = {k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS}
    gateway["checked_s"] = checked / span if span > 0 else None
    skips = [b[1]["snapshots_skipped"] - a[1]["snapshots_skipped"] for a, b in pairs(window)]
    gateway["intervals"], gateway["intervals_skipping"] = len(skips), sum(n > 0 for n in skips)
    child_pct = {"snapshots": published["cpu_s"] / published["elapsed_s"] * 100}
    return {"gateway": gateway, "cpu_pct": cpu_shares(first[2], last[2], span, child_pct)}
