"""Vendor variant of the gate family: a door controller's `key=value` text.

It shows integrators the extension point: a pure decode from the vendor's bytes to the canonical
models, plus a DRIVER that config routes devices to (`[[drivers.routes]]`, docs/devices.md).

    event:  seq=12 ts=2026-11-23T08:00:00Z evt=FORCED
    status: seq=13 ts=2026-11-23T08:00:05Z door=1 lock=0 bat=87 rssi=-61

Pairs are separated by spaces and/or semicolons. Availability is canonical (`online`/`offline`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal, TypeVar

from drivers import canonical
from drivers.base import DecodeError, Driver
from gateway.models import Body, Channel, GateEvent, GateStatus, Kind

_V = TypeVar("_V")

_SEPARATORS = re.compile(r"[;\s]+")
# ASCII only and bounded, so "1_000", Unicode digits or a 5,000-digit seq are reasons, not values.
_INT = re.compile(r"-?[0-9]{1,17}", re.ASCII)
_DECIMAL = re.compile(r"-?[0-9]{1,17}(\.[0-9]{1,17})?", re.ASCII)
# The zone is required here rather than left to pydantic, which would read "1700000000" as epoch.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)

_EVENTS: dict[str, Literal["open", "close", "forced", "held_open", "tamper", "restore"]] = {
    "OPEN": "open",
    "CLOSE": "close",
    "FORCED": "forced",
    "HELD": "held_open",
    "TAMPER": "tamper",
    "RESTORE": "restore",
}
_DOOR: dict[str, Literal["open", "closed"]] = {"1": "open", "0": "closed"}
_LOCK = {"1": True, "0": False}
# Model field -> key on the wire, for reasons pydantic gives in model terms.
_WIRE_NAMES = {"battery": "bat", "locked": "lock", "event": "evt"}
_EVENT_KEYS = ("seq", "ts", "evt")
_STATUS_KEYS = ("seq", "ts", "door", "lock", "bat", "rssi")


def decode(channel: Channel, payload: bytes) -> Body:
    """Decode one gate controller message; raise DecodeError with a reason otherwise."""
    if channel == Channel.EVENT:
        return _event(_pairs(payload, _EVENT_KEYS))
    if channel == Channel.STATUS:
        return _status(_pairs(payload, _STATUS_KEYS))
    if channel == Channel.AVAILABILITY:
        return canonical.decode_availability(payload)
    raise canonical.unsupported_channel(channel)


def _event(pairs: Mapping[str, str]) -> GateEvent:
    header = _header(pairs)
    code = _required(pairs, "evt")
    event = _EVENTS.get(code)
    if event is None:
        raise DecodeError(f"unsupported evt {canonical.shown(code)} (known: {', '.join(_EVENTS)})")
    return canonical.validate(GateEvent, {**header, "event": event}, _WIRE_NAMES)


def _status(pairs: Mapping[str, str]) -> GateStatus:
    data: dict[str, object] = _header(pairs)
    if "door" in pairs:
        data["door"] = _flag(pairs, "door", _DOOR)
    if "lock" in pairs:
        data["locked"] = _flag(pairs, "lock", _LOCK)
    if "bat" in pairs:
        data["battery"] = _decimal(pairs, "bat")
    if "rssi" in pairs:
        data["rssi"] = _integer(pairs, "rssi")
    return canonical.validate(GateStatus, data, _WIRE_NAMES)


def _pairs(payload: bytes, known: tuple[str, ...]) -> dict[str, str]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not UTF-8: invalid byte at offset {exc.start}") from exc
    pairs: dict[str, str] = {}
    for token in _SEPARATORS.split(text):
        if not token:
            continue  # leading or trailing separators
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise DecodeError(f"not key=value: {canonical.shown(token)}")
        if key not in known:
            raise DecodeError(
                f"schema: unknown key {canonical.shown(key)} (known: {', '.join(known)})"
            )
        if key in pairs:
            raise DecodeError(f"schema: duplicate key {key!r}")
        pairs[key] = value
    if not pairs:
        raise DecodeError("not key=value: empty payload")
    return pairs


def _header(pairs: Mapping[str, str]) -> dict[str, object]:
    seq = _integer(pairs, "seq")
    ts = _required(pairs, "ts")
    if not _RFC3339.fullmatch(ts):
        raise DecodeError(
            f"schema: ts: expected RFC 3339 with a zone like 2026-11-23T08:00:00Z, "
            f"not {canonical.shown(ts)}"
        )
    return {"seq": seq, "ts": ts}


def _required(pairs: Mapping[str, str], key: str) -> str:
    try:
        return pairs[key]
    except KeyError:
        raise DecodeError(f"schema: missing {key}") from None


def _integer(pairs: Mapping[str, str], key: str) -> int:
    value = _required(pairs, key)
    if not _INT.fullmatch(value):
        raise DecodeError(f"schema: {key}: not an integer: {canonical.shown(value)}")
    return int(value)


def _decimal(pairs: Mapping[str, str], key: str) -> float:
    value = _required(pairs, key)
    if not _DECIMAL.fullmatch(value):
        raise DecodeError(f"schema: {key}: not a number: {canonical.shown(value)}")
    return float(value)


def _flag(pairs: Mapping[str, str], key: str, values: Mapping[str, _V]) -> _V:
    value = pairs[key]
    try:
        return values[value]
    except KeyError:
        raise DecodeError(f"schema: {key}: expected 0 or 1, not {canonical.shown(value)}") from None


DRIVER = Driver(
    name="gate_kv",
    kind=Kind.GATE,
    description="Gate controller key=value text (seq=.. ts=.. evt=FORCED / door=1 lock=0 ...).",
    decode=decode,
)
