"""Is each device online, offline or unknown? From its retained availability (last will), any
message, and per-class silence timeouts (zigbee2mqtt: mains 10 min, battery 25 h; GB/T 28181:
cameras after 3 missed 60 s heartbeats).

Changes come out of `seen` and `check` as `Change`s; the runtime publishes them (retained, on
change only, for devices without a will of their own), writes them to InfluxDB and raises
troubles. Silence never counts while the broker connection is down, nor for a grace period after
start-up or a reconnect, so a gateway or broker restart does not mark the fleet offline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from gateway.config import AvailabilitySettings
from gateway.models import Availability, DeviceMessage, DeviceRecord, Kind, Status
from gateway.registry import DeviceEntry

State = Literal["online", "offline", "unknown"]


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What coverage and the API need to know about one device right now."""

    key: str  # school/kind/device
    state: State
    since: datetime | None  # when it entered this state, if known
    last_seen: datetime | None
    last_status: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Change:
    """A device changed state. `judged`: the gateway concluded it (from messages or silence),
    so it is written to InfluxDB as such; `publish`: the gateway also speaks for the device on
    its availability topic, because the device has no will of its own."""

    school: str
    kind: Kind
    device: str
    state: State
    at: datetime
    reason: str
    judged: bool
    publish: bool

    @property
    def key(self) -> str:
        """`school/kind/device`."""
        return f"{self.school}/{self.kind}/{self.device}"


@dataclass(slots=True)
class _Entry:
    school: str
    kind: Kind
    device: str
    last_seen: datetime | None = None
    messages: int = 0
    state: State = "unknown"
    since: datetime | None = None
    own_will: bool = False
    last_status: dict[str, Any] | None = None


def states_of(entries: list[tuple[str, _Entry]]) -> dict[str, DeviceState]:
    """Frozen states of a copied entry list; safe in a worker thread (it only reads)."""
    return {
        key: DeviceState(key, e.state, e.since, e.last_seen, e.last_status) for key, e in entries
    }


def _rules_read(status: dict[str, Any] | None) -> tuple[Any, ...]:
    """The status fields the coverage rules read (gateway/coverage_rules.py): a change of any
    other field (temperature, uptime...) leaves the school's rates as they were."""
    if not status:
        return ()
    return (status.get("recording"), status.get("retention_days"), status.get("door"))


