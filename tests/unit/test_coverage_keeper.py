"""CoverageKeeper: evaluating only the schools that changed gives what a full computation gives.

The tracker is the real AvailabilityTracker fed decoded messages, so the dirty marks under test
are the ones the gateway uses.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from gateway.availability import AvailabilityTracker
from gateway.config import AvailabilitySettings, CoverageSettings
from gateway.coverage import Coverage, CoverageKeeper, compute
from gateway.models import (
    Availability,
    ButtonStatus,
    CameraStatus,
    Channel,
    DeviceMessage,
    GateStatus,
    Kind,
    Topic,
)
from gateway.registry import Device, Location, Registry, School

NIGHT = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # 22:00 at UTC+8: gates must be closed
SETTINGS = CoverageSettings(
    test_alarm_max_age_days=30, gate_open_hours=["06:30-08:30"], utc_offset_hours=8
)
LOCATIONS = {
    Kind.BUTTON: [Location.GATEHOUSE, Location.DORMITORY_DUTY_ROOM, Location.CLASSROOM],
    Kind.CAMERA: [Location.GATEHOUSE, Location.CANTEEN, Location.PERIMETER],
    Kind.GATE: [Location.ENTRANCE],
}


def fleet(schools: int = 40, seed: int = 3) -> Registry:
    rng = random.Random(seed)
    school_list, devices = [], []
    for n in range(schools):
        school = School(
            id=f"s{n:02d}", name=f"School {n}", prefecture=f"p{n % 2}", county=f"c{n % 5}",
            type="primary", has_dormitory=n % 3 == 0, has_canteen=n % 4 != 0,
        )  # fmt: skip
        school_list.append(school)
        for kind in (Kind.BUTTON, Kind.CAMERA, Kind.GATE):
            for i in range(rng.randint(0, 3)):
                devices.append(Device(
                    school=school.id, kind=kind, id=f"{kind}{i}",
                    location=rng.choice(LOCATIONS[kind]),
                    linkage="police" if kind == Kind.BUTTON and rng.random() < 0.8 else None,
                ))  # fmt: skip
    return Registry.build(school_list, devices, version=1)


def message(device: Device, at: datetime, rng: random.Random) -> DeviceMessage:
    """A random message of the device: a status (with fields the rules read, or not) or a will."""
    topic = Topic(device.school, device.kind, device.id, Channel.STATUS)
    if rng.random() < 0.2:
        state = rng.choice(["online", "offline"])
        will = Topic(device.school, device.kind, device.id, Channel.AVAILABILITY)
        return DeviceMessage(will, Availability(state=state), at)  # type: ignore[arg-type]
    body: ButtonStatus | CameraStatus | GateStatus
    if device.kind == Kind.CAMERA:
        body = CameraStatus(
            seq=1, ts=at, fps=rng.choice([12.0, 25.0]), recording=rng.random() < 0.8,
            retention_days=rng.choice([10, 30, 45]),
        )  # fmt: skip
    elif device.kind == Kind.GATE:
        body = GateStatus(seq=1, ts=at, door=rng.choice(["open", "closed"]), rssi=-60)
    else:
        body = ButtonStatus(seq=1, ts=at, battery=rng.randint(10, 100))
    return DeviceMessage(topic, body, at)


def assert_same(got: Coverage, want: Coverage) -> None:
    assert got.units == want.units
    assert got.views == want.views
    assert got.warnings == want.warnings


def test_incremental_results_equal_full_ones_through_random_changes() -> None:
    rng = random.Random(11)
    registry = fleet()
    tracker = AvailabilityTracker(AvailabilitySettings())
    keeper = CoverageKeeper(SETTINGS, full_every_s=10**9)
    devices = list(registry.devices.values())
    tests = {s: NIGHT - timedelta(days=rng.randint(0, 40)) for s in registry.schools if s < "s30"}
    now = NIGHT
    evaluated = []
    for round_ in range(30):
        now += timedelta(minutes=7)  # the local time in gate problems changes; tests age
        for device in rng.sample(devices, rng.randint(0, 6)):
            tracker.seen(message(device, now, rng))
        if round_ % 10 == 9:
            tracker.check(now + timedelta(days=2))  # silence: some go offline
        dirty = tracker.take_dirty()
        got = keeper.compute(registry, tracker.entry_map(), dirty, tests, now)
        if round_ == 0:
            assert keeper.full  # the first call evaluates everything
        else:
            assert not keeper.full
            evaluated.append(keeper.evaluated)
        assert_same(got, compute(registry, tracker.entry_map(), tests, SETTINGS, now))
    assert max(evaluated) < len(registry.schools)  # it did skip schools


def test_fields_the_rules_do_not_read_leave_the_school_clean() -> None:
    tracker = AvailabilityTracker(AvailabilitySettings())
    camera = Topic("s1", Kind.CAMERA, "v1", Channel.STATUS)
    at = NIGHT
    tracker.seen(DeviceMessage(camera, CameraStatus(seq=1, ts=at, fps=25, recording=True), at))
    assert tracker.take_dirty() == {"s1"}  # a new device
    again = CameraStatus(seq=2, ts=at, fps=12, bitrate_kbps=900, recording=True)
    tracker.seen(DeviceMessage(camera, again, at))
    assert tracker.take_dirty() == set()  # fps and bitrate are not read by coverage
    stopped = CameraStatus(seq=3, ts=at, fps=12, recording=False)
    tracker.seen(DeviceMessage(camera, stopped, at))
    assert tracker.take_dirty() == {"s1"}


def test_registry_change_and_open_hours_evaluate_every_school() -> None:
    registry = fleet(schools=6)
    keeper = CoverageKeeper(SETTINGS, full_every_s=10**9)
    keeper.compute(registry, {}, set(), {}, NIGHT)
    keeper.compute(registry, {}, set(), {}, NIGHT + timedelta(minutes=1))
    assert (keeper.full, keeper.evaluated) == (False, 0)
    newer = Registry.build(registry.schools.values(), registry.device_models(), version=2)
    keeper.compute(newer, {}, set(), {}, NIGHT + timedelta(minutes=2))
    assert (keeper.full, keeper.evaluated) == (True, 6)
    morning = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # 07:00 at UTC+8: gates may be open
    keeper.compute(newer, {}, set(), {}, morning)
    assert keeper.full
    keeper.compute(newer, {}, None, {}, morning)  # None: the caller lost track
    assert keeper.full


def test_safety_net_evaluates_everything_every_full_every_s() -> None:
    registry = fleet(schools=4)
    keeper = CoverageKeeper(SETTINGS, full_every_s=600)
    keeper.compute(registry, {}, set(), {}, NIGHT)
    keeper.compute(registry, {}, set(), {}, NIGHT + timedelta(seconds=599))
    assert not keeper.full
    keeper.compute(registry, {}, set(), {}, NIGHT + timedelta(seconds=601))
    assert keeper.full
