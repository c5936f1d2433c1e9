"""Delivers every stored alarm to each of its endpoints until the endpoint confirms it.

The outbox is the alarm store itself: a delivery stays unconfirmed, and is retried with
exponential backoff and jitter, until an endpoint answers 2xx (or ACK for DC-09). A restart picks
up where it stopped. An endpoint that fails `down_after_failures` times in a row is declared
down: until a probe succeeds only one delivery at a time goes to it, every `probe_interval_s`.
Deliveries unconfirmed after `deadline_s` go to the endpoint's backup as well and raise a
linkage-trouble alarm for the security room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass

from gateway.config import LinkageSettings
from gateway.ports import AlarmStore, Attempt, DueDelivery, Forwarder
from gateway.stats import Histogram, Stats

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EndpointHealth:
    """Consecutive failures and, while down, when the next probe may go."""

    failures: int = 0
    down_since: float | None = None
    next_probe_at: float = 0.0


class Dispatcher:
    """Sends due deliveries concurrently; `wake` after new alarms are committed."""

    def __init__(
        self,
        store: AlarmStore,
        forwarder: Forwarder,
        stats: Stats,
        linkage: LinkageSettings,
        concurrency: int = 64,
    ) -> None:
        self._store = store
        self._forwarder = forwarder
        self._stats = stats
        self._linkage = linkage
        self._concurrency = concurrency
        self._wake = asyncio.Event()
        self._in_flight: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._results: list[Attempt] = []
        # Sent but not yet recorded: the store still calls these due; do not send them again.
        self._unrecorded: set[tuple[str, str]] = set()
        self._results_ready = asyncio.Event()
        self.health: dict[str, EndpointHealth] = {
            name: EndpointHealth() for name in linkage.endpoints
        }
        self._backups = {n: e.backup for n, e in linkage.endpoints.items() if e.backup}

    def wake(self) -> None:
        """New deliveries may be due now."""
        self._wake.set()

    def endpoint_states(self) -> dict[str, str]:
        """'up' or 'down' per endpoint, for /healthz."""
        return {n: "down" if h.down_since else "up" for n, h in self.health.items()}

    async def run(self) -> None:
        """Send what is due, record outcomes in batches and escalate overdue deliveries."""
        recorder = asyncio.create_task(self._record_loop(), name="record-attempts")
        escalator = asyncio.create_task(self._escalate_loop(), name="escalate")
        try:
            while True:
                self._wake.clear()
                await self._send_due()
                await self._sleep_until_due()
        finally:
            for task in (*self._tasks, recorder, escalator):
                task.cancel()
            await self._flush_results()

    async def _send_due(self) -> None:
        room = self._concurrency - len(self._in_flight)
        if room <= 0:
            return
        now = time.time()
        probing: set[str] = set()
        for due in await self._store.due_deliveries(now, room + len(self._in_flight)):
            key = (due.alarm.id, due.endpoint)
            busy = key in self._in_flight or key in self._unrecorded
            if busy or not self._may_send(due.endpoint, now, probing):
                continue
            self._in_flight.add(key)
            task = asyncio.create_task(self._attempt(due), name=f"deliver {key}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _may_send(self, endpoint: str, now: float, probing: set[str]) -> bool:
        health = self.health.setdefault(endpoint, EndpointHealth())
        if health.down_since is None:
            return True
        # Down: one probe at a time, no more often than probe_interval_s.
        busy = any(e == endpoint for _, e in self._in_flight)
        if busy or endpoint in probing or now < health.next_probe_at:
            return False
        probing.add(endpoint)
        health.next_probe_at = now + self._linkage.probe_interval_s
        return True

    async def _sleep_until_due(self) -> None:
        next_due = await self._store.next_due_at()
        timeout = 1.0 if next_due is None else min(max(next_due - time.time(), 0.005), 1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _attempt(self, due: DueDelivery) -> None:
        key = (due.alarm.id, due.endpoint)
        try:
            result = await self._forwarder.send(due.endpoint, due.alarm)
            if result.ok:
                self._observe_latency(due)
            retry_at = None if result.ok else time.time() + self.backoff(due.attempts + 1)
            self._results.append(Attempt(due.alarm.id, due.endpoint, result, retry_at))
            self._unrecorded.add(key)
            self._results_ready.set()
            await self._note_health(due.endpoint, result.ok, result.detail)
            if result.ok:
                self._stats.deliveries_ok += 1
            else:
                self._stats.delivery_failures += 1
                failures = self._stats.failures_by_endpoint
                failures[due.endpoint] = failures.get(due.endpoint, 0) + 1
                log.warning(
                    "alarm %s to %s failed (attempt %d): %s",
                    due.alarm.id, due.endpoint, due.attempts + 1, result.detail,
                )  # fmt: skip
        except Exception:
            # The delivery stays unconfirmed in the store, so it is tried again.
            log.exception("alarm %s to %s: attempt failed unexpectedly", *key)
        finally:
            self._in_flight.discard(key)
            self._wake.set()

    def _observe_latency(self, due: DueDelivery) -> None:
        # From the gateway's receipt of the press to this endpoint's confirmation, retries and
        # backoff included: what GA/T 368's 2 s is about. Wall clock, as received_at is.
        histogram = self._stats.alarm_delivery.get(due.endpoint)
        if histogram is None:
            histogram = self._stats.alarm_delivery[due.endpoint] = Histogram()
        histogram.observe(max(time.time() - due.alarm.received_at.timestamp(), 0.0))

    async def _note_health(self, endpoint: str, ok: bool, detail: str) -> None:
        health = self.health.setdefault(endpoint, EndpointHealth())
        if ok:
            health.failures = 0
            if health.down_since is not None:
                down_for = time.time() - health.down_since
                health.down_since = None
                log.warning("endpoint %s is up again after %.1f s", endpoint, down_for)
                await self._store.audit("endpoint_up", "gateway", {"endpoint": endpoint})
            return
        health.failures += 1
        if health.down_since is None and health.failures >= self._linkage.down_after_failures:
            health.down_since = time.time()
            health.next_probe_at = health.down_since + self._linkage.probe_interval_s
            log.error("endpoint %s declared down after %d failures: %s",
                      endpoint, health.failures, detail)  # fmt: skip
            await self._store.audit("endpoint_down", "gateway",
                                    {"endpoint": endpoint, "detail": detail})  # fmt: skip

    async def _record_loop(self) -> None:
        # Group commit: outcomes that finished while the last batch was written go together.
        while True:
            await self._results_ready.wait()
            self._results_ready.clear()
            await self._flush_results()

    async def _flush_results(self) -> None:
        batch, self._results = self._results, []
        if not batch:
            return
        try:
            await self._store.record_attempts(batch)
        except Exception:
            log.exception("could not record %d delivery outcomes; they will be sent again",
                          len(batch))  # fmt: skip
        finally:
            self._unrecorded.difference_update((a.alarm_id, a.endpoint) for a in batch)
            self._wake.set()

    async def _escalate_loop(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._linkage.deadline_s / 4))
            try:
                troubles = await self._store.escalate_overdue(
                    time.time(), self._linkage.deadline_s, self._backups
                )
            except Exception:
                log.exception("could not escalate overdue deliveries")
                continue
            if troubles:
                self._stats.trouble_alarms += len(troubles)
                log.error("linkage trouble: %d alarm(s) not confirmed within %.0f s",
                          len(troubles), self._linkage.deadline_s)  # fmt: skip
                self.wake()

    def backoff(self, attempts: int) -> float:
        """Full-jitter exponential backoff: uniform in [base/2, base], base doubling per try."""
        base = self._linkage.retry_initial_s * 2 ** max(attempts - 1, 0)
        base = min(base, self._linkage.retry_max_s)
        return random.uniform(base / 2, base)
