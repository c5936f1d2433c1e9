"""Counters the gateway keeps for its progress line, /api/stats and (later) /metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    write_errors: int = 0
    last_write_ms: float = 0.0
    alarms_raised: int = 0
    alarm_duplicates: int = 0
    deliveries_ok: int = 0
    delivery_failures: int = 0
    trouble_alarms: int = 0
    store_errors: int = 0
    mqtt_connects: int = 0
    snapshots_in: int = 0
    snapshots_checked: int = 0
    snapshots_skipped: int = 0
    video_troubles: int = 0

    def snapshot(self) -> dict[str, float]:
        """A copy for JSON."""
        return asdict(self)
