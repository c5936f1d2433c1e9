"""Line protocol: measurement per message type, tags, typed fields, device time in ns."""

from datetime import UTC, datetime

from gateway.lineproto import to_line
from gateway.models import (
    Availability,
    ButtonEvent,
    CameraStatus,
    Channel,
    DeviceMessage,
    Kind,
    Topic,
)

NOW = datetime(2026, 11, 23, 8, 0, 1, tzinfo=UTC)
TS = datetime(2026, 11, 23, 8, 0, 0, 123456, tzinfo=UTC)


def test_button_press_line() -> None:
    msg = DeviceMessage(
        Topic("s1", Kind.BUTTON, "b1", Channel.EVENT),
        ButtonEvent(seq=7, ts=TS, event="press", category="fire"),
        NOW,
    )
    assert to_line(msg) == (
        b"button_event,school=s1,kind=button,device=b1 "
        b'seq=7i,event="press",category="fire" 1795420800123456000'
    )


def test_status_fields_are_typed_and_none_is_left_out() -> None:
    body = CameraStatus(seq=1, ts=TS, fps=25, recording=True, storage_free_gb=12.5)
    line = to_line(DeviceMessage(Topic("s1", Kind.CAMERA, "c1", Channel.STATUS), body, NOW))
    head, fields, when = line.decode().split(" ")
    assert head == "camera_status,school=s1,kind=camera,device=c1"
    assert fields == "seq=1i,fps=25.0,recording=true,storage_free_gb=12.5"
    assert when == "1795420800123456000"


def test_availability_uses_receive_time() -> None:
    msg = DeviceMessage(
        Topic("s1", Kind.GATE, "g1", Channel.AVAILABILITY), Availability(state="offline"), NOW
    )
    assert to_line(msg) == (
        b"availability,school=s1,kind=gate,device=g1 "
        b'state="offline",online=false 1795420801000000000'
    )
