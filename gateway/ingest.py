"""MQTT message -> driver -> core: telemetry points, alarms and dead letters for one batch.

A batch's alarms and dead letters are committed in one durable transaction before the batch is
acknowledged to the broker, so nothing a device published is lost or silently dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from drivers.base import DecodeError, Driver
from gateway.alarms import (
    NvrTroubles,
    OfflineTroubles,
    alarm_category,
    is_restore,
    new_alarm,
)
from gateway.availability import AvailabilityTracker, Change
from gateway.config import Settings
from gateway.lineproto import tags, to_line
from gateway.models import (
    ID_PATTERN,
    Availability,
    ButtonStatus,
    Channel,
    DeviceMessage,
    GateStatus,
    Kind,
    Topic,
)
from gateway.ports import AlarmStore, NewAlarm, NewDeadLetter, Restore
from gateway.ratelimit import RateLimit
from gateway.stats import Stats, TopicClass

log = logging.getLogger(__name__)

DriverLookup = Callable[[Topic], Driver]
# Never rate-limited: alarms, and availability (a last will; the gateway's own retained word).
UNLIMITED = ("/event", "/availability")
TOPIC_SHAPE = "{root}/{school}/{kind}/{device}/{channel}"
_KINDS = {kind.value: kind for kind in Kind}
_CHANNELS = {channel.value: channel for channel in Channel}
INVALID: TopicClass = ("invalid", "invalid")
# Bodies that never raise an alarm, restore one or are an NVR trouble (exact types).
_QUIET = frozenset({ButtonStatus, GateStatus, Availability})
ROUTES_KEPT = 200_000  # topics whose parse, driver and tags are kept (~250 bytes each)


class TopicError(ValueError):
    """A topic that does not follow the device contract."""


def parse_topic(topic: str, root: str) -> Topic:
    """`campus/s1/button/b1/event` -> Topic, or TopicError saying what is wrong."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != root:
        raise TopicError(f"unknown topic: expected {TOPIC_SHAPE.replace('{root}', root)}")
    _, school, kind, device, channel = parts
    for name, value in (("school", school), ("device", device)):
        if not ID_PATTERN.fullmatch(value):
            raise TopicError(f"bad {name} id {value!r}: must match {ID_PATTERN.pattern}")
    parsed_kind = _KINDS.get(kind)
    if parsed_kind is None:
        raise TopicError(f"unknown kind {kind!r}: one of {[k.value for k in Kind]}")
    parsed_channel = _CHANNELS.get(channel)
    if parsed_channel is None:
        choices = [c.value for c in Channel]
        raise TopicError(f"unknown channel {channel!r}: one of {choices}")
    return Topic(school, parsed_kind, device, parsed_channel)


