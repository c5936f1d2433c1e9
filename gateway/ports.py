"""Interfaces the core talks to; adapters in storage/, linkage/ and mqtt.py implement them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gateway.models import Alarm, DeadLetter, Kind
from gateway.registry import Registry


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
    test: bool = False
    related_alarm_id: str | None = None
    evidence: str | None = None


@dataclass(frozen=True, slots=True)
class Restore:
    """A device reported it is back to normal: recorded on its open alarms, never closing them."""

    school: str
    kind: Kind
    device: str
    at: datetime
    event: str | None = None  # only the device's open alarms of this event (a camera trouble)


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
class Attempt:
    """The outcome of one delivery attempt, to be recorded."""

    alarm_id: str
    endpoint: str
    result: SendResult
    retry_at: float | None


@dataclass(frozen=True, slots=True)
class AlarmQuery:
    """Filters and page of an alarm listing."""

    school: str | None = None
    device: str | None = None
    state: str | None = None
    open_only: bool = False
    test: bool | None = None
    limit: int = 100
    offset: int = 0


class AlarmNotFoundError(LookupError):
    """No alarm has that id."""


class InvalidTransitionError(ValueError):
    """The alarm's state does not allow that action; the message says why."""


class AlarmStore(Protocol):
    """Durable alarms, their per-endpoint outbox, dead letters and the audit log."""

    async def commit(
        self,
        alarms: Sequence[NewAlarm],
        letters: Sequence[NewDeadLetter],
        restores: Sequence[Restore] = (),
    ) -> list[str]:
        """Store all in one durable transaction; return the ids of alarms that were new
        (a resent press within the duplicate window is not new)."""
        ...

    async def due_deliveries(self, now: float, limit: int) -> list[DueDelivery]:
        """Deliveries not yet confirmed whose next attempt is due, most urgent first."""
        ...

    async def next_due_at(self) -> float | None:
        """Epoch seconds of the earliest unconfirmed delivery attempt, if any."""
        ...

    async def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        """Record attempts in one transaction: delivered if ok, else retrying at retry_at."""
        ...

    async def escalate_overdue(
        self, now: float, deadline_s: float, backups: dict[str, str]
    ) -> list[str]:
        """Deliveries unconfirmed after deadline_s: add the endpoint's backup delivery and a
        trouble alarm for the security room, once each; return the trouble alarm ids."""
        ...

    async def transition(self, alarm_id: str, action: str, operator: str, note: str) -> Alarm:
        """acknowledge or reset an alarm (GB 50394: a person closes it); raises
        AlarmNotFoundError or InvalidTransitionError."""
        ...

    async def audit(self, action: str, actor: str, detail: dict[str, object]) -> None:
        """Append an event that concerns no single alarm (an endpoint going down, ...)."""
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

    async def last_test_ok(self) -> dict[str, datetime]:
        """Per school, when a test alarm was last confirmed by a linkage endpoint."""
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


class RegistrySource(Protocol):
    """Where the registry is kept (blocking calls; run them in a thread)."""

    def version(self) -> int:
        """Changes whenever the registry does."""
        ...

    def load(self) -> Registry:
        """The whole registry, indexed."""
        ...
