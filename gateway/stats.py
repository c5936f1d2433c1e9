"""Counters the gateway keeps for its progress line, /api/stats and /metrics.

Everything here is a plain integer, dict or bucket list bumped on the event loop: no locks and
no metrics library on the hot path. gateway/metrics.py turns it into Prometheus text at scrape
time.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field, fields

# Seconds: 1 ms to 10 s, with 2 s and 3 s because GA/T 368 asks for an alarm response within
# 2 s wired and 3 s wireless, so "share of alarms within the norm" is a bucket, not a guess.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip

TopicClass = tuple[str, str]
"""(kind, channel) of `campus/{school}/{kind}/{device}/{channel}`; ("invalid", "invalid") for a
topic outside the device contract."""


class Histogram:
    """Observations counted per bucket (upper bounds inclusive, like Prometheus `le`)."""

    __slots__ = ("bounds", "buckets", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation."""
        self.buckets[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.buckets)


@dataclass(slots=True)
class Stats:
    """Monotonic counters since start-up, plus a few gauges."""

    messages_in: int = 0
    messages_acked: int = 0
    decode_errors: int = 0
    dead_letters_in: int = 0
    points_queued: int = 0
    points_written: int = 0
    points_evicted: int = 0
    points_rejected: int = 0
    telemetry_holds: int = 0  # batches held back while the writer was behind
    rate_limited: int = 0  # messages over a device's rate limit, dropped (gateway/ratelimit.py)
    write_errors: int = 0
    last_write_ms: float = 0.0
    alarms_raised: int = 0
    alarm_duplicates: int = 0
    deliveries_ok: int = 0
    delivery_failures: int = 0
    trouble_alarms: int = 0
    store_errors: int = 0
    mqtt_connects: int = 0
    mqtt_read_pauses: int = 0  # socket reads paused: too many messages read, not handled
    snapshots_in: int = 0
    snapshots_checked: int = 0
    snapshots_skipped: int = 0
    video_troubles: int = 0
    vqd_worker_restarts: int = 0  # video quality worker processes that died and were replaced
    # Per topic class, counted by ingest once a batch is durable: messages used (out) and
    # dead-lettered; what came in is their sum.
    class_used: dict[TopicClass, int] = field(default_factory=dict)
    class_dead: dict[TopicClass, int] = field(default_factory=dict)
    failures_by_endpoint: dict[str, int] = field(default_factory=dict)
    # received_at -> confirmed, per endpoint; its count per endpoint is the deliveries made.
    alarm_delivery: dict[str, Histogram] = field(default_factory=dict)
    ingest_commit: Histogram = field(default_factory=Histogram)
    telemetry_write: Histogram = field(default_factory=Histogram)

    def snapshot(self) -> dict[str, float]:
        """The scalar counters, for JSON."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: value for name, value in values if isinstance(value, int | float)}
