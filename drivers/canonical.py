"""Decode canonical JSON payloads (docs/devices.md) into the family's models.

The family drivers are `decoder(kind)`; vendor drivers reuse `parse_json`, `validate`,
`decode_availability` and `shown` so that every driver words its reasons alike. A reason starts
with a stable class word so dead letters can be grouped: `not UTF-8`, `not JSON`, `schema`,
`unsupported`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from drivers.base import Decode, DecodeError
from gateway.models import EVENT_MODELS, STATUS_MODELS, Availability, Body, Channel, Kind

M = TypeVar("M", bound=BaseModel)

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]{1,40}", re.ASCII)
_MAX_ERRORS = 3
_MAX_SHOWN = 40
_PLAIN_STATES = {
    b"online": Availability(state="online"),
    b"offline": Availability(state="offline"),
}
_JSON_TYPES: dict[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def decoder(kind: Kind) -> Decode:
    """The canonical decode for one family: event, status and availability as JSON."""
    event_model = EVENT_MODELS[kind]
    status_model = STATUS_MODELS[kind]

    def decode(channel: Channel, payload: bytes) -> Body:
        if channel == Channel.EVENT:
            return parse_json(event_model, payload)
        if channel == Channel.STATUS:
            return parse_json(status_model, payload)
        if channel == Channel.AVAILABILITY:
            return decode_availability(payload)
        raise unsupported_channel(channel)

    return decode


def decode_availability(payload: bytes) -> Availability:
    """Plain `online`/`offline` (whitespace around it allowed) or JSON `{"state": ...}`."""
    text = payload.strip()
    plain = _PLAIN_STATES.get(text)
    if plain is not None:
        return plain
    if not text.startswith(b"{"):
        raise DecodeError(
            f'schema: availability must be online, offline or {{"state": ...}}, not {shown(text)}'
        )
    return parse_json(Availability, payload)


def parse_json(model: type[M], payload: bytes) -> M:
    """Validate a JSON payload strictly against `model`, or raise DecodeError with a reason.

    Strict, so that `"seq": "1"` or `"test_mode": "yes"` fail as the published JSON Schema says
    they should, instead of being coerced for one vendor and rejected by the next tool.
    """
    try:
        # The validator itself, not model_validate_json: the same call less a Python frame.
        body: M = model.__pydantic_validator__.validate_json(payload, strict=True)
    except ValidationError as exc:
        raise DecodeError(reason(exc, payload)) from exc
    return _finite(body)


def validate(
    model: type[M], data: Mapping[str, object], wire_names: Mapping[str, str] | None = None
) -> M:
    """Validate values a vendor driver has already parsed, or raise DecodeError with a reason.

    `wire_names` maps model fields to the vendor's names, so a reason says `bat:`, not `battery:`.
    """
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        raise DecodeError(reason(exc, wire_names=wire_names)) from exc
    return _finite(body)


def reason(
    exc: ValidationError,
    payload: bytes | None = None,
    wire_names: Mapping[str, str] | None = None,
) -> str:
    """A short reason naming the fields: `schema: event: Input should be 'press', ...`."""
    errors = exc.errors(include_url=False, include_context=False)
    if errors and errors[0]["type"] == "json_invalid":
        return _not_json(errors[0], payload)
    parts = [_describe(err, wire_names or {}) for err in errors[:_MAX_ERRORS]]
    if len(errors) > _MAX_ERRORS:
        parts.append(f"and {len(errors) - _MAX_ERRORS} more")
    return "schema: " + "; ".join(parts)


def unsupported_channel(channel: object) -> DecodeError:
    """The error for a channel this driver has no decoder for."""
    return DecodeError(f"unsupported channel {shown(str(channel))}")


def shown(value: str | bytes) -> str:
    """A device-supplied value quoted for a reason: repr (safe to log), cut to a short length."""
    if len(value) > _MAX_SHOWN:
        return repr(value[:_MAX_SHOWN]) + "..."
    return repr(value)


def _not_json(err: ErrorDetails, payload: bytes | None) -> str:
    if payload is not None:
        if not payload.strip():
            return "not JSON: empty payload"
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"not UTF-8: invalid byte at offset {exc.start}"
    return "not JSON: " + err["msg"].removeprefix("Invalid JSON: ")


def _describe(err: ErrorDetails, wire_names: Mapping[str, str]) -> str:
    if err["loc"]:
        path = [_field(str(part)) for part in err["loc"]]
        path[0] = wire_names.get(path[0], path[0])
        return ".".join(path) + ": " + err["msg"]
    if err["type"] == "model_type":
        kind = _JSON_TYPES.get(type(err.get("input")), "value")
        return f"payload must be a JSON object, not {kind}"
    return err["msg"]


def _field(name: str) -> str:
    # An unknown key comes from the device: quote it unless it is a plain name, so a reason stays
    # one printable line whatever was sent.
    return name if _PLAIN_NAME.fullmatch(name) else shown(name)


def _finite(body: M) -> M:
    # JSON numbers like 1e400 parse to inf, which passes `ge=0`; InfluxDB and the schemas'
    # round trip (inf serialises as null) cannot take it, so it is a schema error here.
    # (the model's __dict__, not iter(body): pydantic's __iter__ cost more than the validation)
    for name, value in body.__dict__.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise DecodeError(f"schema: {name}: Input should be a finite number")
    return body
