"""Availability: wills, messages, silence by class, grace after (re)start, troubles."""

from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given

from gateway.alarms import OfflineTroubles
from gateway.availability import AvailabilityTracker
from gateway.config import AvailabilitySettings
from gateway.models import (
    Availability,
    ButtonStatus,
    CameraStatus,
    Channel,
    DeviceMessage,
    GateStatus,
    Kind,
    Status,
    Topic,
)
from gateway.registry import Device
from tests.unit.test_driver_fuzz import models

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
SETTINGS = AvailabilitySettings(mains_timeout_s=600, battery_timeout_s=90_000,
                                camera_timeout_s=180, startup_grace_s=60)  # fmt: skip


def status(device: str, at: datetime, kind: Kind = Kind.BUTTON, **fields: object) -> DeviceMessage:
    body = ButtonStatus(seq=1, ts=at, **fields)  # type: ignore[arg-type]
    return DeviceMessage(Topic("s1", kind, device, Channel.STATUS), body, at)


def will(device: str, state: str, at: datetime, by: str | None = None) -> DeviceMessage:
    body = Availability(state=state, by=by)  # type: ignore[arg-type]
    return DeviceMessage(Topic("s1", Kind.BUTTON, device, Channel.AVAILABILITY), body, at)


def test_message_makes_online_and_silence_offline_by_class() -> None:
    registry = {"s1/button/bat": Device(school="s1", kind=Kind.BUTTON, id="bat", power="battery")}
    t = AvailabilityTracker(SETTINGS, registry.get)
    t.resume(T0)
    first = t.seen(status("mains", T0))
    assert first is not None and (first.state, first.judged, first.publish) == (
        "online",
        True,
        True,
    )
    assert t.seen(status("mains", T0 + timedelta(seconds=1))) is None  # on change only
    t.seen(status("bat", T0))
    assert t.check(T0 + timedelta(seconds=59)) == []  # grace
    changes = t.check(T0 + timedelta(seconds=602))
    assert [(c.device, c.state) for c in changes] == [("mains", "offline")]
    assert t.check(T0 + timedelta(hours=24)) == []  # battery: 25 h
    assert [c.device for c in t.check(T0 + timedelta(hours=26))] == ["bat"]


def test_no_silence_while_disconnected_and_grace_after_reconnect() -> None:
    t = AvailabilityTracker(SETTINGS)
    t.seen(status("b1", T0))
    assert t.check(T0 + timedelta(hours=1), connected=False) == []
    t.resume(T0 + timedelta(hours=1))
    assert t.check(T0 + timedelta(hours=1, seconds=30)) == []
    assert len(t.check(T0 + timedelta(hours=1, seconds=61))) == 1


def test_own_will_is_obeyed_and_never_published_for() -> None:
    t = AvailabilityTracker(SETTINGS)
    online = t.seen(will("b1", "online", T0))
    assert online is not None and (online.judged, online.publish) == (False, False)
    offline = t.seen(will("b1", "offline", T0 + timedelta(seconds=5)))
    assert offline is not None and offline.state == "offline"
    back = t.seen(status("b1", T0 + timedelta(seconds=9)))
    assert back is not None and (back.state, back.publish) == ("online", False)


def test_gateway_retained_word_restores_state_without_counting_as_seen() -> None:
    t = AvailabilityTracker(SETTINGS)
    change = t.seen(will("b1", "offline", T0, by="gateway"))
    assert change is not None and change.state == "offline" and not change.judged
    (record,) = t.records()
    assert record.last_seen is None and record.availability == "offline"
    again = t.seen(status("b1", T0 + timedelta(seconds=1)))
    assert again is not None and again.publish  # still no will of its own: we speak for it


def test_offline_troubles_for_buttons_and_gatehouse_cameras_once_per_cooldown() -> None:
    cams = {"s1/camera/gate-cam": Device(school="s1", kind=Kind.CAMERA, id="gate-cam",
                                         location="gatehouse")}  # fmt: skip
    troubles = OfflineTroubles(cooldown_s=3600, registered=cams.get)
    t = AvailabilityTracker(SETTINGS, cams.get)
    raised = []
    for minute in range(0, 60, 10):  # a flapping button
        at = T0 + timedelta(minutes=minute)
        for change in (t.seen(status("b1", at)), t.seen(will("b1", "offline", at))):
            if change is not None and (trouble := troubles.for_change(change)):
                raised.append(trouble)
    for device, kind in (("gate-cam", Kind.CAMERA), ("yard-cam", Kind.CAMERA)):
        msg = DeviceMessage(Topic("s1", kind, device, Channel.AVAILABILITY),
                            Availability(state="offline"), T0)  # fmt: skip
        change = t.seen(msg)
        if change is not None and (trouble := troubles.for_change(change)):
            raised.append(trouble)
    assert [(a.device, a.category, a.event, a.endpoints) for a in raised] == [
        ("b1", "trouble", "offline", ()), ("gate-cam", "trouble", "offline", ()),
    ]  # fmt: skip


@given(body=models(ButtonStatus) | models(CameraStatus) | models(GateStatus))
def test_last_status_reads_as_the_message_s_json(body: Status) -> None:
    """The tracker keeps a status's values as they are; the API's record shows them as JSON,
    exactly as the message's own model_dump(mode="json") did when the tracker stored that."""
    t = AvailabilityTracker(SETTINGS)
    topic = Topic("s1", Kind.BUTTON, "d1", Channel.STATUS)
    t.seen(DeviceMessage(topic, body, T0))
    (entry,) = t.entry_map().values()
    shown = t.record(entry).model_dump(mode="json")["last_status"]
    assert shown == body.model_dump(mode="json")
    assert orjson.loads(t.record(entry).model_dump_json())["last_status"] == shown


def test_offline_troubles_remember_the_last_ones_across_a_restart() -> None:
    troubles = OfflineTroubles(cooldown_s=3600, registered=lambda key: None)
    troubles.remember({"s1/button/b1": T0, "s1/button/b2": T0 - timedelta(hours=2)})
    t = AvailabilityTracker(SETTINGS)
    later = T0 + timedelta(minutes=30)
    raised = [troubles.for_change(c) for d in ("b1", "b2")
              if (c := t.seen(will(d, "offline", later))) is not None]  # fmt: skip
    assert [a.device for a in raised if a is not None] == ["b2"]  # b1's hour is not over
