"""Properties: no bytes make a driver raise anything but DecodeError; valid models round-trip."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import drivers
from drivers import canonical
from drivers.base import DecodeError, Driver
from gateway.models import (
    EVENT_MODELS,
    STATUS_MODELS,
    Availability,
    CameraEvent,
    Channel,
    GateEvent,
    GateStatus,
    Kind,
)
from gateway.schemas import generate

M = TypeVar("M", bound=BaseModel)
DRIVERS = [drivers.REGISTRY[name] for name in sorted(drivers.REGISTRY)]
CASES = [pytest.param(d, c, id=f"{d.name}-{c}") for d in DRIVERS for c in Channel]
# (driver, channel) pairs that take canonical JSON, so a model's own JSON must come back equal.
CANONICAL = [
    # Snapshots are JPEG bytes for video quality diagnosis, not a driver's JSON.
    *(
        (d.name, c)
        for d in DRIVERS
        if d is drivers.default_for(d.kind)
        for c in Channel
        if c != Channel.SNAPSHOT
    ),
    ("gate_kv", Channel.AVAILABILITY),
    ("hik_camera", Channel.STATUS),
    ("hik_camera", Channel.AVAILABILITY),
]


def _literals(node: Any) -> set[Any]:
    """Every enum and const value in a JSON Schema: values a fuzzer would hardly guess."""
    found: set[Any] = set()
    if isinstance(node, dict):
        found.update(node.get("enum", []))
        if "const" in node:
            found.add(node["const"])
        for child in node.values():
            found |= _literals(child)
    elif isinstance(node, list):
        for child in node:
            found |= _literals(child)
    return found


SCHEMAS = generate()
HIK_KEYS = ["eventType", "eventState", "dateTime", "activePostCount", "channelID"]
KEYS = sorted({key for s in SCHEMAS.values() for key in s["properties"]} | set(HIK_KEYS))
WORDS = sorted(
    {str(v) for v in _literals(SCHEMAS)}
    | {"videoloss", "shelteralarm", "diskerror", "active", "inactive", "OPEN", "FORCED", "HELD"}
    | {"2026-11-23T08:00:00Z", "2026-11-23T08:00:00", "2026-11-23T16:00:00+08:00", "online"}
)
KV_KEYS = ["seq", "ts", "evt", "door", "lock", "bat", "rssi"]

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(WORDS) | st.integers(-200, 200)
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
json_dicts = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), json_values, max_size=9)
json_payloads = st.builds(lambda d: json.dumps(d).encode(), json_dicts) | st.builds(
    lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"), json_values
)
kv_tokens = st.builds(
    "{}={}".format,
    st.sampled_from(KV_KEYS) | st.text(max_size=5),
    st.sampled_from(WORDS) | st.integers(-200, 200).map(str) | st.text(max_size=8),
) | st.text(max_size=6)
kv_payloads = st.builds(
    lambda tokens, sep: sep.join(tokens).encode("utf-8", "surrogatepass"),
    st.lists(kv_tokens, max_size=8),
    st.sampled_from([" ", ";", "; ", "\t", " ;\n"]),
)


def _decodes_or_refuses(driver: Driver, channel: Channel, payload: bytes) -> None:
    try:
        body = driver.decode(channel, payload)
    except DecodeError as exc:
        assert str(exc) and str(exc).isprintable()
        return
    assert type(body) is _model_for(driver, channel)


@pytest.mark.parametrize(("driver", "channel"), CASES)
@given(payload=st.binary(max_size=200))
def test_any_bytes(driver: Driver, channel: Channel, payload: bytes) -> None:
    _decodes_or_refuses(driver, channel, payload)


@pytest.mark.parametrize(("driver", "channel"), CASES)
@given(payload=json_payloads)
def test_any_json(driver: Driver, channel: Channel, payload: bytes) -> None:
    _decodes_or_refuses(driver, channel, payload)


@pytest.mark.parametrize(("driver", "channel"), CASES)
@given(payload=kv_payloads)
def test_any_key_value_text(driver: Driver, channel: Channel, payload: bytes) -> None:
    _decodes_or_refuses(driver, channel, payload)


# --- valid models -----------------------------------------------------------------------------

zones = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
aware = st.datetimes(datetime(1970, 1, 1), datetime(2200, 1, 1), timezones=zones)


def _from_schema(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for one property of the generated schemas (the subset the models use)."""
    if "anyOf" in prop:
        return st.one_of([_from_schema(branch) for branch in prop["anyOf"]])
    if "const" in prop:
        return st.just(prop["const"])
    if "enum" in prop:
        return st.sampled_from(prop["enum"])
    lo, hi = prop.get("minimum"), prop.get("maximum")
    simple = {
        "null": st.none(),
        "boolean": st.booleans(),
        "integer": st.integers(lo, hi),
        "number": st.floats(lo, hi, allow_nan=False, allow_infinity=False),
    }
    if prop.get("type") in simple:
        return simple[prop["type"]]
    if prop.get("format") == "date-time":
        return aware
    raise NotImplementedError(f"teach _from_schema about {prop}")


def models(model: type[M]) -> st.SearchStrategy[M]:
    """Valid instances of a canonical model, drawn from its JSON Schema."""
    schema = model.model_json_schema()
    props = {name: _from_schema(p) for name, p in schema["properties"].items()}
    required = set(schema.get("required", []))
    return st.fixed_dictionaries(
        {k: v for k, v in props.items() if k in required},
        optional={k: v for k, v in props.items() if k not in required},
    ).map(model.model_validate)


