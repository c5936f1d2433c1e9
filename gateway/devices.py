"""What the gateway last heard from each device (in memory; the registry issue persists it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gateway.models import Availability, DeviceMessage, DeviceRecord, Kind, Status


@dataclass(slots=True)
class _Seen:
    school: str
    kind: Kind
    device: str
    last_seen: datetime
    messages: int = 0
    availability: str | None = None
    last_status: dict[str, object] | None = field(default=None)


class DeviceTracker:
    """Last seen, last status and availability per device key."""

    def __init__(self) -> None:
        self._devices: dict[str, _Seen] = {}

    def seen(self, msg: DeviceMessage) -> None:
        """Note a decoded message."""
        key = msg.topic.device_key
        entry = self._devices.get(key)
        if entry is None:
            topic = msg.topic
            entry = _Seen(topic.school, topic.kind, topic.device, msg.received_at)
            self._devices[key] = entry
        entry.last_seen = msg.received_at
        entry.messages += 1
        body = msg.body
        if isinstance(body, Availability):
            entry.availability = body.state
        elif isinstance(body, Status):
            entry.last_status = body.model_dump(mode="json")

    def in_test_mode(self, key: str) -> bool:
        """True when the device's last status said it is in test mode."""
        entry = self._devices.get(key)
        return bool(entry and entry.last_status and entry.last_status.get("test_mode"))

    def __len__(self) -> int:
        return len(self._devices)

    def records(self, school: str | None = None, kind: str | None = None) -> list[DeviceRecord]:
        """Devices sorted by key, optionally filtered."""
        return [
            DeviceRecord.model_validate(entry, from_attributes=True)
            for key, entry in sorted(self._devices.items())
            if (school is None or entry.school == school) and (kind is None or entry.kind == kind)
        ]
