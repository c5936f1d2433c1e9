"""Canonical device messages and gateway records: the single source of the device contract.

Drivers decode vendor bytes into the message models below; docs/schemas/ is generated from them
(`campusgw schemas`), and a test fails when the committed schemas are stale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Kind(StrEnum):
    """Device family, the third topic level."""

    BUTTON = "button"
    CAMERA = "camera"
    GATE = "gate"


class Channel(StrEnum):
    """Message type, the fifth topic level."""

    EVENT = "event"
    STATUS = "status"
    AVAILABILITY = "availability"
    SNAPSHOT = "snapshot"  # cameras only: JPEG bytes, checked by video quality diagnosis


class _DeviceMessage(BaseModel):
    """Fields every canonical JSON message carries."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    v: Literal[1] = Field(1, description="Payload schema version; only 1 exists.")
    seq: int = Field(
        ge=0,
        le=2**53,
        description="Per-device sequence number, increasing by one per message; "
        "with `ts` it identifies a message when the broker or device resends it.",
    )
    ts: AwareDatetime = Field(
        description="Device clock when the message was produced, RFC 3339 with a zone "
        "(e.g. 2026-11-23T08:00:00Z). Used as the InfluxDB point time."
    )


Percent = Annotated[float, Field(ge=0, le=100)]
Rssi = Annotated[int, Field(ge=-150, le=0, description="Received signal strength, dBm.")]


class ButtonEvent(_DeviceMessage):
    """One-click alarm button event. `press` raises an alarm routed by `category`; `test`
    raises a test alarm (never forwarded); `restore` is recorded on open alarms, never
    closing them."""

    event: Literal["press", "test", "tamper", "low_battery", "restore"]
    category: Literal["police", "fire", "medical"] = Field(
        "police", description="Who must respond to a press; routes the alarm to an endpoint."
    )


class GateEvent(_DeviceMessage):
    """Gate or door sensor event. `forced` raises an alarm for the security room; `restore`
    is recorded on open alarms, never closing them."""

    event: Literal["open", "close", "forced", "held_open", "tamper", "restore"]


class CameraEvent(_DeviceMessage):
    """Camera event reported by the camera or its NVR."""

    event: Literal["video_loss", "tamper", "storage_fault"]


class ButtonStatus(_DeviceMessage):
    """Periodic health of a one-click alarm button."""

    battery: Percent | None = Field(None, description="Battery charge, percent; absent on mains.")
    rssi: Rssi | None = None
    power: Literal["mains", "battery"] | None = None
    test_mode: bool = Field(False, description="The device is in test mode (presses are tests).")
    tamper: bool = Field(False, description="Enclosure tamper switch open.")


class CameraStatus(_DeviceMessage):
    """Periodic health of a camera (or its NVR channel)."""

    fps: float | None = Field(None, ge=0, le=1000)
    bitrate_kbps: float | None = Field(None, ge=0)
    recording: bool | None = Field(None, description="The NVR is recording this camera.")
    storage_free_gb: float | None = Field(None, ge=0)
    retention_days: float | None = Field(None, ge=0, description="Days of video kept.")
    rssi: Rssi | None = None


class GateStatus(_DeviceMessage):
    """Periodic health of a gate or door sensor."""

    door: Literal["open", "closed"] | None = None
    locked: bool | None = None
    battery: Percent | None = None
    rssi: Rssi | None = None
    power: Literal["mains", "battery"] | None = None


class Availability(BaseModel):
    """Retained online/offline state; also the device's MQTT last will.

    On the wire it is the plain text `online` or `offline` (zigbee2mqtt style) or the JSON
    `{"state": "online"}`; a last will is fixed at connect time, so it carries no seq or ts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: Literal["online", "offline"]
    by: Literal["gateway"] | None = Field(
        None,
        description="Set only when the gateway published this on behalf of a device that has "
        "no last will of its own (it judged the device by its messages and silence).",
    )


Event = ButtonEvent | GateEvent | CameraEvent
Status = ButtonStatus | CameraStatus | GateStatus
Body = Event | Status | Availability

EVENT_MODELS: dict[Kind, type[Event]] = {
    Kind.BUTTON: ButtonEvent,
    Kind.GATE: GateEvent,
    Kind.CAMERA: CameraEvent,
}
STATUS_MODELS: dict[Kind, type[Status]] = {
    Kind.BUTTON: ButtonStatus,
    Kind.GATE: GateStatus,
    Kind.CAMERA: CameraStatus,
}


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed `campus/{school}/{kind}/{device}/{channel}` topic."""

    school: str
    kind: Kind
    device: str
    channel: Channel

    @property
    def device_key(self) -> str:
        """`school/kind/device`, the key drivers are routed on and devices are listed by."""
        return f"{self.school}/{self.kind}/{self.device}"


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    """A decoded message with where it came from and when the gateway received it."""

    topic: Topic
    body: Body
    received_at: datetime


# --- gateway records -------------------------------------------------------------------------


class AlarmState(StrEnum):
    """Latched alarm state (GB 50394: only a person closes an alarm)."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    RESET = "reset"


class DeliveryStatus(StrEnum):
    """Where forwarding one alarm to one endpoint stands."""

    PENDING = "pending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class Delivery(_Record):
    """Forwarding of one alarm to one linkage endpoint."""

    endpoint: str
    status: DeliveryStatus
    attempts: int = 0
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None


class Alarm(_Record):
    """A latched alarm raised by a device event (or by the gateway for linkage trouble)."""

    id: str = Field(description="Global alarm id; endpoints see it as the Idempotency-Key.")
    school: str
    kind: Kind
    device: str
    event: str = Field(description="Device event (press, forced) or linkage_trouble.")
    category: str = Field(
        description="police, fire, medical (button press), intrusion (gate forced) or "
        "trouble (raised by the gateway, for the security room)."
    )
    seq: int
    device_ts: datetime
    received_at: datetime
    test: bool = Field(False, description="A test alarm: recorded, never a real 110/119 call.")
    state: AlarmState = AlarmState.NEW
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    acknowledged_note: str | None = None
    reset_by: str | None = None
    reset_at: datetime | None = None
    reset_note: str | None = None
    restored_at: datetime | None = Field(
        None, description="When the device reported restore; recorded, never closes the alarm."
    )
    related_alarm_id: str | None = Field(
        None, description="For a trouble alarm: the alarm whose delivery is in trouble."
    )
    evidence: str | None = Field(
        None, description="For a camera trouble: path of the evidence frame on the gateway."
    )
    deliveries: tuple[Delivery, ...] = ()


class DeadLetter(_Record):
    """An MQTT message the gateway could not use, kept with the reason."""

    id: int
    topic: str
    payload: bytes
    reason: str
    received_at: datetime


class DeviceRecord(_Record):
    """What the gateway knows of a device: heard (last seen, state) and/or registered."""

    school: str
    kind: Kind
    device: str
    last_seen: datetime | None = None
    availability: Literal["online", "offline", "unknown"] = "unknown"
    since: datetime | None = Field(None, description="When it entered its availability state.")
    last_status: dict[str, object] | None = None
    messages: int = 0
    registered: bool | None = Field(
        None, description="In the registry (false: publishes but unregistered)."
    )
