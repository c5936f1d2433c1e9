"""Alarms per second with durable commits: many presses as fast as the publishers go, QoS 1.

--alarms presses from --alarm-devices devices (distinct device and seq, so none is a
duplicate), spread over --alarm-publishers clients, each with its own school `r<i>`. Measured
from the first publish: (a) stored, until GET /api/stats shows alarms_total grown by N;
(b) delivered, until the police endpoint (which answers 200) has N distinct Idempotency-Keys.
Police counts are polled every POLL_S, /api/stats every STATS_POLL_S: at 20,000 alarms each
/api/stats costs the gateway's store thread about 10 ms (its counts scan the tables), so
polling it faster would slow what it measures. Then the counts are checked.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from harness import Publisher, Stack, note, publish_plans, split
from latency import percentiles, police_records, police_unique, press_key, wall

POLL_S = 0.05
STATS_POLL_S = 0.2
STALL_S = 30.0


def press_plan(school: str, count: int, devices: int) -> list[tuple[str, bytes]]:
    """`count` police presses over `devices` devices of one school, seq counting up."""
    base = datetime.now(UTC)
    out = []
    for i in range(count):
        device, seq = f"a{i % devices + 1}", i // devices
        ts = base + timedelta(microseconds=i)
        body = {"seq": seq, "ts": ts, "event": "press", "category": "police"}
        topic = f"campus/{school}/button/{device}/event"
        out.append((topic, orjson.dumps(body, option=orjson.OPT_UTC_Z)))
    return out


def run_rate(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """Publish the presses, time stored and delivered, check the counts."""
    n, publishers = args.alarms, args.alarm_publishers
    devices = max(1, args.alarm_devices // publishers)
    plans = [press_plan(f"r{p + 1}", k, devices) for p, k in enumerate(split(n, publishers))]
    stored0, delivered0 = stack.stats()["alarms_total"], police_unique(stack)
    pubs = [Publisher(stack.broker.port, f"bench-rate-{p}") for p in range(publishers)]
    note(f"alarm rate: {n} presses, QoS 1, {publishers} clients, {devices * publishers} devices")
    try:
        t0_wall, t0 = publish_plans(pubs, plans, qos=1)
        times = wait_stored_delivered(stack, pubs, n, stored0, delivered0)
    finally:
        for pub in pubs:
            pub.close()
    acked = sum(p.acked for p in pubs)
    publish_s = max(p.done_at for p in pubs) - t0 if acked >= n else None
    figures: dict[str, Any] = {"alarms": n, "publishers": publishers, "acked": acked}
    figures["publish_msg_s"] = n / publish_s if publish_s else None
    for name in ("stored", "delivered"):
        at = times[name]
        figures[f"{name}_s"] = None if at is None else at - t0_wall
        figures[f"{name}_per_s"] = None if at is None else n / (at - t0_wall)
    figures["stored"] = stack.stats()["alarms_total"] - stored0
    return figures | delivery_checks(stack, n)


def wait_stored_delivered(
    stack: Stack, pubs: list[Publisher], n: int, stored0: int, delivered0: int
) -> dict[str, float | None]:
    """Poll both counts; when each reached n (None when it stalled for STALL_S first)."""
    times: dict[str, float | None] = {"stored": None, "delivered": None}
    last, progressed, stored, stats_due = (-1, -1), time.monotonic(), 0, 0.0
    while None in times.values():
        if times["stored"] is None and time.monotonic() >= stats_due:
            stats_due = time.monotonic() + STATS_POLL_S
            stored = stack.stats()["alarms_total"] - stored0
        counts = (stored, police_unique(stack) - delivered0)
        now = time.time()
        for name, count in zip(times, counts, strict=True):
            if times[name] is None and count >= n:
                times[name] = now
        if counts != last:
            last, progressed = counts, time.monotonic()
        elif time.monotonic() - progressed > STALL_S:
            note(f"alarm rate: stalled at stored {counts[0]}, delivered {counts[1]} of {n}")
            break
        time.sleep(POLL_S)
    return times


def delivery_checks(stack: Stack, n: int) -> dict[str, Any]:
    """Distinct keys and presses the police endpoint got, repeats, and time in the gateway."""
    records = police_records(stack, "r")
    keys = Counter(r["idempotency_key"] for r in records)
    presses = {press_key(r) for r in records}
    in_gateway = [(r["at"] - wall(r["alarm"]["received_at"])) * 1000 for r in records]
    return {
        "posts": len(records),
        "unique_keys": len(keys),
        "unique_presses": len(presses),
        "repeated_posts": len(records) - len(keys),
        # two alarm ids for one (school, device, seq): a press stored twice
        "duplicates_stored": len(keys) - len(presses),
        "in_gateway": percentiles(in_gateway),
        "expected": n,
    }
