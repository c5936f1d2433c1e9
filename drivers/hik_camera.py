"""Vendor variant of the camera family: alarm JSON in the style of Hikvision ISAPI notifications.

    {"ipAddress": "10.0.0.5", "channelID": 1, "dateTime": "2026-11-23T16:00:00+08:00",
     "activePostCount": 3, "eventType": "videoloss", "eventState": "active",
     "eventDescription": "videoloss alarm"}

eventType videoloss -> video_loss, shelteralarm -> tamper, diskfull and diskerror ->
storage_fault; activePostCount becomes seq and dateTime ts. Other keys (ipAddress, channelID,
eventDescription, whatever a firmware adds) are ignored: the topic already names the device.

Only `active` notifications are events. `inactive` ones are restores, and cameras also send
videoloss/inactive as a heartbeat; they are refused with a reason starting `unsupported` (as is
any other eventType), so the core can tell them from malformed payloads. Status is canonical JSON,
availability canonical `online`/`offline`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from drivers import canonical
from drivers.base import DecodeError, Driver
from gateway.models import Body, CameraEvent, CameraStatus, Channel, Kind

_EVENTS: dict[str, Literal["video_loss", "tamper", "storage_fault"]] = {
    "videoloss": "video_loss",
    "shelteralarm": "tamper",
    "diskfull": "storage_fault",
    "diskerror": "storage_fault",
}


class _Notification(BaseModel):
    """The part of an ISAPI event notification the gateway uses."""

    # Firmwares add keys over time; ignoring them keeps an upgrade from breaking decoding.
    model_config = ConfigDict(frozen=True, extra="ignore")

    eventType: str
    eventState: Literal["active", "inactive"]
    dateTime: AwareDatetime
    activePostCount: int = Field(ge=0, le=2**53)


def decode(channel: Channel, payload: bytes) -> Body:
    """Decode one camera message; raise DecodeError with a reason otherwise."""
    if channel == Channel.EVENT:
        return _event(canonical.parse_json(_Notification, payload))
    if channel == Channel.STATUS:
        return canonical.parse_json(CameraStatus, payload)
    if channel == Channel.AVAILABILITY:
        return canonical.decode_availability(payload)
    raise canonical.unsupported_channel(channel)


def _event(note: _Notification) -> CameraEvent:
    event = _EVENTS.get(note.eventType)
    if event is None:
        known = ", ".join(_EVENTS)
        raise DecodeError(
            f"unsupported eventType {canonical.shown(note.eventType)} (known: {known})"
        )
    if note.eventState != "active":
        raise DecodeError("unsupported eventState 'inactive': a restore or heartbeat, not an event")
    data = {"seq": note.activePostCount, "ts": note.dateTime, "event": event}
    return canonical.validate(CameraEvent, data)


DRIVER = Driver(
    name="hik_camera",
    kind=Kind.CAMERA,
    description="Camera alarm JSON in Hikvision ISAPI style (videoloss, shelteralarm, disk*).",
    decode=decode,
)