def _model_for(driver: Driver, channel: Channel) -> type[BaseModel]:
    if channel == Channel.EVENT:
        return EVENT_MODELS[driver.kind]
    return STATUS_MODELS[driver.kind] if channel == Channel.STATUS else Availability


@pytest.mark.parametrize(("name", "channel"), CANONICAL)
@given(data=st.data(), exclude_defaults=st.booleans())
def test_canonical_json_round_trips(
    name: str, channel: Channel, data: st.DataObject, exclude_defaults: bool
) -> None:
    driver = drivers.get(name)
    body = data.draw(models(_model_for(driver, channel)))
    payload = body.model_dump_json(exclude_defaults=exclude_defaults).encode()
    assert driver.decode(channel, payload) == body


@given(body=models(Availability))
def test_plain_availability_round_trips(body: Availability) -> None:
    plain = Availability(state=body.state)  # plain text cannot say who published it
    for kind in Kind:
        assert drivers.default_for(kind).decode(Channel.AVAILABILITY, body.state.encode()) == plain
        assert (
            drivers.default_for(kind).decode(
                Channel.AVAILABILITY, body.model_dump_json(exclude_none=True).encode()
            )
            == body
        )


def _kv_header(body: GateEvent | GateStatus) -> str:
    return f"seq={body.seq} ts={body.ts.isoformat()}"


@given(body=models(GateEvent))
def test_gate_kv_event_round_trips(body: GateEvent) -> None:
    code = {
        "open": "OPEN",
        "close": "CLOSE",
        "forced": "FORCED",
        "held_open": "HELD",
        "restore": "RESTORE",
    }
    text = f"{_kv_header(body)} evt={code.get(body.event, 'TAMPER')}"
    assert drivers.get("gate_kv").decode(Channel.EVENT, text.encode()) == body


@given(body=models(GateStatus).filter(lambda s: s.power is None))
def test_gate_kv_status_round_trips(body: GateStatus) -> None:
    parts = [_kv_header(body)]
    if body.door is not None:
        parts.append(f"door={int(body.door == 'open')}")
    if body.locked is not None:
        parts.append(f"lock={int(body.locked)}")
    if body.battery is not None:
        parts.append(f"bat={body.battery:.9f}")  # the format has no exponent, so rounded
    if body.rssi is not None:
        parts.append(f"rssi={body.rssi}")
    decoded = drivers.get("gate_kv").decode(Channel.STATUS, ";".join(parts).encode())
    assert isinstance(decoded, GateStatus)
    assert decoded.battery == pytest.approx(body.battery, abs=1e-9)
    assert decoded.model_copy(update={"battery": body.battery}) == body


@given(body=models(CameraEvent))
def test_hik_event_round_trips(body: CameraEvent) -> None:
    event_type = {"video_loss": "videoloss", "tamper": "shelteralarm"}.get(body.event, "diskfull")
    note = {
        "dateTime": body.ts.isoformat(),
        "activePostCount": body.seq,
        "eventType": event_type,
        "eventState": "active",
    }
    assert drivers.get("hik_camera").decode(Channel.EVENT, json.dumps(note).encode()) == body


# --- parse_json decides as model_validate_json did ---------------------------------------------


def _as_before(model: type[M], payload: bytes) -> M:
    """parse_json before it called the validator itself and read the model's __dict__."""
    try:
        body = model.model_validate_json(payload, strict=True)
    except ValidationError as exc:
        raise DecodeError(canonical.reason(exc, payload)) from exc
    for name, value in body:
        if isinstance(value, float) and not math.isfinite(value):
            raise DecodeError(f"schema: {name}: Input should be a finite number")
    return body


MUTATIONS = [
    lambda d, v: {**d, "extra": v},  # extra fields are forbidden
    lambda d, v: {k: x for k, x in d.items() if k != "seq"},
    lambda d, v: {**d, "seq": v},
    lambda d, v: {**d, "ts": "2026-11-23T08:00:00"},  # no zone
    lambda d, v: {**d, "ts": v},
    lambda d, v: {**d, next(iter(d)): v},
    lambda d, v: {**d, "battery": 1e308 * 10},  # inf: json.dumps writes Infinity
]


@st.composite
def near_valid(draw: st.DrawFn, model: type[BaseModel]) -> bytes:
    """A valid message's JSON, as it is or with one field missing, extra or changed."""
    fields = draw(models(model)).model_dump(mode="json")
    mutate = draw(st.sampled_from([None, *MUTATIONS]))
    if mutate is not None:
        fields = mutate(fields, draw(scalars))
    text = json.dumps(fields)
    return draw(st.sampled_from([text, text.replace("Infinity", "1e400")])).encode()


@pytest.mark.parametrize("model", [*EVENT_MODELS.values(), *STATUS_MODELS.values(), Availability])
@given(data=st.data())
def test_parse_json_accepts_and_refuses_what_model_validate_json_did(
    model: type[BaseModel], data: st.DataObject
) -> None:
    payload = data.draw(near_valid(model) | json_payloads | st.binary(max_size=60))
    try:
        expected: BaseModel | str = _as_before(model, payload)
    except DecodeError as exc:
        expected = str(exc)
    try:
        got: BaseModel | str = canonical.parse_json(model, payload)
    except DecodeError as exc:
        got = str(exc)
    assert got == expected
