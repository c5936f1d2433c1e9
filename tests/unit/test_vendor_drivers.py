"""The vendor variants: gate_kv (key=value text) and hik_camera (ISAPI-style alarm JSON)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

import drivers
from drivers.base import DecodeError
from gateway.models import Availability, CameraEvent, CameraStatus, Channel, GateEvent, GateStatus

TS = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
GATE_KV = drivers.get("gate_kv")
HIK = drivers.get("hik_camera")


def kv_reason(channel: Channel, payload: bytes) -> str:
    with pytest.raises(DecodeError) as info:
        GATE_KV.decode(channel, payload)
    return str(info.value)


# --- gate_kv ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "event"),
    [("OPEN", "open"), ("CLOSE", "close"), ("FORCED", "forced"), ("HELD", "held_open"),
     ("TAMPER", "tamper"), ("RESTORE", "restore")],
)  # fmt: skip
def test_kv_event_codes(code: str, event: str) -> None:
    body = GATE_KV.decode(Channel.EVENT, f"seq=12 ts=2026-11-23T08:00:00Z evt={code}".encode())
    assert body == GateEvent(seq=12, ts=TS, event=event)


@pytest.mark.parametrize(
    "payload",
    [
        b"seq=12 ts=2026-11-23T08:00:00Z evt=FORCED",
        b"seq=12;ts=2026-11-23T08:00:00Z;evt=FORCED",
        b"seq=12; ts=2026-11-23T08:00:00Z; evt=FORCED;\r\n",
        b";  evt=FORCED\tts=2026-11-23T09:00:00+01:00 seq=12",
    ],
)
def test_kv_separators_and_order(payload: bytes) -> None:
    assert GATE_KV.decode(Channel.EVENT, payload) == GateEvent(seq=12, ts=TS, event="forced")


def test_kv_status() -> None:
    body = GATE_KV.decode(
        Channel.STATUS, b"seq=13 ts=2026-11-23T08:00:00Z door=1 lock=0 bat=87 rssi=-61"
    )
    assert body == GateStatus(seq=13, ts=TS, door="open", locked=False, battery=87, rssi=-61)


def test_kv_status_partial() -> None:
    body = GATE_KV.decode(Channel.STATUS, b"seq=14;ts=2026-11-23T08:00:00Z;door=0;lock=1;bat=55.5")
    assert body == GateStatus(seq=14, ts=TS, door="closed", locked=True, battery=55.5)


OK = "seq=1 ts=2026-11-23T08:00:00Z"
E, S = Channel.EVENT, Channel.STATUS


@pytest.mark.parametrize(
    ("channel", "payload", "expected"),
    [
        (S, f"{OK} temp=20", "schema: unknown key 'temp' (known: seq, ts, door, lock, bat, rssi)"),
        (S, f"{OK} evt=OPEN", "schema: unknown key 'evt'"),
        (E, "ts=2026-11-23T08:00:00Z evt=OPEN", "schema: missing seq"),
        (E, "seq=1 evt=OPEN", "schema: missing ts"),
        (E, OK, "schema: missing evt"),
        (E, "seq=x ts=2026-11-23T08:00:00Z evt=OPEN", "schema: seq: not an integer: 'x'"),
        (E, "seq=1.5 ts=2026-11-23T08:00:00Z evt=OPEN", "schema: seq: not an integer"),
        (E, "seq=1_000 ts=2026-11-23T08:00:00Z evt=OPEN", "schema: seq: not an integer"),
        (E, "seq= ts=2026-11-23T08:00:00Z evt=OPEN", "schema: seq: not an integer: ''"),
        (E, "seq=-1 ts=2026-11-23T08:00:00Z evt=OPEN", "schema: seq: Input should be greater"),
        (S, f"{OK} bat=full", "schema: bat: not a number: 'full'"),
        (S, f"{OK} bat=101", "schema: bat: Input should be less than or equal to 100"),
        (S, f"{OK} rssi=-61.5", "schema: rssi: not an integer"),
        (S, f"{OK} door=2", "schema: door: expected 0 or 1, not '2'"),
        (S, f"{OK} lock=yes", "schema: lock: expected 0 or 1"),
        (E, f"{OK} seq=2 evt=OPEN", "schema: duplicate key 'seq'"),
        (E, "seq=1 ts=2026-11-23T08:00:00 evt=OPEN", "schema: ts: expected RFC 3339 with a zone"),
        (E, "seq=1 ts=1700000000 evt=OPEN", "schema: ts: expected RFC 3339 with a zone"),
        (
            E,
            "seq=1 ts=2026-13-23T08:00:00Z evt=OPEN",
            "schema: ts: Input should be a valid datetime",
        ),
        (
            E,
            f"{OK} evt=BURN",
            "unsupported evt 'BURN' (known: OPEN, CLOSE, FORCED, HELD, TAMPER, RESTORE)",
        ),
        (E, f"{OK} evt=open", "unsupported evt 'open'"),
        (E, f"{OK} FORCED", "not key=value: 'FORCED'"),
        (E, "seq=1 =2", "not key=value: '=2'"),
        (E, " ; ", "not key=value: empty payload"),
        (E, '{"seq": 1}', "not key=value: "),
    ],
)
def test_kv_reasons(channel: Channel, payload: str, expected: str) -> None:
    assert kv_reason(channel, payload.encode()).startswith(expected)


def test_kv_bad_utf8() -> None:
    assert kv_reason(Channel.EVENT, b"seq=1 ts=\xff") == "not UTF-8: invalid byte at offset 9"


def test_kv_availability_is_canonical() -> None:
    assert GATE_KV.decode(Channel.AVAILABILITY, b"offline\n") == Availability(state="offline")
    assert GATE_KV.decode(Channel.AVAILABILITY, b'{"state": "online"}') == Availability(
        state="online"
    )


# --- hik_camera -------------------------------------------------------------------------------

NOTIFICATION = {
    "ipAddress": "10.0.0.5",
    "channelID": 1,
    "dateTime": "2026-11-23T16:00:00+08:00",
    "activePostCount": 3,
    "eventType": "videoloss",
    "eventState": "active",
    "eventDescription": "videoloss alarm",
}


def hik(**changes: object) -> bytes:
    note = {**NOTIFICATION, **changes}
    return json.dumps({k: v for k, v in note.items() if v is not None}).encode()


def hik_reason(payload: bytes) -> str:
    with pytest.raises(DecodeError) as info:
        HIK.decode(Channel.EVENT, payload)
    return str(info.value)


def test_hik_example() -> None:
    assert HIK.decode(Channel.EVENT, hik()) == CameraEvent(seq=3, ts=TS, event="video_loss")


@pytest.mark.parametrize(
    ("event_type", "event"),
    [("videoloss", "video_loss"), ("shelteralarm", "tamper"), ("diskfull", "storage_fault"),
     ("diskerror", "storage_fault")],
)  # fmt: skip
def test_hik_event_types(event_type: str, event: str) -> None:
    body = HIK.decode(Channel.EVENT, hik(eventType=event_type))
    assert isinstance(body, CameraEvent) and body.event == event


def test_hik_ignores_keys_it_does_not_use() -> None:
    payload = hik(macAddress="44:19:b6:00:00:01", channelName="Gate 3", ipAddress=None)
    assert HIK.decode(Channel.EVENT, payload) == CameraEvent(seq=3, ts=TS, event="video_loss")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (hik(eventState="inactive"), "unsupported eventState 'inactive': a restore or heartbeat"),
        (hik(eventType="VMD"),
         "unsupported eventType 'VMD' (known: videoloss, shelteralarm, diskfull, diskerror)"),
        (hik(eventState="ongoing"), "schema: eventState: Input should be 'active' or 'inactive'"),
        (hik(dateTime=None), "schema: dateTime: Field required"),
        (hik(dateTime="2026-11-23T16:00:00"), "schema: dateTime: Input should have timezone info"),
        (hik(activePostCount="3"), "schema: activePostCount: Input should be a valid integer"),
        (hik(activePostCount=-1), "schema: activePostCount: Input should be greater than or equal"),
        (b"<EventNotificationAlert/>", "not JSON: "),
        (b"[]", "schema: payload must be a JSON object, not array"),
        (b"\xff", "not UTF-8: invalid byte at offset 0"),
    ],
)  # fmt: skip
def test_hik_reasons(payload: bytes, expected: str) -> None:
    assert hik_reason(payload).startswith(expected)


def test_hik_status_and_availability_are_canonical() -> None:
    status = HIK.decode(Channel.STATUS, b'{"seq": 9, "ts": "2026-11-23T08:00:00Z", "fps": 12.5}')
    assert status == CameraStatus(seq=9, ts=TS, fps=12.5)
    assert HIK.decode(Channel.AVAILABILITY, b"online") == Availability(state="online")
