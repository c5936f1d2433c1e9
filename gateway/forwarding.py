"""Delivers every stored alarm to each of its endpoints until the endpoint confirms it.

The outbox is the alarm store itself: a delivery stays unconfirmed, and is retried with
exponential backoff and jitter, until an endpoint answers 2xx. A restart picks up where it
stopped, because nothing here is kept only in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from gateway.ports import AlarmStore, DueDelivery, Forwarder
from gateway.stats import Stats

log = logging.getLogger(__name__)


class Dispatcher:
    """Sends due deliveries concurrently; `wake` after new alarms are committed."""

    def __init__(
        self,
        store: AlarmStore,
        forwarder: Forwarder,
        stats: Stats,
        retry_initial_s: float,
        retry_max_s: float,
        concurrency: int = 64,
    ) -> None:
        self._store = store
        self._forwarder = forwarder
        self._stats = stats
        self._initial = retry_initial_s
        self._max = retry_max_s
        self._concurrency = concurrency
        self._wake = asyncio.Event()
        self._in_flight: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """New deliveries may be due now."""
        self._wake.set()

    async def run(self) -> None:
        """Loop forever: send what is due, then sleep until the next due time or a wake."""
        try:
            while True:
                self._wake.clear()
                await self._send_due()
                await self._sleep_until_due()
        finally:
            for task in self._tasks:
                task.cancel()

    async def _send_due(self) -> None:
        room = self._concurrency - len(self._in_flight)
        if room <= 0:
            return
        for due in await self._store.due_deliveries(time.time(), room + len(self._in_flight)):
            key = (due.alarm.id, due.endpoint)
            if key in self._in_flight:
                continue
            self._in_flight.add(key)
            task = asyncio.create_task(self._attempt(due), name=f"deliver {key}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _sleep_until_due(self) -> None:
        next_due = await self._store.next_due_at()
        timeout = 1.0 if next_due is None else min(max(next_due - time.time(), 0.005), 1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _attempt(self, due: DueDelivery) -> None:
        key = (due.alarm.id, due.endpoint)
        try:
            result = await self._forwarder.send(due.endpoint, due.alarm)
            retry_at = None if result.ok else time.time() + self.backoff(due.attempts + 1)
            await self._store.record_attempt(due.alarm.id, due.endpoint, result, retry_at)
            if result.ok:
                self._stats.deliveries_ok += 1
            else:
                self._stats.delivery_failures += 1
                log.warning(
                    "alarm %s to %s failed (attempt %d): %s",
                    due.alarm.id, due.endpoint, due.attempts + 1, result.detail,
                )  # fmt: skip
        except Exception:
            # The delivery stays unconfirmed in the store, so it is tried again.
            log.exception("alarm %s to %s: attempt could not be recorded", *key)
        finally:
            self._in_flight.discard(key)
            self._wake.set()

    def backoff(self, attempts: int) -> float:
        """Full-jitter exponential backoff: uniform in [base/2, base], base doubling per try."""
        base = min(self._initial * 2 ** max(attempts - 1, 0), self._max)
        return random.uniform(base / 2, base)
