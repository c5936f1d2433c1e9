"""Telemetry from ingest to the time-series database through the durable spool (gateway/spool.py).

Ingest hands each batch's points to `add_batch`, which appends them to the spool (one fsync'd
record) before the batch is acknowledged to the broker. `run` reads the spool in order and
writes as soon as points wait and fewer than two writes are under way, after a linger of
`influxdb.linger_s` (a few ms) for more to come: at low rates a point waits the linger and one
write, and under load the points that arrive during two writes make the next batch, so batches
grow with the load by themselves, up to `batch_size` per request. The second write in flight
keeps a point that arrives during a slow write (influxd compacting) from waiting for it. A
batch leaves the spool only once the database took it and every batch before it, so an outage
of the database loses nothing (the spool holds `spool.max_bytes`, then evicts its oldest
points, counted and logged). After a failed write the writer waits twice `flush_interval_s`,
doubling up to 5 s, and new points do not cut that short.

Backpressure: while the spool is filled past `spool.backpressure_at` of its bound, `add_batch`
holds each batch until the spool drains below 90 % of that mark or `spool.max_hold_s` passes.
Held batches are not acknowledged, so the broker stops sending more (QoS 1 in-flight window) and
keeps them queued. The mark is near the bound on purpose: during a database outage the spool
(millions of points) must take the backlog, not the broker's far smaller queue. Only the
telemetry session waits here; alarms have their own session and never pass through.

Points the gateway makes itself (availability verdicts, video quality scores) come through
`add`: they wait in memory (at most `influxdb.max_buffer`, oldest evicted) and are spooled by
the writer before its next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from gateway.ports import PointsRejectedError, TelemetrySink
from gateway.spool import Chunk, Spool
from gateway.stats import Stats

log = logging.getLogger(__name__)


class TelemetryWriter:
    """Owns the spool's reading side; `add_batch` appends durably, `run` writes until cancelled."""

    def __init__(
        self,
        sink: TelemetrySink,
        stats: Stats,
        spool: Spool,
        batch_size: int,
        flush_interval_s: float,
        max_loose: int,
        on_rejected: Callable[[bytes, str], None],
        high_water_bytes: int = 900 << 20,
        max_hold_s: float = 1.0,
        linger_s: float = 0.005,
        max_in_flight: int = 2,
    ) -> None:
        self._sink = sink
        self._stats = stats
        self._spool = spool
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._linger = linger_s
        self._max_in_flight = max_in_flight
        self._loose: deque[bytes] = deque()
        self._max_loose = max_loose
        self._high_water = high_water_bytes
        self._max_hold_s = max_hold_s
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._on_rejected = on_rejected
        self.healthy = True
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        """Points spooled or loose and not yet written."""
        return self._spool.pending_points + len(self._loose)

    @property
    def backlogged(self) -> bool:
        """The spool is filled past the high-water mark: telemetry consumption is being slowed."""
        return self._spool.pending_bytes >= self._high_water

    async def add_batch(self, lines: list[bytes]) -> None:
        """Spool one batch durably (raises if the disk refuses: the batch stays unacknowledged)."""
        if not lines:
            return
        if self.backlogged:
            await self._hold()
        evicted = await asyncio.to_thread(self._spool.append, lines)
        self._stats.points_queued += len(lines)
        self._stats.points_evicted += evicted
        if self.healthy:
            self._wake.set()  # (while the database fails, the writer keeps to its backoff)

    async def _hold(self) -> None:
        self._stats.telemetry_holds += 1
        if self._stats.telemetry_holds % 100 == 1:
            waiting = self._spool.pending_points
            log.warning("telemetry writer behind (%d points waiting): slowing telemetry "
                        "consumption, the broker keeps the rest", waiting)  # fmt: skip
        self._drained.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), self._max_hold_s)

    def add(self, line: bytes) -> None:
        """Queue one point the gateway made itself (spooled by `run`)."""
        if len(self._loose) >= self._max_loose:
            self._loose.popleft()
            self._stats.points_evicted += 1
            if self._stats.points_evicted % 1000 == 1:
                log.warning("telemetry: %d gateway points waiting, evicted the oldest (%d so far)",
                            self._max_loose, self._stats.points_evicted)  # fmt: skip
        self._loose.append(line)
        self._stats.points_queued += 1
        if self.healthy:
            self._wake.set()

    async def run(self) -> None:
        """Write forever: what waits, after the linger, while fewer than `max_in_flight` writes
        are under way; the spool moves past a batch once it and every batch before it is in."""
        backoff = self._interval
        if self.pending:  # points from before a restart
            self._wake.set()
        while True:
            if self.healthy:
                await self._pipeline()  # returns when a write failed
                backoff = min(self._interval * 2, 5.0)
                continue
            await asyncio.sleep(backoff)
            await self._spool_loose()
            if await self.flush(limit=self._spool.pending_points):
                self._wake.set()  # (what arrived while the writes failed did not set it)
            else:
                backoff = min(backoff * 2, 5.0)

    async def _pipeline(self) -> None:
        """Write what waits, up to `max_in_flight` batches at once, until a write fails; the
        spool moves past a batch once it and every batch before it are in (acks in order)."""
        flights: deque[tuple[Chunk, asyncio.Task[bool], float]] = deque()
        wake: asyncio.Future[bool] = asyncio.ensure_future(self._wake.wait())
        try:
            while True:
                waiting = [wake] if len(flights) < self._max_in_flight else []
                if flights:
                    waiting.append(flights[0][1])
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                while flights and flights[0][1].done():
                    chunk, task, started = flights.popleft()
                    if not task.result():
                        return
                    await self._done(chunk, started)
                if wake.done() and len(flights) < self._max_in_flight:
                    wake = await self._take_off(flights)
        finally:
            wake.cancel()
            for _, task, _ in flights:
                task.cancel()

    async def _take_off(
        self, flights: deque[tuple[Chunk, asyncio.Task[bool], float]]
    ) -> asyncio.Future[bool]:
        """Start writing what is spooled after the batches in flight; a new wake-up future."""
        if self._linger and self.pending < self._batch_size:
            await asyncio.sleep(self._linger)
        self._wake.clear()  # set again by what arrives from now on: the next batch
        wake: asyncio.Future[bool] = asyncio.ensure_future(self._wake.wait())
        await self._spool_loose()
        after = flights[-1][0] if flights else None
        chunk = await asyncio.to_thread(self._spool.read, self._batch_size, after)
        if chunk.points:
            flights.append((chunk, asyncio.ensure_future(self._send(chunk)), time.perf_counter()))
            if self.pending > sum(c.points for c, _, _ in flights):
                self._wake.set()  # more than one batch waits
        return wake

    async def _spool_loose(self) -> None:
        if self._loose:
            lines = list(self._loose)
            self._loose.clear()
            self._stats.points_evicted += await asyncio.to_thread(self._spool.append, lines)

    async def flush(self, limit: int | None = None) -> bool:
        """Write up to `limit` spooled points (default all), batch by batch; False if the sink
        failed (the unwritten points stay spooled)."""
        if limit is None:
            await self._spool_loose()
            limit = self._spool.pending_points
        remaining = limit
        while remaining > 0:
            chunk = await asyncio.to_thread(self._spool.read, min(remaining, self._batch_size))
            if not chunk.points:
                break
            if not await self._write(chunk):
                return False
            remaining -= chunk.points
        return True

    async def _write(self, chunk: Chunk) -> bool:
        started = time.perf_counter()
        if not await self._send(chunk):
            return False
        await self._done(chunk, started)
        return True

    async def _send(self, chunk: Chunk) -> bool:
        """Write the chunk; True if it is done with (written, or refused for good)."""
        payload = b"\n".join(chunk.lines)
        try:
            await self._sink.write(payload)
        except PointsRejectedError as exc:
            # The database kept the good points and refused the rest: retrying cannot
            # help, so the batch is done and the refusal is kept as a dead letter.
            self._stats.points_rejected += chunk.points
            log.error("InfluxDB refused points: %s", exc)
            self._on_rejected(payload, str(exc))
        except Exception as exc:  # any sink failure keeps the batch for the next try
            self._note_failure(exc)
            return False
        else:
            self._stats.points_written += chunk.points
        return True

    async def _done(self, chunk: Chunk, started: float) -> None:
        await asyncio.to_thread(self._spool.ack, chunk)
        if self._spool.pending_bytes < self._high_water * 0.9:
            self._drained.set()
        took = time.perf_counter() - started
        self._stats.last_write_ms = took * 1000
        self._stats.telemetry_write.observe(took)
        if not self.healthy:
            log.info("telemetry writes recovered; %d points pending", self.pending)
        self.healthy, self.last_error = True, None

    def _note_failure(self, exc: Exception) -> None:
        self._stats.write_errors += 1
        if self.healthy:
            log.warning("telemetry write failed, will retry (the spool keeps the points): %s",
                        exc)  # fmt: skip
        self.healthy, self.last_error = False, str(exc) or type(exc).__name__
