"""The fleet as the gateway sees it: the registry (what should exist) joined with availability
(what is heard), the effects of availability changes, and the devices listing for the API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from gateway.alarms import OfflineTroubles
from gateway.availability import AvailabilityTracker, Change
from gateway.config import Settings
from gateway.lineproto import change_line
from gateway.models import DeviceRecord, Kind
from gateway.ports import AlarmStore
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
        self.tracker = AvailabilityTracker(settings.availability, self.registered)
        self.troubles = OfflineTroubles(settings.availability.trouble_cooldown_s, self.registered)

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
