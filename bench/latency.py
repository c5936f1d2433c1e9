"""Alarm latency: police presses paced at a fixed rate, timed from publish to police arrival.

Latency is the police endpoint's time.time() when the gateway's POST arrives minus the bench's
time.time() just before publishing; it is also split at the gateway's `received_at` (its wall
clock when it began handling the MQTT batch holding the press). Percentiles are nearest rank.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from harness import Publisher, Stack, get_json, note, poll_until

PRESS_DEVICES = 20

Key = tuple[str, str, int]  # (school, device, seq) of a button press


def send_presses(
    pub: Publisher, school: str, count: int, rate: float, idle: Callable[[], None]
) -> dict[Key, float]:
    """Publish `count` police presses at `rate` per second; the wall-clock send time of each.

    While waiting for the next press it reads PUBACKs, and calls `idle` when the press is more
    than 10 ms away (it must return well within that)."""
    sent: dict[Key, float] = {}
    pub.target = count
    start = time.perf_counter()
    for i in range(count):
        device, seq = f"p{i % PRESS_DEVICES + 1}", i // PRESS_DEVICES
        while (delay := start + i / rate - time.perf_counter()) > 0:
            if delay > 0.01:
                idle()
            pub.pump(min(delay, 0.01))
        body = {"seq": seq, "ts": datetime.now(UTC), "event": "press", "category": "police"}
        payload = orjson.dumps(body, option=orjson.OPT_UTC_Z)
        sent[(school, device, seq)] = time.time()
        pub.publish(f"campus/{school}/button/{device}/event", payload, qos=1)
    return sent


def run_presses(
    stack: Stack, school: str, count: int, rate: float, idle: Callable[[], None] = lambda: None
) -> tuple[dict[Key, float], list[Any]]:
    """Send the presses, wait until the police endpoint received them all (or stalled)."""
    note(f"latency: {count} presses at {rate}/s from school {school}")
    before = police_unique(stack)
    pub = Publisher(stack.broker.port, f"bench-press-{school}", threaded=False)
    try:
        sent = send_presses(pub, school, count, rate, idle)
        poll_until(lambda: pub.pump(0.01), len(sent), 0)
    finally:
        pub.close()
    poll_until(lambda: police_unique(stack) - before, len(sent))
    return sent, police_records(stack, school)


def police_unique(stack: Stack) -> int:
    """Distinct alarms the police endpoint received so far (without fetching them)."""
    try:
        return int(get_json(stack.police("/count"))["unique_keys"])
    except (OSError, ValueError, KeyError):
        return 0


def police_records(stack: Stack, prefix: str) -> list[Any]:
    """Every POST the police endpoint received for schools whose id starts with `prefix`."""
    records: list[Any] = get_json(stack.police("/received"))["alarms"]
    return [r for r in records if str(r["alarm"].get("school", "")).startswith(prefix)]


def first_arrivals(
    sent: dict[Key, float], records: list[Any]
) -> tuple[dict[Key, dict[str, Any]], int, int]:
    """The first record of each press sent, and the counts of later (duplicate) and
    unexpected records."""
    first: dict[Key, dict[str, Any]] = {}
    duplicates = unexpected = 0
    for record in records:
        key = press_key(record)
        if key not in sent:
            unexpected += 1
        elif key in first:
            duplicates += 1
        else:
            first[key] = record
    return first, duplicates, unexpected


def press_key(record: dict[str, Any]) -> Key:
    """(school, device, seq) of a received alarm."""
    alarm = record["alarm"]
    return (alarm.get("school"), alarm.get("device"), alarm.get("seq"))


def latency_figures(sent: dict[Key, float], records: list[Any]) -> dict[str, Any]:
    """Send -> police arrival per press, and its two legs split at `received_at`."""
    first, duplicates, unexpected = first_arrivals(sent, records)
    total = {k: (r["at"] - sent[k]) * 1000 for k, r in first.items()}
    ingest = {k: (wall(r["alarm"]["received_at"]) - sent[k]) * 1000 for k, r in first.items()}
    figures: dict[str, Any] = {"sent": len(sent), "received": len(first)}
    figures |= {"missing": len(sent) - len(first), "duplicates": duplicates}
    figures |= {"unexpected": unexpected, **percentiles(list(total.values()))}
    figures["to_gateway"] = percentiles(list(ingest.values()))
    figures["in_gateway"] = percentiles([total[k] - ingest[k] for k in total])
    return figures


def wall(iso: str) -> float:
    """An RFC 3339 time as time.time() seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p90, p99 (nearest rank) and max, in the values' unit; None when empty."""
    ordered = sorted(values)

    def rank(q: float) -> float | None:
        return ordered[max(math.ceil(q * len(ordered)) - 1, 0)] if ordered else None

    return {"p50_ms": rank(0.50), "p90_ms": rank(0.90), "p99_ms": rank(0.99), "max_ms": rank(1)}
