"""The fleet as the gateway sees it: the registry (what should exist) joined with availability
(what is heard), the effects of availability changes, and the devices listing for the API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from gateway.alarms import OfflineTroubles
from gateway.availability import AvailabilityTracker, Change
from gateway.config import Settings
from gateway.coverage import Coverage, compute
from gateway.lineproto import change_line
from gateway.models import DeviceRecord, Kind
from gateway.ports import AlarmStore, RegistrySource
from gateway.registry import Device, Location, Registry

log = logging.getLogger(__name__)


class Fleet:
    """Registry + availability; owns the silence check loop and the change effects."""

    def __init__(
        self,
        settings: Settings,
        publish: Callable[[str, bytes], bool],
        add_point: Callable[[bytes], None],
    ) -> None:
        self._settings = settings
        self._publish = publish
        self._add_point = add_point
        self.registry = Registry()
        self.coverage: Coverage | None = None
        self.coverage_ms = 0.0
        self.coverage_wanted = asyncio.Event()
        self.registry_changed = asyncio.Event()
        self.tracker = AvailabilityTracker(settings.availability, self.registered)
        self.troubles = OfflineTroubles(settings.availability.trouble_cooldown_s, self.registered)

    async def follow_registry(self, store: RegistrySource, every_s: float = 2.0) -> None:
        """Reload the registry whenever its version changes (an import, the API)."""
        while True:
            try:
                version = await asyncio.to_thread(store.version)
                if version != self.registry.version:
                    started = time.perf_counter()
                    self.registry = await asyncio.to_thread(store.load)
                    self.coverage_wanted.set()
                    log.info("registry version %d: %d schools, %d devices (%.2f s)",
                             version, len(self.registry.schools), len(self.registry.devices),
                             time.perf_counter() - started)  # fmt: skip
            except Exception:
                log.exception("could not read the registry; keeping version %d",
                              self.registry.version)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.registry_changed.wait(), every_s)
            self.registry_changed.clear()

    async def keep_coverage(self, store: AlarmStore) -> None:
        """Recompute the rates every coverage.refresh_s, or at once when the registry changed."""
        refresh = self._settings.coverage.refresh_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.coverage_wanted.wait(), refresh)
            self.coverage_wanted.clear()
            try:
                started = time.perf_counter()
                tests = await store.last_test_ok()
                states = self.tracker.states()
                self.coverage = await asyncio.to_thread(
                    compute, self.registry, states, tests, self._settings.coverage,
                    datetime.now(UTC),
                )  # fmt: skip
                self.coverage_ms = (time.perf_counter() - started) * 1000
            except Exception:
                log.exception("coverage could not be computed")

    def retention_days(self, school: str) -> int:
        """Days of video the school must keep: its registry entry, else the common 30."""
        entry = self.registry.schools.get(school)
        return entry.retention_days if entry is not None else 30

    def registered(self, key: str) -> Device | None:
        """The registry entry of a device key, if any."""
        return self.registry.devices.get(key)

    def apply(self, changes: list[Change]) -> None:
        """Publish (retained, on change) and record what the gateway judged."""
        root = self._settings.mqtt.topic_root
        for change in changes:
            log.info("%s is %s (%s)", change.key, change.state, change.reason)
            if change.judged:
                self._add_point(change_line(change.school, change.kind.value, change.device,
                                            change.state, change.reason, change.at))  # fmt: skip
            if change.publish and change.state != "unknown":
                topic = f"{root}/{change.key}/availability"
                payload = orjson.dumps({"state": change.state, "by": "gateway"})
                if not self._publish(topic, payload):
                    log.warning("could not publish %s for %s (broker down)", change.state, topic)

    async def watch(self, store: AlarmStore, connected: Callable[[], bool]) -> None:
        """Check silence every interval; commit the troubles it raises, apply the changes."""
        interval = self._settings.availability.check_interval_s
        while True:
            await asyncio.sleep(interval)
            changes = self.tracker.check(datetime.now(UTC), connected())
            if not changes:
                continue
            troubles = [t for c in changes if (t := self.troubles.for_change(c)) is not None]
            if troubles:
                with contextlib.suppress(Exception):  # retried: the device stays offline
                    await store.commit(troubles, [])
            self.apply(changes)

    def records(
        self,
        school: str | None = None,
        kind: str | None = None,
        registered: bool | None = None,
        state: str | None = None,
    ) -> list[DeviceRecord]:
        """Heard devices (marked registered or not) plus registered ones never heard."""
        heard = {
            f"{r.school}/{r.kind}/{r.device}": r.model_copy(
                update={"registered": f"{r.school}/{r.kind}/{r.device}" in self.registry}
            )
            for r in self.tracker.records(school, kind)
        }
        for key, device in self.registry.devices.items():
            if key in heard or (school and device.school != school):
                continue
            if kind and device.kind != kind:
                continue
            heard[key] = DeviceRecord(
                school=device.school, kind=Kind(device.kind), device=device.id, registered=True
            )
        return [
            r
            for _, r in sorted(heard.items())
            if (registered is None or r.registered == registered)
            and (state is None or r.availability == state)
        ]


def test_button(registry: Registry, school: str) -> Device | None:
    """The button a school's end-to-end test starts from: the gatehouse one, else any."""
    buttons = [d for d in registry.by_school.get(school, []) if d.kind == Kind.BUTTON]
    gatehouse = [d for d in buttons if d.location == Location.GATEHOUSE]
    chosen = gatehouse or buttons
    return chosen[0] if chosen else None
