"""The fleet as the gateway sees it: the registry (what should exist) joined with availability
(what is heard), the effects of availability changes, and the devices listing for the API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_left
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.alarms import OfflineTroubles
from gateway.availability import AvailabilityTracker, Change
from gateway.config import Settings
from gateway.coverage import Coverage, CoverageKeeper
from gateway.heap import Trimmer, freeze_long_lived
from gateway.lineproto import change_line
from gateway.models import DeviceRecord, Kind
from gateway.ports import AlarmStore, RegistrySource
from gateway.registry import DeviceEntry, Location, Registry

log = logging.getLogger(__name__)
# Built once: orjson keeps ~4 KB per result, which 100k retained states would multiply.
_SPOKEN = {
    state: orjson.dumps({"state": state, "by": "gateway"}) for state in ("online", "offline")
}


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
        self._keeper = CoverageKeeper(settings.coverage)
        self._coverage_ok = True
        self.coverage_wanted = asyncio.Event()
        self.registry_changed = asyncio.Event()
        self._unpublished: dict[str, bytes] = {}
        self._trimmer = Trimmer()
        self._keys: list[str] = []  # _sorted_keys()
        self._keys_mark: tuple[int, int, int] | None = None
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
                    freeze_long_lived()
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
                dirty: set[str] | None = self.tracker.take_dirty()
                if not self._coverage_ok:
                    dirty = None  # the schools marked before a failure were never evaluated
                self._coverage_ok = False
                # The thread reads the tracker's live entries (attribute reads only); only the
                # schools that changed are evaluated again (CoverageKeeper).
                self.coverage = await asyncio.to_thread(
                    self._keeper.compute, self.registry, self.tracker.entry_map(), dirty, tests,
                    datetime.now(UTC),
                )  # fmt: skip
                self._coverage_ok = True
                self.coverage_ms = (time.perf_counter() - started) * 1000
                # Sort new device keys here, off the loop, not in a GET /api/devices; hand
                # memory freed by bursts back to the system.
                await asyncio.to_thread(self._after_coverage)
            except Exception:
                log.exception("coverage could not be computed")

    def retention_days(self, school: str) -> int:
        """Days of video the school must keep: its registry entry, else the common 30."""
        entry = self.registry.schools.get(school)
        return entry.retention_days if entry is not None else 30

    def registered(self, key: str) -> DeviceEntry | None:
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
                self._unpublished[f"{root}/{change.key}/availability"] = _SPOKEN[change.state]
        self.publish_pending()

    def publish_pending(self, at_most: int = 2000) -> None:
        """Publish retained states not yet taken by the client (only the latest per device).

        The client holds at most 65,535 QoS 1 messages in flight; a fleet-wide change (100k
        devices coming online) is published over several rounds instead of being refused."""
        for topic in list(self._unpublished)[:at_most]:
            if not self._publish(topic, self._unpublished[topic]):
                break
            del self._unpublished[topic]

    async def watch(self, store: AlarmStore, connected: Callable[[], bool]) -> None:
        """Check silence every interval; commit the troubles it raises, apply the changes."""
        interval = self._settings.availability.check_interval_s
        while True:
            await asyncio.sleep(interval)
            self.publish_pending()
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
        never_seen: bool = False,
        page: tuple[int, int] = (0, 1_000_000),
    ) -> tuple[int, list[DeviceRecord]]:
        """Heard devices (marked registered or not) plus registered ones never heard: the total
        matching the filters and the records of one page (offset, limit), sorted by key.
        Filters run on keys and states; records are built only for the page."""
        heard, devices = self.tracker.entry_map(), self.registry.devices
        keys = self._sorted_keys()
        if school is not None:  # keys sort by school, then kind: the school's are one slice
            prefix = f"{school}/{kind}/" if kind is not None else f"{school}/"
            keys = keys[bisect_left(keys, prefix) : bisect_left(keys, prefix + "\x7f")]
        elif kind is not None:
            infix = f"/{kind}/"  # ids have no "/": only the kind level can match
            keys = [key for key in keys if infix in key]
        if registered is not None:
            keys = [key for key in keys if (key in devices) == registered]
        if state is not None:
            keys = [key for key in keys if _state(heard.get(key)) == state]
        if never_seen:
            keys = [key for key in keys if key in devices and _never_heard(heard.get(key))]
        offset, limit = page
        chosen = keys[offset : offset + limit]
        return len(keys), [self._record(key, heard.get(key)) for key in chosen]

    def _after_coverage(self) -> None:
        self._sorted_keys()
        self._trimmer.maybe_trim()

    def _sorted_keys(self) -> list[str]:
        """Every heard or registered key, sorted; sorted again only when the registry changed
        or a device was first heard (the tracker never forgets one)."""
        mark = (id(self.registry), self.registry.version, len(self.tracker))
        if self._keys_mark != mark:
            self._keys = sorted(self.tracker.entry_map().keys() | self.registry.devices.keys())
            self._keys_mark = mark
        return self._keys

    def _record(self, key: str, entry: Any) -> DeviceRecord:
        registered = key in self.registry.devices
        if entry is not None:
            return self.tracker.record(entry).model_copy(update={"registered": registered})
        school, kind, device = key.split("/", 2)
        return DeviceRecord(school=school, kind=Kind(kind), device=device, registered=True)


def _state(entry: Any) -> str:
    return str(entry.state) if entry is not None else "unknown"


def _never_heard(entry: Any) -> bool:
    return entry is None or entry.last_seen is None


def test_button(registry: Registry, school: str) -> DeviceEntry | None:
    """The button a school's end-to-end test starts from: the gatehouse one, else any."""
    buttons = [d for d in registry.by_school.get(school, []) if d.kind == Kind.BUTTON]
    gatehouse = [d for d in buttons if d.location == Location.GATEHOUSE]
    chosen = gatehouse or buttons
    return chosen[0] if chosen else None
