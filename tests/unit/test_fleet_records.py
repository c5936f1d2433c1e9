"""Fleet.records (GET /api/devices): every filter combination against a brute-force filter."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

from gateway.config import Settings
from gateway.fleet import Fleet
from gateway.models import Availability, ButtonStatus, Channel, DeviceMessage, Kind, Topic
from gateway.registry import Device, Registry, School

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def fleet(seed: int = 5) -> Fleet:
    rng = random.Random(seed)
    f = Fleet(Settings(), lambda topic, payload: True, lambda line: None)
    schools = [
        School(id=s, name=s, prefecture="p", county="c", type="primary")
        for s in ("s1", "s10", "s2", "s2x")  # s1 and s10 share a prefix as text
    ]
    devices = [
        Device(school=school.id, kind=kind, id=f"{kind.value[0]}{n}")
        for school in schools
        for kind in Kind
        for n in range(rng.randint(0, 3))
    ]
    f.registry = Registry.build(schools, devices, version=1)
    heard = rng.sample(devices, len(devices) // 2)
    heard += [Device(school="s9", kind=Kind.BUTTON, id="stray")]  # unregistered
    for device in heard:
        topic = Topic(device.school, device.kind, device.id, Channel.STATUS)
        if rng.random() < 0.3:
            will = Topic(device.school, device.kind, device.id, Channel.AVAILABILITY)
            f.tracker.seen(DeviceMessage(will, Availability(state="offline"), NOW))
        else:
            f.tracker.seen(DeviceMessage(topic, ButtonStatus(seq=1, ts=NOW), NOW))
    return f


def brute(f: Fleet, school, kind, registered, state, never_seen) -> list[str]:  # type: ignore[no-untyped-def]
    heard = f.tracker.entry_map()
    out = []
    for key in sorted(heard.keys() | f.registry.devices.keys()):
        key_school, key_kind, _ = key.split("/")
        entry = heard.get(key)
        is_registered = key in f.registry.devices
        if (
            (school is None or key_school == school)
            and (kind is None or key_kind == kind)
            and (registered is None or is_registered == registered)
            and (state is None or (entry.state if entry else "unknown") == state)
            and (not never_seen or (is_registered and (entry is None or entry.last_seen is None)))
        ):
            out.append(key)
    return out


def test_every_filter_combination_matches_brute_force() -> None:
    f = fleet()
    combos = itertools.product(
        [None, "s1", "s2", "s9", "nope"], [None, "button", "camera", "gate"],
        [None, True, False], [None, "online", "offline", "unknown"], [False, True],
    )  # fmt: skip
    nonempty = 0
    for school, kind, registered, state, never_seen in combos:
        want = brute(f, school, kind, registered, state, never_seen)
        total, page = f.records(school, kind, registered, state, never_seen)
        got = [f"{r.school}/{r.kind}/{r.device}" for r in page]
        assert (total, got) == (len(want), want), (school, kind, registered, state, never_seen)
        nonempty += bool(want)
    assert nonempty > 50


def test_pages_and_a_newly_heard_device() -> None:
    f = fleet()
    total, _ = f.records()
    _, first = f.records(page=(0, 3))
    _, second = f.records(page=(3, 3))
    assert len(first) == len(second) == 3 and first[-1].device != second[0].device
    topic = Topic("s0", Kind.GATE, "new", Channel.STATUS)
    f.tracker.seen(DeviceMessage(topic, ButtonStatus(seq=1, ts=NOW), NOW))
    again, page = f.records()
    assert again == total + 1 and page[0].school == "s0"  # sorted first, cache renewed
