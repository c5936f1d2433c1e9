"""The family drivers (button, gate, camera) decoding canonical JSON, and their reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import get_args

import pytest

import drivers
from drivers.base import DecodeError
from gateway.models import (
    EVENT_MODELS,
    Availability,
    ButtonEvent,
    ButtonStatus,
    CameraStatus,
    Channel,
    GateStatus,
    Kind,
)

TS = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
PRESS = b'{"seq": 1, "ts": "2026-11-23T08:00:00Z", "event": "press"}'


def decode(kind: Kind, channel: Channel, payload: bytes) -> object:
    return drivers.default_for(kind).decode(channel, payload)


def reason(kind: Kind, channel: Channel, payload: bytes) -> str:
    with pytest.raises(DecodeError) as info:
        decode(kind, channel, payload)
    return str(info.value)


def test_minimal_example_is_a_police_press() -> None:
    body = decode(Kind.BUTTON, Channel.EVENT, PRESS)
    assert body == ButtonEvent(seq=1, ts=TS, event="press", category="police")


@pytest.mark.parametrize("category", ["police", "fire", "medical"])
def test_press_category(category: str) -> None:
    payload = b'{"seq": 2, "ts": "2026-11-23T08:00:00Z", "event": "press", "category": "%s"}'
    body = decode(Kind.BUTTON, Channel.EVENT, payload % category.encode())
    assert isinstance(body, ButtonEvent) and body.category == category


@pytest.mark.parametrize(
    ("kind", "event"),
    [
        (kind, event)
        for kind, model in EVENT_MODELS.items()
        for event in get_args(model.model_fields["event"].annotation)
    ],
)
def test_every_event_of_every_family(kind: Kind, event: str) -> None:
    payload = b'{"v": 1, "seq": 7, "ts": "2026-11-23T09:00:00+01:00", "event": "%s"}'
    body = decode(kind, Channel.EVENT, payload % event.encode())
    assert type(body) is EVENT_MODELS[kind]
    assert (body.seq, body.ts, body.event) == (7, TS, event)


@pytest.mark.parametrize(
    ("kind", "payload", "expected"),
    [
        (
            Kind.BUTTON,
            b'{"seq": 3, "ts": "2026-11-23T08:00:00Z", "battery": 87, "rssi": -61,'
            b' "power": "battery", "test_mode": true, "tamper": false}',
            ButtonStatus(seq=3, ts=TS, battery=87, rssi=-61, power="battery", test_mode=True),
        ),
        (
            Kind.GATE,
            b'{"seq": 4, "ts": "2026-11-23T08:00:00Z", "door": "closed", "locked": true,'
            b' "battery": 90.5, "rssi": -70, "power": "mains"}',
            GateStatus(
                seq=4, ts=TS, door="closed", locked=True, battery=90.5, rssi=-70, power="mains"
            ),
        ),
        (
            Kind.CAMERA,
            b'{"seq": 5, "ts": "2026-11-23T08:00:00Z", "fps": 25, "bitrate_kbps": 4096,'
            b' "recording": true, "storage_free_gb": 812.5, "retention_days": 30, "rssi": -50}',
            CameraStatus(
                seq=5,
                ts=TS,
                fps=25,
                bitrate_kbps=4096,
                recording=True,
                storage_free_gb=812.5,
                retention_days=30,
                rssi=-50,
            ),
        ),
    ],
)
def test_full_status(kind: Kind, payload: bytes, expected: object) -> None:
    assert decode(kind, Channel.STATUS, payload) == expected


@pytest.mark.parametrize("kind", list(Kind))
def test_status_needs_only_seq_and_ts(kind: Kind) -> None:
    body = decode(kind, Channel.STATUS, b'{"seq": 0, "ts": "2026-11-23T08:00:00Z"}')
    assert body.seq == 0 and body.ts == TS  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("payload", "state"),
    [
        (b"online", "online"),
        (b"offline", "offline"),
        (b" online\n", "online"),
        (b"\toffline\r\n", "offline"),
        (b'{"state": "online"}', "online"),
        (b' {"state":"offline"} \n', "offline"),
    ],
)
@pytest.mark.parametrize("kind", list(Kind))
def test_availability_text_and_json(kind: Kind, payload: bytes, state: str) -> None:
    assert decode(kind, Channel.AVAILABILITY, payload) == Availability(state=state)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            b"ONLINE",
            "schema: availability must be online, offline or {\"state\": ...}, not b'ONLINE'",
        ),
        (b'"online"', "schema: availability must be online"),
        (b"", "schema: availability must be online"),
        (b'{"state": "up"}', "schema: state: Input should be 'online' or 'offline'"),
        (b'{"state": "online", "seq": 1}', "schema: seq: Extra inputs are not permitted"),
        (b'{"state": ', "not JSON: "),
    ],
)
def test_availability_reasons(payload: bytes, expected: str) -> None:
    assert reason(Kind.GATE, Channel.AVAILABILITY, payload).startswith(expected)


EVENT = b'{"seq": 1, "ts": "2026-11-23T08:00:00Z", "event": "press"%s}'


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            b'{"seq": 1, "ts": "2026-11-23T08:00:00Z", "event": "pressed"}',
            "schema: event: Input should be 'press', 'test', 'tamper', 'low_battery' or 'restore'",
        ),
        (b"press", "not JSON: expected value at line 1 column 1"),
        (b'{"seq": 1,', "not JSON: EOF while parsing"),
        (b"", "not JSON: empty payload"),
        (b"  \n", "not JSON: empty payload"),
        (b'{"seq": 1, "ts": "\xff"}', "not UTF-8: invalid byte at offset 18"),
        (b"\xfe\xff{}", "not UTF-8: invalid byte at offset 0"),
        (
            b'{"seq": 1, "ts": "2026-11-23T08:00:00", "event": "press"}',
            "schema: ts: Input should have timezone info",
        ),
        (EVENT % b', "colour": "red"', "schema: colour: Extra inputs are not permitted"),
        (EVENT % b', "v": 2', "schema: v: Input should be 1"),
        (EVENT % b', "category": "ambulance"', "schema: category: Input should be 'police'"),
        (
            b"{}",
            "schema: seq: Field required; ts: Field required; event: Field required",
        ),
        (b"[1, 2]", "schema: payload must be a JSON object, not array"),
        (b'"press"', "schema: payload must be a JSON object, not string"),
        (b"null", "schema: payload must be a JSON object, not null"),
        (b"1", "schema: payload must be a JSON object, not number"),
        (
            b'{"seq": "1", "ts": "2026-11-23T08:00:00Z", "event": "press"}',
            "schema: seq: Input should be a valid integer",
        ),
        (
            b'{"seq": -1, "ts": 1700000000, "event": "press"}',
            "schema: seq: Input should be greater than or equal to 0; ts: Input should be a valid",
        ),
    ],
)
def test_event_reasons(payload: bytes, expected: str) -> None:
    assert reason(Kind.BUTTON, Channel.EVENT, payload).startswith(expected)


def test_many_errors_are_cut_short() -> None:
    payload = b'{"a": 1, "b": 2, "c": 3, "d": 4, "seq": 1, "ts": "2026-11-23T08:00:00Z"}'
    text = reason(Kind.BUTTON, Channel.EVENT, payload)
    assert text.endswith("and 2 more") and text.count(";") == 3


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"Infinity", b"NaN"])
def test_non_finite_numbers_are_schema_errors(number: bytes) -> None:
    payload = b'{"seq": 1, "ts": "2026-11-23T08:00:00Z", "bitrate_kbps": %s}' % number
    assert reason(Kind.CAMERA, Channel.STATUS, payload).startswith("schema: bitrate_kbps: ")


def test_status_range_names_the_field() -> None:
    payload = b'{"seq": 1, "ts": "2026-11-23T08:00:00Z", "battery": 101}'
    text = reason(Kind.BUTTON, Channel.STATUS, payload)
    assert text == "schema: battery: Input should be less than or equal to 100"


def test_a_family_refuses_another_familys_event() -> None:
    gate = b'{"seq": 1, "ts": "2026-11-23T08:00:00Z", "event": "forced"}'
    assert reason(Kind.BUTTON, Channel.EVENT, gate).startswith("schema: event: ")


def test_unknown_channel_is_a_decode_error() -> None:
    assert reason(Kind.BUTTON, "snapshot", b"\xff\xd8") == "unsupported channel 'snapshot'"  # type: ignore[arg-type]


def test_reasons_do_not_echo_long_or_binary_input() -> None:
    text = reason(Kind.GATE, Channel.AVAILABILITY, b"\x00" * 1000)
    assert len(text) < 250 and text.isprintable()
