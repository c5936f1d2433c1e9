"""Interfaces the core talks to; adapters in storage/, linkage/ and mqtt.py implement them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gateway.models import Alarm, DeadLetter, Kind


@dataclass(frozen=True, slots=True)
class NewAlarm:
    """An alarm the core decided to raise, before it is stored."""

    id: str
    school: str
    kind: Kind
    device: str
    event: str
    category: str
    seq: int
    device_ts: datetime
    received_at: datetime
    endpoints: tuple[str, ...]
    priority: int


@dataclass(frozen=True, slots=True)
class NewDeadLetter:
    """A message kept because it could not be used."""

    topic: str
    payload: bytes
    reason: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """One alarm that must (again) be sent to one endpoint."""

    alarm: Alarm
    endpoint: str
    attempts: int


@dataclass(frozen=True, slots=True)
class SendResult:
    """What an endpoint answered to one attempt."""

    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class AlarmQuery:
    """Filters and page of an alarm listing."""

    school: str | None = None
    device: str | None = None
    state: str | None = None
    limit: int = 100
    offset: int = 0


class AlarmStore(Protocol):
    """Durable alarms, their per-endpoint outbox and the dead-letter table."""

    async def commit(
        self, alarms: Sequence[NewAlarm], letters: Sequence[NewDeadLetter]
    ) -> list[str]:
        """Store both in one durable transaction; return the ids of alarms that were new."""
        ...

    async def due_deliveries(self, now: float, limit: int) -> list[DueDelivery]:
        """Deliveries not yet confirmed whose next attempt is due, most urgent first."""
        ...

    async def next_due_at(self) -> float | None:
        """Epoch seconds of the earliest unconfirmed delivery attempt, if any."""
        ...

    async def record_attempt(
        self, alarm_id: str, endpoint: str, result: SendResult, retry_at: float | None
    ) -> None:
        """Record one attempt: delivered if result.ok, else retrying at retry_at."""
        ...

    async def list_alarms(self, query: AlarmQuery) -> tuple[list[Alarm], int]:
        """Alarms matching the query, oldest first, and the total count."""
        ...

    async def get_alarm(self, alarm_id: str) -> Alarm | None:
        """One alarm with its deliveries."""
        ...

    async def list_dead_letters(self, limit: int, offset: int) -> tuple[list[DeadLetter], int]:
        """Dead letters, newest first, and the total count."""
        ...

    async def counts(self) -> dict[str, int]:
        """alarms_open, alarms_forwarded (all endpoints confirmed), dead_letters."""
        ...


class PointsRejectedError(Exception):
    """The database answered that (some of) a batch's points are invalid; do not retry."""


class TelemetrySink(Protocol):
    """A time-series database accepting line-protocol batches."""

    async def prepare(self) -> None:
        """Create the database if needed; raise if unreachable."""
        ...

    async def write(self, lines: bytes) -> None:
        """Write one batch; raise on any failure (the caller keeps the batch)."""
        ...

    async def ping(self) -> bool:
        """True if the database answers."""
        ...


class Forwarder(Protocol):
    """Sends an alarm to a named linkage endpoint."""

    async def send(self, endpoint: str, alarm: Alarm) -> SendResult:
        """One attempt; never raises for endpoint or network faults."""
        ...
