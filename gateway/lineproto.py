"""Decoded device messages -> InfluxDB line protocol (one measurement per message type)."""

from __future__ import annotations

import math
from datetime import datetime

from gateway.models import Availability, DeviceMessage

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_SKIPPED_FIELDS = {"v", "ts"}


def measurement(msg: DeviceMessage) -> str:
    """`button_event`, `camera_status`, ... or `availability`."""
    if isinstance(msg.body, Availability):
        return "availability"
    return f"{msg.topic.kind}_{msg.topic.channel}"


def to_line(msg: DeviceMessage) -> bytes:
    """One point: tags school/kind/device, the message's fields, time = device ts (ns)."""
    topic = msg.topic
    tags = f"school={_tag(topic.school)},kind={topic.kind.value},device={_tag(topic.device)}"
    body = msg.body
    if isinstance(body, Availability):
        fields = f'state="{body.state}",online={"true" if body.state == "online" else "false"}'
        when = msg.received_at
    else:
        fields = _fields(body.model_dump(exclude=_SKIPPED_FIELDS, exclude_none=True))
        when = body.ts
    return f"{measurement(msg)},{tags} {fields} {_ns(when)}".encode()


def _tag(value: str) -> str:
    return value.translate(_TAG_ESCAPES)


def _fields(values: dict[str, object]) -> str:
    return ",".join(f"{_tag(key)}={_field_value(value)}" for key, value in values.items())


def _field_value(value: object) -> str:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _ns(when: datetime) -> int:
    # Integer arithmetic: a float timestamp loses the microseconds at this magnitude.
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


def change_line(
    school: str, kind: str, device: str, state: str, reason: str, at: datetime
) -> bytes:
    """An availability point for a state the gateway judged (source=gateway)."""
    tags = f"school={_tag(school)},kind={kind},device={_tag(device)}"
    online = "true" if state == "online" else "false"
    text = reason.replace("\\", "\\\\").replace('"', '\\"')
    fields = f'state="{state}",online={online},source="gateway",reason="{text}"'
    return f"availability,{tags} {fields} {_ns(at)}".encode()


def quality_line(
    school: str, device: str, scores: dict[str, float], active: list[str], at: datetime
) -> bytes:
    """A camera_quality point: one float field per check score, plus the active troubles."""
    tags = f"school={_tag(school)},kind=camera,device={_tag(device)}"
    # NaN or infinity would make InfluxDB refuse the whole batch.
    fields = ",".join(
        f"{_tag(name)}={float(value)!r}"
        for name, value in sorted(scores.items())
        if math.isfinite(value)
    )
    troubles = ",".join(active)
    return (
        f"camera_quality,{tags} {fields}{',' if fields else ''}"
        f'troubles="{troubles}",active={len(active)}i {_ns(at)}'
    ).encode()