class AvailabilityTracker:
    """Per-device state from messages and silence; also last seen and last status."""

    def __init__(
        self,
        settings: AvailabilitySettings,
        registered: Callable[[str], DeviceEntry | None] = lambda key: None,
    ) -> None:
        self._settings = settings
        self._registered = registered
        self._devices: dict[str, _Entry] = {}
        self._quiet_until: datetime | None = None
        self._dirty: set[str] = set()  # schools whose coverage inputs changed

    def resume(self, now: datetime) -> None:
        """Start-up or broker reconnect: judge no silence until the grace period is over."""
        self._quiet_until = now + timedelta(seconds=self._settings.startup_grace_s)

    def seen(self, msg: DeviceMessage) -> Change | None:
        """Note a decoded message; return the state change it causes, if any."""
        entry = self._entry(msg.topic.school, msg.topic.kind, msg.topic.device)
        body = msg.body
        if isinstance(body, Availability):
            if body.by == "gateway":
                # Our own retained word from before a restart: the state, not a sign of life.
                return self._move(entry, body.state, msg.received_at, "as last published")
            entry.own_will = True
            return self._move(entry, body.state, msg.received_at, "device availability")
        entry.last_seen = msg.received_at
        entry.messages += 1
        if isinstance(body, Status):
            # The model's values as they are (ts a datetime), not model_dump(mode="json"): this
            # runs for every status message, and DeviceRecord serialises the dict as before.
            status = dict(body.__dict__)
            if entry.kind != Kind.BUTTON and _rules_read(entry.last_status) != _rules_read(status):
                self._dirty.add(entry.school)
            entry.last_status = status
        return self._move(entry, "online", msg.received_at, "message", judged=True)

    def check(self, now: datetime, connected: bool = True) -> list[Change]:
        """Devices silent for longer than their timeout go offline (never while disconnected)."""
        if not connected or (self._quiet_until is not None and now < self._quiet_until):
            return []
        changes = []
        for entry in self._devices.values():
            if entry.state != "online" or entry.last_seen is None:
                continue
            timeout = self.timeout_s(entry)
            if (now - entry.last_seen).total_seconds() > timeout:
                reason = f"silent for more than {timeout:.0f} s"
                change = self._move(entry, "offline", now, reason, judged=True)
                if change is not None:
                    changes.append(change)
        return changes

    def timeout_s(self, entry: _Entry) -> float:
        """The device's silence timeout by kind and power (registry first, then its status)."""
        s = self._settings
        if entry.kind == Kind.CAMERA:
            return s.camera_timeout_s
        device = self._registered(f"{entry.school}/{entry.kind}/{entry.device}")
        power = device.power if device else (entry.last_status or {}).get("power")
        if power == "battery":
            return s.battery_timeout_s
        return s.gate_timeout_s if entry.kind == Kind.GATE else s.mains_timeout_s

    def _entry(self, school: str, kind: Kind, device: str) -> _Entry:
        key = f"{school}/{kind}/{device}"
        entry = self._devices.get(key)
        if entry is None:
            entry = self._devices[key] = _Entry(school, kind, device)
            self._dirty.add(school)
        return entry

    def _move(
        self, entry: _Entry, state: State, at: datetime, reason: str, judged: bool = False
    ) -> Change | None:
        if entry.state == state:
            return None
        entry.state, entry.since = state, at
        self._dirty.add(entry.school)
        publish = judged and not entry.own_will and self._settings.publish
        return Change(entry.school, entry.kind, entry.device, state, at, reason, judged, publish)

    def take_dirty(self) -> set[str]:
        """Schools whose devices changed state, appeared, or changed a status field coverage
        reads, since the last call (for CoverageKeeper); the set starts empty again."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    # --- reads -----------------------------------------------------------------------------

    def in_test_mode(self, key: str) -> bool:
        """True when the device's last status said it is in test mode."""
        entry = self._devices.get(key)
        return bool(entry and entry.last_status and entry.last_status.get("test_mode"))

    def states(self) -> dict[str, DeviceState]:
        """Every device heard of, by key."""
        return states_of(list(self._devices.items()))

    def entries(self) -> list[tuple[str, _Entry]]:
        """A cheap copy of the entry list (for `states_of` in a worker thread)."""
        return list(self._devices.items())

    def counts(self) -> dict[str, int]:
        """Devices per state, without building records."""
        result = {"online": 0, "offline": 0, "unknown": 0}
        for entry in self._devices.values():
            result[entry.state] += 1
        return result

    def __len__(self) -> int:
        return len(self._devices)

    def __contains__(self, key: object) -> bool:
        return key in self._devices

    def entry_map(self) -> dict[str, _Entry]:
        """The live entries by key (read them, do not keep them)."""
        return self._devices

    @staticmethod
    def record(e: _Entry) -> DeviceRecord:
        """The API record of one entry."""
        return DeviceRecord(
            school=e.school,
            kind=e.kind,
            device=e.device,
            last_seen=e.last_seen,
            availability=e.state,
            since=e.since,
            last_status=e.last_status,
            messages=e.messages,
        )

    def records(self, school: str | None = None, kind: str | None = None) -> list[DeviceRecord]:
        """Devices heard of, sorted by key, optionally filtered."""
        return [
            self.record(e) for key, e in sorted(self._devices.items())
            if (school is None or e.school == school) and (kind is None or e.kind == kind)
        ]  # fmt: skip
