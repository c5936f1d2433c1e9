"""Line protocol: measurement per message type, tags, typed fields, device time in ns."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from gateway.lineproto import _fields, _ns, measurement, tags, to_line
from gateway.models import (
    EVENT_MODELS,
    STATUS_MODELS,
    Availability,
    ButtonEvent,
    ButtonStatus,
    CameraStatus,
    Channel,
    DeviceMessage,
    Kind,
    Topic,
)
from tests.unit.test_driver_fuzz import models

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


# --- the fields straight from the model equal model_dump's ------------------------------------

MODELS = [*EVENT_MODELS.values(), *STATUS_MODELS.values()]
CHANNEL_OF = {**{m: Channel.EVENT for m in EVENT_MODELS.values()},
              **{m: Channel.STATUS for m in STATUS_MODELS.values()}}  # fmt: skip


def dumped_line(msg: DeviceMessage) -> bytes:
    """The line as to_line built it before it read the model's values itself (model_dump)."""
    fields = _fields(msg.body.model_dump(exclude={"v", "ts"}, exclude_none=True))
    return f"{measurement(msg)},{tags(msg.topic)} {fields} {_ns(msg.body.ts)}".encode()  # type: ignore[union-attr]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@given(data=st.data(), school=st.text(min_size=1, max_size=8), device=st.text(min_size=1))
def test_fields_of_every_model_equal_model_dumps(
    model: type[BaseModel], data: st.DataObject, school: str, device: str
) -> None:
    body = data.draw(models(model))
    kind = next(k for k in Kind if model in (EVENT_MODELS[k], STATUS_MODELS[k]))
    msg = DeviceMessage(Topic(school, kind, device, CHANNEL_OF[model]), body, NOW)  # type: ignore[arg-type]
    assert to_line(msg) == dumped_line(msg)
    assert to_line(msg, tags(msg.topic)) == dumped_line(msg)


class VendorStatus(ButtonStatus):
    """A plugin's own model: to_line does not know its fields, so it asks model_dump."""

    temperature: float | None = None


def test_a_model_it_does_not_know_goes_through_model_dump() -> None:
    body = VendorStatus(seq=3, ts=TS, battery=50, temperature=21.5)
    msg = DeviceMessage(Topic("s1", Kind.BUTTON, "b 1", Channel.STATUS), body, NOW)
    assert to_line(msg) == (
        b"button_status,school=s1,kind=button,device=b\\ 1 "
        b"seq=3i,battery=50.0,test_mode=false,tamper=false,temperature=21.5 1795420800123456000"
    )
