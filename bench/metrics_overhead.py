"""Cost of the /metrics counters on the hot path, and of one scrape.

Times `Ingest.handle` on 500-message batches (the MQTT adapter's batch size) of button status,
camera status and gate events from 500 devices against an in-memory store, so the figure is
the core's own per-message cost; run it on a checkout without the counters to compare. Then,
when gateway/metrics.py exists, times rendering /metrics for the same gateway. No servers,
no sockets; never run as a test.

    .venv/bin/python bench/metrics_overhead.py [--rounds 400]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.availability import AvailabilityTracker
from gateway.config import load_settings
from gateway.ingest import Ingest
from gateway.runtime import DriverRouter
from gateway.stats import Stats

EXAMPLE = Path(__file__).parents[1] / "campusgw.example.toml"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class NullStore:
    """Commits nothing, instantly: the bench measures ingest, not SQLite."""

    async def commit(
        self, alarms: Sequence[Any], letters: Sequence[Any], restores: Any = ()
    ) -> list[str]:
        return []


def batches(rounds: int, size: int = 500) -> list[list[tuple[str, bytes]]]:
    """Distinct (seq, ts) per message; a gate `open` now and then so events are in the mix."""
    out, seq = [], 0
    for _ in range(rounds):
        batch = []
        for n in range(size):
            seq += 1
            ts = (T0 + timedelta(milliseconds=seq)).isoformat().replace("+00:00", "Z")
            device = n
            if n % 50 == 0:
                topic, body = f"campus/s{device % 30}/gate/g{device}/event", '"event": "open"'
            elif n % 3 == 0:
                topic, body = f"campus/s{device % 30}/camera/c{device}/status", '"fps": 25.0'
            else:
                topic, body = f"campus/s{device % 30}/button/b{device}/status", '"battery": 80.5'
            batch.append((topic, f'{{"seq": {seq}, "ts": "{ts}", {body}}}'.encode()))
        out.append(batch)
    return out


async def time_ingest(rounds: int) -> tuple[list[float], Stats, AvailabilityTracker]:
    settings = load_settings(EXAMPLE)
    stats, points = Stats(), []

    async def add_points(lines: list[bytes]) -> None:
        points.extend(lines)

    tracker = AvailabilityTracker(settings.availability)
    ingest = Ingest(settings, DriverRouter(settings), NullStore(), add_points, tracker, stats,
                    on_alarms=lambda ids: None)  # type: ignore[arg-type]  # fmt: skip
    work = batches(rounds + 20)
    for batch in work[:20]:  # warm the driver cache and the tracker
        await ingest.handle(batch)
    times = []
    for batch in work[20:]:
        started = time.perf_counter()
        await ingest.handle(batch)
        times.append(time.perf_counter() - started)
        points.clear()
    return times, stats, tracker


def time_scrape(stats: Stats, tracker: AvailabilityTracker) -> list[float] | None:
    try:
        from gateway.metrics import MetricsView, render
        from gateway.stats import Histogram
    except ImportError:  # a checkout from before /metrics
        return None
    for endpoint in ("police", "fire"):
        histogram = stats.alarm_delivery.setdefault(endpoint, Histogram())
        for n in range(200):
            histogram.observe(n / 1000)
    counts = tracker.counts()
    gauges = {f"devices_{state}": float(n) for state, n in counts.items()}
    view = MetricsView(stats, gauges, {"events": True, "telemetry": True},
                       {"police": "up", "fire": "up"}, {"alarms_open": 0})  # fmt: skip
    times = []
    for _ in range(200):
        started = time.perf_counter()
        render(view)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400, help="timed batches")
    args = parser.parse_args()
    times, stats, tracker = asyncio.run(time_ingest(args.rounds))
    ms = sorted(t * 1000 for t in times)
    print(f"ingest of a 500-message batch: median {statistics.median(ms):.3f} ms, "
          f"p10 {ms[len(ms) // 10]:.3f} ms, p90 {ms[len(ms) * 9 // 10]:.3f} ms "
          f"({statistics.median(ms) * 2:.2f} us/message) over {len(ms)} batches")  # fmt: skip
    scrape = time_scrape(stats, tracker)
    if scrape is not None:
        print(f"render /metrics ({len(tracker)} devices): median "
              f"{statistics.median(scrape) * 1000:.3f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
