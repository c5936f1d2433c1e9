"""The fleet simulator's payloads follow the device contract; the gateway's drivers read them."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime

import pytest

import drivers
from gateway.models import (
    ButtonEvent,
    ButtonStatus,
    CameraEvent,
    CameraStatus,
    Channel,
    GateEvent,
    GateStatus,
    Kind,
)
from simulators.devices import Device, make_school
from simulators.fleet import (
    canonical_payload,
    event_payload,
    hik_alarm_payload,
    kv_gate_payload,
    press_payload,
)

TS = datetime(2026, 11, 23, 8, 0, 0, 123456, tzinfo=UTC)
RFC3339_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
STATUS_MODELS: dict[str, type[ButtonStatus | CameraStatus | GateStatus]] = {
    "button": ButtonStatus,
    "camera": CameraStatus,
    "gate": GateStatus,
}


def school(vendor: bool = False, seed: int = 1) -> list[Device]:
    return make_school("s1", 1, (2, 4, 2), vendor, random.Random(seed))


def test_canonical_header_is_v_seq_ts_in_utc_with_milliseconds() -> None:
    body = json.loads(canonical_payload(7, TS, event="press"))
    assert list(body)[:3] == ["v", "seq", "ts"]
    assert body["v"] == 1 and body["seq"] == 7
    assert body["ts"] == "2026-11-23T08:00:00.123Z"
    assert RFC3339_MS_Z.match(body["ts"])


@pytest.mark.parametrize("category", ["police", "fire", "medical"])
def test_press_is_a_button_event_with_its_category(category: str) -> None:
    event = ButtonEvent.model_validate_json(press_payload(3, TS, category))
    expected = (3, "press", category, TS.replace(microsecond=123000))  # milliseconds on the wire
    assert (event.seq, event.event, event.category, event.ts) == expected


def test_forced_and_video_loss_are_contract_events() -> None:
    assert GateEvent.model_validate_json(event_payload(1, TS, "forced")).event == "forced"
    assert CameraEvent.model_validate_json(event_payload(1, TS, "video_loss")).event == "video_loss"


def test_every_status_validates_and_stays_realistic() -> None:
    rng = random.Random(2)
    for device in school():
        for _ in range(200):
            status = STATUS_MODELS[device.kind].model_validate_json(device.status(rng, TS))
            if isinstance(status, CameraStatus):
                assert status.fps is not None and 23 < status.fps < 27
                assert status.bitrate_kbps is not None and 3000 < status.bitrate_kbps < 5000
                assert status.recording is True and status.storage_free_gb
                assert status.retention_days is not None and 30 <= status.retention_days <= 45
            else:
                assert isinstance(status, ButtonStatus | GateStatus)
                assert status.rssi is not None and -90 <= status.rssi <= -40
                assert status.battery is not None and 5 <= status.battery <= 100


def test_battery_only_drains() -> None:
    rng, device = random.Random(3), school()[0]
    levels: list[float] = []
    for _ in range(500):
        battery = ButtonStatus.model_validate_json(device.status(rng, TS)).battery
        assert battery is not None
        levels.append(battery)
    assert levels == sorted(levels, reverse=True)
    assert levels[0] != levels[-1]


def test_gate_door_is_mostly_closed() -> None:
    rng, gate = random.Random(4), school()[-1]
    doors = [GateStatus.model_validate_json(gate.status(rng, TS)).door for _ in range(1000)]
    assert 0.85 < doors.count("closed") / len(doors) < 1.0


def test_seq_counts_each_devices_messages_from_one() -> None:
    rng = random.Random(5)
    button, camera = school()[0], school()[2]
    seqs = [
        json.loads(button.status(rng, TS))["seq"],
        json.loads(press_payload(button.next_seq(), TS))["seq"],
        json.loads(button.event(TS, "low_battery"))["seq"],
        json.loads(button.status(rng, TS))["seq"],
    ]
    assert seqs == [1, 2, 3, 4]
    assert json.loads(camera.status(rng, TS))["seq"] == 1  # another device counts on its own


def test_school_names_its_devices_by_kind_and_vendor() -> None:
    assert [d.name for d in school()] == ["b1", "b2", "c1", "c2", "c3", "c4", "g1", "g2"]
    vendor = school(vendor=True)
    names = ["b1", "b2", "hik-c1", "hik-c2", "hik-c3", "hik-c4", "kv-g1", "kv-g2"]
    assert [d.name for d in vendor] == names
    assert vendor[0].topic("event") == "campus/s1/button/b1/event"
    assert vendor[-1].topic("status", "x") == "x/s1/gate/kv-g2/status"


def test_kv_gate_text_matches_the_example_and_decodes() -> None:
    ts = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    assert kv_gate_payload(12, ts, evt="FORCED") == b"seq=12 ts=2026-11-23T08:00:00Z evt=FORCED"
    decode = drivers.get("gate_kv").decode
    gate = school(vendor=True)[-1]
    event = decode(Channel.EVENT, gate.event(TS, "forced"))
    assert isinstance(event, GateEvent) and (event.event, event.seq) == ("forced", 1)
    status = decode(Channel.STATUS, gate.status(random.Random(6), TS))
    assert isinstance(status, GateStatus) and status.seq == 2 and status.battery is not None


def test_hik_alarm_carries_seq_and_local_time_and_decodes() -> None:
    body = json.loads(hik_alarm_payload(9, TS, "10.0.1.1"))
    assert body["dateTime"] == "2026-11-23T16:00:00+08:00"
    assert (body["activePostCount"], body["eventType"], body["eventState"]) == (
        9,
        "videoloss",
        "active",
    )
    camera = school(vendor=True)[2]
    event = drivers.get("hik_camera").decode(Channel.EVENT, camera.event(TS, "video_loss"))
    assert isinstance(event, CameraEvent) and (event.event, event.seq) == ("video_loss", 1)
    assert event.ts == TS.replace(microsecond=0)


def test_canonical_devices_decode_with_the_family_drivers() -> None:
    rng = random.Random(7)
    kinds = {"button": Kind.BUTTON, "camera": Kind.CAMERA, "gate": Kind.GATE}
    for device in school():
        decode = drivers.default_for(kinds[device.kind]).decode
        assert decode(Channel.STATUS, device.status(rng, TS)) is not None
    assert decode(Channel.AVAILABILITY, b"online") is not None
