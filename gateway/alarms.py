"""Which device events raise alarms, and where each alarm must be forwarded."""

from __future__ import annotations

import os
import time

from gateway.config import LinkageSettings
from gateway.models import ButtonEvent, DeviceMessage, GateEvent
from gateway.ports import NewAlarm

# Life-safety alarms go out before security-room ones when both wait for an endpoint.
PRIORITY = {"fire": 30, "police": 20, "medical": 20, "intrusion": 10}


def alarm_category(msg: DeviceMessage) -> str | None:
    """The alarm category an event raises, or None if it is only telemetry."""
    body = msg.body
    if isinstance(body, ButtonEvent) and body.event == "press":
        return body.category
    if isinstance(body, GateEvent) and body.event == "forced":
        return "intrusion"
    return None


def new_alarm(msg: DeviceMessage, category: str, linkage: LinkageSettings) -> NewAlarm:
    """A NewAlarm for an alarm-raising message, routed by category."""
    body = msg.body
    assert isinstance(body, ButtonEvent | GateEvent)
    topic = msg.topic
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
        endpoints=tuple(linkage.routes.get(category, ())),
        priority=PRIORITY.get(category, 0),
    )


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_alarm_id() -> str:
    """A ULID: 48-bit milliseconds + 80 random bits, sortable by creation time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