def topic_class(topic: str, root: str) -> TopicClass:
    """(kind, channel) of a topic, for counters; INVALID when either is not in the contract."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[0] == root and parts[2] in _KINDS and parts[4] in _CHANNELS:
        return parts[2], parts[4]
    return INVALID


@dataclass(frozen=True, slots=True)
class _Route:
    """What a topic string comes to, worked out once: the parsed topic, the device's driver and
    the tags of its points."""

    topic: Topic
    driver: Driver
    tags: str


@dataclass(slots=True)
class _Batch:
    alarms: list[NewAlarm] = field(default_factory=list)
    letters: list[NewDeadLetter] = field(default_factory=list)
    restores: list[Restore] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    used: dict[TopicClass, int] = field(default_factory=dict)
    dead: dict[TopicClass, int] = field(default_factory=dict)


class Ingest:
    """Turns batches of raw messages into stored alarms, queued points and dead letters."""

    def __init__(
        self,
        settings: Settings,
        drivers: DriverLookup,
        store: AlarmStore,
        add_points: Callable[[list[bytes]], Awaitable[None]],
        devices: AvailabilityTracker,
        stats: Stats,
        on_alarms: Callable[[list[str]], None],
        troubles: OfflineTroubles | None = None,
        on_changes: Callable[[list[Change]], None] = lambda changes: None,
        on_snapshot: Callable[[Topic, bytes, datetime], None] | None = None,
        nvr: NvrTroubles | None = None,
    ) -> None:
        self._settings = settings
        self._drivers = drivers
        self._store = store
        self._add_points = add_points
        self._limit = RateLimit(settings.limits.device_msgs_per_s)
        self._clock = time.monotonic
        self._devices = devices
        self._stats = stats
        self._on_alarms = on_alarms
        self._troubles = troubles
        self._on_changes = on_changes
        self._on_snapshot = on_snapshot
        self._nvr = nvr
        self._routes: dict[str, _Route] = {}

    async def handle(self, raw: list[tuple[str, bytes]]) -> None:
        """Decode and route every message; returns once alarms and letters are durable."""
        now, started = datetime.now(UTC), time.perf_counter()
        batch, tick, allow = _Batch(), self._clock(), self._limit.allow
        allowed: list[str] = []
        denied: list[str] = []
        for topic, payload in raw:
            if topic.endswith(UNLIMITED):
                self._one(topic, payload, now, batch)
                continue
            device = topic.rpartition("/")[0]
            if allow(device, tick):
                allowed.append(device)
                self._one(topic, payload, now, batch)
            else:
                denied.append(device)
        try:
            await self._durable(batch, started)
        except BaseException:
            self._limit.refund(allowed, denied, tick)  # the batch comes again: count it once
            raise
        self._stats.rate_limited += len(denied)

    async def _durable(self, batch: _Batch, started: float) -> None:
        if batch.alarms or batch.letters or batch.restores:
            created = await self._store.commit(batch.alarms, batch.letters, batch.restores)
            self._stats.ingest_commit.observe(time.perf_counter() - started)
            self._stats.alarms_raised += len(created)
            self._stats.alarm_duplicates += len(batch.alarms) - len(created)
            if created:
                self._on_alarms(created)
        # Points are spooled after the commit so a failed commit leaves no half-handled batch
        # (a retried batch's alarms are recognised as duplicates); both before the ack.
        await self._add_points(batch.lines)
        if batch.changes:
            self._on_changes(batch.changes)
        # Counted once the batch is durable, so a commit retried after a store error is not
        # counted twice.
        _merge(self._stats.class_used, batch.used)
        _merge(self._stats.class_dead, batch.dead)

    def flooding(self) -> dict[str, int]:
        """The devices that lost the most messages to the rate limit (topic prefix -> count)."""
        return self._limit.report()

    def _one(self, topic: str, payload: bytes, now: datetime, batch: _Batch) -> None:
        if topic.endswith("/snapshot"):
            self._snapshot(topic, payload, now, batch)
            return
        decoded = self._decode(topic, payload, now, batch)
        if decoded is None:
            return
        msg, route = decoded
        key = (route.topic.kind, route.topic.channel)
        batch.used[key] = batch.used.get(key, 0) + 1
        if not (isinstance(msg.body, Availability) and msg.body.by == "gateway"):
            # (the gateway's own word was written when judged)
            batch.lines.append(to_line(msg, route.tags))
        change = self._devices.seen(msg)
        if change is not None:
            batch.changes.append(change)
            trouble = self._troubles.for_change(change) if self._troubles else None
            if trouble is not None:
                batch.alarms.append(trouble)
        if type(msg.body) in _QUIET:
            return  # the volume: raises no alarm, restores nothing, is no NVR trouble
        category = alarm_category(msg)
        if category is not None:
            test_mode = self._devices.in_test_mode(msg.topic.device_key)
            batch.alarms.append(new_alarm(msg, category, self._settings.linkage, test_mode))
        elif is_restore(msg):
            t = msg.topic
            batch.restores.append(Restore(t.school, t.kind, t.device, msg.received_at))
        if self._nvr is not None:
            raised, cleared = self._nvr.check(msg)
            batch.alarms.extend(raised)
            batch.restores.extend(cleared)

    def _decode(
        self, topic: str, payload: bytes, now: datetime, batch: _Batch
    ) -> tuple[DeviceMessage, _Route] | None:
        limit = self._settings.mqtt.max_payload_bytes
        if len(payload) > limit:
            reason = (
                f"oversized: {len(payload)} bytes > mqtt.max_payload_bytes ({limit});"
                f" kept the first {limit} bytes"
            )
            self._letter(batch, topic, payload[:limit], reason, now)
            return None
        try:
            route = self._routes.get(topic) or self._route(topic)
            body = route.driver.decode(route.topic.channel, payload)
            return DeviceMessage(route.topic, body, now), route
        except TopicError as exc:
            reason = str(exc)
        except (DecodeError, KeyError) as exc:
            reason = str(exc) if not isinstance(exc, KeyError) else f"driver: {exc.args[0]}"
            self._stats.decode_errors += 1
        except Exception as exc:  # a driver bug must not stop the other messages
            log.exception("driver failed on %s", topic)
            reason = f"driver crashed: {type(exc).__name__}: {exc}"
            self._stats.decode_errors += 1
        self._letter(batch, topic, payload, reason, now)
        return None

    def _route(self, topic: str) -> _Route:
        parsed = parse_topic(topic, self._settings.mqtt.topic_root)
        route = _Route(parsed, self._drivers(parsed), tags(parsed))
        if len(self._routes) >= ROUTES_KEPT:
            self._routes.clear()  # a fleet larger than this parses again, as it always did
        self._routes[topic] = route
        return route

    def _snapshot(self, topic: str, payload: bytes, now: datetime, batch: _Batch) -> None:
        limit = self._settings.video_quality.max_snapshot_bytes
        try:
            parsed = parse_topic(topic, self._settings.mqtt.topic_root)
        except TopicError as exc:
            self._letter(batch, topic, payload[:limit], str(exc), now)
            return
        if parsed.kind != Kind.CAMERA:
            reason = f"snapshot from a {parsed.kind}: only cameras send snapshots"
        elif len(payload) > limit:
            reason = f"oversized snapshot: {len(payload)} bytes > video_quality.max_snapshot_bytes"
        elif not payload.startswith(b"\xff\xd8"):
            reason = "not a JPEG: snapshots are JPEG bytes (starting FF D8)"
        else:
            self._stats.snapshots_in += 1
            key = (parsed.kind, parsed.channel)
            batch.used[key] = batch.used.get(key, 0) + 1
            if self._on_snapshot is not None:
                self._on_snapshot(parsed, payload, now)
            return
        self._letter(batch, topic, payload[:limit], reason, now)

    def _letter(
        self, batch: _Batch, topic: str, payload: bytes, reason: str, now: datetime
    ) -> None:
        self._stats.dead_letters_in += 1
        key = topic_class(topic, self._settings.mqtt.topic_root)
        batch.dead[key] = batch.dead.get(key, 0) + 1
        batch.letters.append(NewDeadLetter(topic, payload, reason, now))


def _merge(total: dict[TopicClass, int], batch: dict[TopicClass, int]) -> None:
    for key, count in batch.items():
        total[key] = total.get(key, 0) + count
