"""Which device events raise alarms, where each goes, and how a person handles it (GB 50394).

An alarm latches: it stays open until a person acknowledges it and then resets it. Nothing
clears it automatically (a device `restore` is only recorded) and no operation disarms it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from gateway.availability import Change
from gateway.config import LinkageSettings
from gateway.models import (
    Alarm,
    AlarmState,
    ButtonEvent,
    CameraStatus,
    DeviceMessage,
    GateEvent,
    Kind,
)
from gateway.ports import InvalidTransitionError, NewAlarm, Restore
from gateway.registry import DeviceEntry, Location

# Life-safety alarms go out before security-room ones when both wait for an endpoint.
PRIORITY = {"fire": 30, "police": 20, "medical": 20, "intrusion": 10, "trouble": 5}
TRANSITIONS = {
    ("acknowledge", AlarmState.NEW): AlarmState.ACKNOWLEDGED,
    ("reset", AlarmState.ACKNOWLEDGED): AlarmState.RESET,
}


def alarm_category(msg: DeviceMessage) -> str | None:
    """The alarm category an event raises, or None if it is only telemetry."""
    body = msg.body
    if isinstance(body, ButtonEvent) and body.event in ("press", "test"):
        return body.category
    if isinstance(body, GateEvent) and body.event == "forced":
        return "intrusion"
    return None


def is_restore(msg: DeviceMessage) -> bool:
    """A device reporting it is back to normal (recorded on its open alarms)."""
    return isinstance(msg.body, ButtonEvent | GateEvent) and msg.body.event == "restore"


def new_alarm(
    msg: DeviceMessage, category: str, linkage: LinkageSettings, test_mode: bool = False
) -> NewAlarm:
    """A NewAlarm for an alarm-raising message, routed by category.

    A `test` event, or a press from a device in test mode, is a test alarm: recorded and
    shown, and sent only to the test channels of the category's endpoints, never as a real
    police or fire alarm.
    """
    body = msg.body
    assert isinstance(body, ButtonEvent | GateEvent)
    topic = msg.topic
    test = test_mode or body.event == "test"
    return NewAlarm(
        id=new_alarm_id(),
        school=topic.school,
        kind=topic.kind,
        device=topic.device,
        event=body.event,
        category=category,
        seq=body.seq,
        device_ts=body.ts,
        received_at=msg.received_at,
        endpoints=_endpoints(linkage, category, test),
        priority=PRIORITY.get(category, 0),
        test=test,
    )


def _endpoints(linkage: LinkageSettings, category: str, test: bool) -> tuple[str, ...]:
    routed = linkage.routes.get(category, ())
    if not test:
        return tuple(routed)
    channels = linkage.test_channels()
    return tuple(name for name in routed if name in channels)


def school_test_alarm(device: DeviceEntry, linkage: LinkageSettings) -> NewAlarm:
    """A scheduled end-to-end test from a school's alarm button (`campusgw test-alarms`)."""
    now = datetime.now(UTC)
    return NewAlarm(
        id=new_alarm_id(), school=device.school, kind=device.kind, device=device.id,
        event="test", category="police", seq=time.time_ns() // 1000, device_ts=now,
        received_at=now, endpoints=_endpoints(linkage, "police", True),
        priority=PRIORITY["trouble"], test=True,
    )  # fmt: skip


def trouble_alarm(late: Alarm, endpoint: str, alarm_id: str) -> NewAlarm:
    """The security-room alarm raised when `endpoint` has not confirmed `late` in time."""
    now = datetime.now(UTC)
    return NewAlarm(
        id=alarm_id, school=late.school, kind=late.kind, device=late.device,
        event="linkage_trouble", category="trouble", seq=late.seq, device_ts=now,
        received_at=now, endpoints=(), priority=PRIORITY["trouble"], related_alarm_id=late.id,
    )  # fmt: skip


class OfflineTroubles:
    """An offline alarm button or gatehouse camera is a trouble for the security room (never
    for the police), raised at most once per cooldown so a flapping device gives one trouble."""

    def __init__(self, cooldown_s: float, registered: Callable[[str], DeviceEntry | None]) -> None:
        self._cooldown = cooldown_s
        self._registered = registered
        self._last: dict[str, datetime] = {}

    def remember(self, raised: Mapping[str, datetime]) -> None:
        """Start-up: when each device's last offline trouble was raised (from the alarm store),
        so that a restart does not open the cooldown again."""
        for key, at in raised.items():
            if key not in self._last or self._last[key] < at:
                self._last[key] = at

    def watched(self, change: Change) -> bool:
        """Buttons always; cameras when the registry puts them at the gatehouse."""
        if change.kind == Kind.BUTTON:
            return True
        device = self._registered(change.key)
        return (
            change.kind == Kind.CAMERA
            and device is not None
            and (device.location == Location.GATEHOUSE)
        )

    def for_change(self, change: Change) -> NewAlarm | None:
        """The trouble alarm this change raises, if any."""
        if change.state != "offline" or not self.watched(change):
            return None
        last = self._last.get(change.key)
        if last is not None and (change.at - last).total_seconds() < self._cooldown:
            return None
        self._last[change.key] = change.at
        return NewAlarm(
            id=new_alarm_id(), school=change.school, kind=change.kind, device=change.device,
            event="offline", category="trouble", seq=0, device_ts=change.at,
            received_at=change.at, endpoints=(), priority=PRIORITY["trouble"],
        )  # fmt: skip


class NvrTroubles:
    """A camera whose recorder is not recording, or keeps fewer days of video than its school
    must (30 by default, per school in the registry), is a trouble; recorded as restored when
    its status is healthy again."""

    def __init__(self, retention_for: Callable[[str], int]) -> None:
        self._retention_for = retention_for
        self._active: dict[str, set[str]] = {}

    def check(self, msg: DeviceMessage) -> tuple[list[NewAlarm], list[Restore]]:
        """Troubles raised and cleared by one camera status message."""
        body, topic = msg.body, msg.topic
        if not isinstance(body, CameraStatus):
            return [], []
        required = self._retention_for(topic.school)
        now = {"nvr_not_recording"} if body.recording is False else set()
        if body.retention_days is not None and body.retention_days < required:
            now.add("nvr_retention_short")
        before = self._active.get(topic.device_key, set())
        self._active[topic.device_key] = now
        raised = [
            NewAlarm(
                id=new_alarm_id(), school=topic.school, kind=topic.kind, device=topic.device,
                event=event, category="trouble", seq=body.seq, device_ts=body.ts,
                received_at=msg.received_at, endpoints=(), priority=PRIORITY["trouble"],
            )
            for event in sorted(now - before)
        ]  # fmt: skip
        cleared = [Restore(topic.school, topic.kind, topic.device, msg.received_at, event)
                   for event in sorted(before - now)]  # fmt: skip
        return raised, cleared


def next_state(state: AlarmState, action: str) -> AlarmState:
    """The state after a person's action, or InvalidTransitionError saying why not."""
    if action not in ("acknowledge", "reset"):
        raise InvalidTransitionError(f"unknown action {action!r}: acknowledge or reset")
    after = TRANSITIONS.get((action, state))
    if after is None:
        hint = "acknowledge it first" if action == "reset" and state == AlarmState.NEW else ""
        raise InvalidTransitionError(
            f"cannot {action} an alarm that is {state.value}" + (f"; {hint}" if hint else "")
        )
    return after


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_alarm_id() -> str:
    """A ULID: 48-bit milliseconds + 80 random bits, sortable by creation time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
