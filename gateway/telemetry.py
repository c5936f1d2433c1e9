"""Batches telemetry points and writes them to the sink by size or time, retrying on failure.

The buffer is in memory and bounded (`influxdb.max_buffer`): when InfluxDB stays down longer
than the buffer lasts, the oldest points are evicted with a counter and a warning. A durable
on-disk spool replaces this buffer in a later issue; alarms never pass through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable

from gateway.ports import PointsRejectedError, TelemetrySink
from gateway.stats import Stats

log = logging.getLogger(__name__)


class TelemetryWriter:
    """Owns the point buffer; `add` never blocks, `run` writes until cancelled."""

    def __init__(
        self,
        sink: TelemetrySink,
        stats: Stats,
        batch_size: int,
        flush_interval_s: float,
        max_buffer: int,
        on_rejected: Callable[[bytes, str], None],
    ) -> None:
        self._sink = sink
        self._stats = stats
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._buffer: deque[bytes] = deque()
        self._max_buffer = max_buffer
        self._wake = asyncio.Event()
        self._on_rejected = on_rejected
        self.healthy = True
        self.last_error: str | None = None

    def add(self, line: bytes) -> None:
        """Queue one point for writing."""
        if len(self._buffer) >= self._max_buffer:
            self._buffer.popleft()
            self._stats.points_evicted += 1
            if self._stats.points_evicted % 1000 == 1:
                log.warning(
                    "telemetry buffer full (%d points): evicted %d oldest points so far",
                    self._max_buffer,
                    self._stats.points_evicted,
                )
        self._buffer.append(line)
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Points buffered and not yet written."""
        return len(self._buffer)

    async def run(self) -> None:
        """Write forever: a full batch at once, a partial one when the interval has passed."""
        backoff = self._interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            # Only what is buffered now: writing what trickled in during the last write would
            # turn one large batch into many tiny requests.
            ok = await self.flush(limit=len(self._buffer))
            backoff = self._interval if ok else min(backoff * 2, 5.0)

    async def flush(self, limit: int | None = None) -> bool:
        """Write up to `limit` buffered points (default all), batch by batch; False if the
        sink failed (the unwritten points stay buffered)."""
        remaining = len(self._buffer) if limit is None else min(limit, len(self._buffer))
        while remaining > 0:
            count = min(remaining, self._batch_size)
            if not await self._write_batch(count):
                return False
            remaining -= count
        return True

    async def _write_batch(self, count: int) -> bool:
        batch = list(itertools.islice(self._buffer, count))
        started = time.perf_counter()
        payload = b"\n".join(batch)
        try:
            await self._sink.write(payload)
        except PointsRejectedError as exc:
            # The database kept the good points and refused the rest: retrying cannot
            # help, so the batch is done and the refusal is kept as a dead letter.
            self._stats.points_rejected += count
            log.error("InfluxDB refused points: %s", exc)
            self._on_rejected(payload, str(exc))
        except Exception as exc:  # any sink failure keeps the batch for the next try
            self._note_failure(exc)
            return False
        else:
            self._stats.points_written += count
        for _ in range(count):
            self._buffer.popleft()
        took = time.perf_counter() - started
        self._stats.last_write_ms = took * 1000
        self._stats.telemetry_write.observe(took)
        if not self.healthy:
            log.info("telemetry writes recovered; %d points pending", len(self._buffer))
        self.healthy, self.last_error = True, None
        return True

    def _note_failure(self, exc: Exception) -> None:
        self._stats.write_errors += 1
        if self.healthy:
            log.warning("telemetry write failed, will retry: %s", exc)
        self.healthy, self.last_error = False, str(exc) or type(exc).__name__
