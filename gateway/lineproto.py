"""Decoded device messages -> InfluxDB line protocol (one measurement per message type)."""

from __future__ import annotations

import math
from datetime import datetime

from pydantic import BaseModel

from gateway.models import EVENT_MODELS, STATUS_MODELS, Availability, DeviceMessage, Topic

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_SKIPPED_FIELDS = {"v", "ts"}


def measurement(msg: DeviceMessage) -> str:
    """`button_event`, `camera_status`, ... or `availability`."""
    if isinstance(msg.body, Availability):
        return "availability"
    return f"{msg.topic.kind}_{msg.topic.channel}"


def tags(topic: Topic) -> str:
    """`school=s1,kind=button,device=b1`, escaped: the same for every point of a device."""
    return f"school={_tag(topic.school)},kind={topic.kind.value},device={_tag(topic.device)}"


def to_line(msg: DeviceMessage, device_tags: str | None = None) -> bytes:
    """One point: tags school/kind/device, the message's fields, time = device ts (ns).

    `device_tags` is `tags(msg.topic)` for a caller that keeps it per topic (ingest)."""
    topic, body = msg.topic, msg.body
    head = device_tags if device_tags is not None else tags(topic)
    if isinstance(body, Availability):
        fields = f'state="{body.state}",online={"true" if body.state == "online" else "false"}'
        return f"availability,{head} {fields} {_ns(msg.received_at)}".encode()
    names = _FIELD_NAMES.get(type(body))
    if names is None:  # a model this module does not know: the general way
        fields = _fields(body.model_dump(exclude=_SKIPPED_FIELDS, exclude_none=True))
    else:
        fields = _known_fields(body, names)
    return f"{topic.kind.value}_{topic.channel.value},{head} {fields} {_ns(body.ts)}".encode()


def _tag(value: str) -> str:
    return value.translate(_TAG_ESCAPES)


def _fields(values: dict[str, object]) -> str:
    return ",".join(f"{_tag(key)}={_field_value(value)}" for key, value in values.items())


def _known_fields(body: BaseModel, names: tuple[tuple[str, str], ...]) -> str:
    # The model's own values, in field order, without model_dump's copy (a third of a status
    # message's cost); the output is model_dump's, as tests/unit/test_lineproto.py checks.
    values, parts = body.__dict__, []
    for name, key in names:
        value = values[name]
        if value is None:
            continue
        kind = type(value)
        if kind is float:
            parts.append(f"{key}={value!r}")
        elif kind is int:
            parts.append(f"{key}={value}i")
        else:
            parts.append(f"{key}={_field_value(value)}")
    return ",".join(parts)


# The canonical message models' fields that become InfluxDB fields, with their escaped keys.
_FIELD_NAMES: dict[type[BaseModel], tuple[tuple[str, str], ...]] = {
    model: tuple((name, _tag(name)) for name in model.model_fields if name not in _SKIPPED_FIELDS)
    for model in (*EVENT_MODELS.values(), *STATUS_MODELS.values())
}


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
