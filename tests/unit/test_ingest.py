"""Ingest: topics, drivers, alarms and dead letters for a batch, against an in-memory store."""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.alarms import NvrTroubles
from gateway.availability import AvailabilityTracker
from gateway.config import Settings, load_settings
from gateway.ingest import Ingest, TopicError, parse_topic
from gateway.models import Channel, Kind
from gateway.ports import NewAlarm, NewDeadLetter, Restore
from gateway.runtime import DriverRouter
from gateway.stats import Stats

EXAMPLE = Path(__file__).parents[2] / "campusgw.example.toml"
PRESS = b'{"seq": 1, "ts": "2026-11-23T08:00:00Z", "event": "press"}'


class FakeStore:
    """Keeps what is committed; refuses an alarm key it has seen (like the real store)."""

    def __init__(self) -> None:
        self.alarms: list[NewAlarm] = []
        self.letters: list[NewDeadLetter] = []
        self.keys: set[tuple[str, str, int, str]] = set()
        self.restores: list[Restore] = []

    async def commit(
        self,
        alarms: Sequence[NewAlarm],
        letters: Sequence[NewDeadLetter],
        restores: Sequence[Restore] = (),
    ) -> list[str]:
        self.restores.extend(restores)
        created = []
        for alarm in alarms:
            key = (alarm.school, alarm.device, alarm.seq, alarm.event)
            if key not in self.keys:
                self.keys.add(key)
                self.alarms.append(alarm)
                created.append(alarm.id)
        self.letters.extend(letters)
        return created


@pytest.fixture
def settings() -> Settings:
    return load_settings(EXAMPLE)


async def no_points(lines: list[bytes]) -> None:
    pass


@pytest.fixture
def parts(settings: Settings) -> tuple[Ingest, FakeStore, list[bytes], list[str]]:
    store, points, woken = FakeStore(), [], []

    async def add_points(lines: list[bytes]) -> None:
        points.extend(lines)

    ingest = Ingest(
        settings, DriverRouter(settings), store, add_points,
        AvailabilityTracker(settings.availability), Stats(),
        on_alarms=woken.extend,
    )  # type: ignore[arg-type]  # fmt: skip
    return ingest, store, points, woken


def test_parse_topic() -> None:
    topic = parse_topic("campus/s1/button/b1/event", "campus")
    assert (topic.school, topic.kind, topic.device, topic.channel) == (
        "s1", Kind.BUTTON, "b1", Channel.EVENT,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("campus/s1/button/b1", "unknown topic"),
        ("other/s1/button/b1/event", "unknown topic"),
        ("campus/s1/siren/x1/event", "unknown kind 'siren'"),
        ("campus/s1/button/b1/config", "unknown channel 'config'"),
        ("campus/s 1/button/b1/event", "bad school id"),
        ("campus/s1/button/b1\n/event", "bad device id"),
    ],
)
def test_bad_topics(topic: str, reason: str) -> None:
    with pytest.raises(TopicError, match=reason):
        parse_topic(topic, "campus")


async def test_minimal_press_raises_police_alarm(parts) -> None:  # type: ignore[no-untyped-def]
    ingest, store, points, woken = parts
    await ingest.handle([("campus/s1/button/b1/event", PRESS)])
    assert [(a.category, a.endpoints) for a in store.alarms] == [("police", ("police",))]
    assert woken == [store.alarms[0].id]
    assert len(points) == 1 and points[0].startswith(b"button_event,")


async def test_duplicate_press_is_one_alarm(parts) -> None:  # type: ignore[no-untyped-def]
    ingest, store, _, _ = parts
    await ingest.handle([("campus/s1/button/b1/event", PRESS)] * 3)
    assert len(store.alarms) == 1


async def test_forced_gate_is_intrusion_for_the_security_room(parts) -> None:  # type: ignore[no-untyped-def]
    ingest, store, _, _ = parts
    body = b'{"seq": 4, "ts": "2026-11-23T08:00:00Z", "event": "forced"}'
    await ingest.handle([("campus/s1/gate/g1/event", body)])
    assert [(a.category, a.endpoints) for a in store.alarms] == [("intrusion", ())]


async def test_vendor_route_decodes_kv_gate(parts) -> None:  # type: ignore[no-untyped-def]
    ingest, store, _, _ = parts
    body = b"seq=12 ts=2026-11-23T08:00:00Z evt=FORCED"
    await ingest.handle([("campus/s3/gate/kv-g1/event", body)])
    assert [a.device for a in store.alarms] == ["kv-g1"]


async def test_bad_input_is_kept_with_reason_and_good_traffic_flows(parts) -> None:  # type: ignore[no-untyped-def]
    ingest, store, points, _ = parts
    bad = [
        ("campus/s1/button/b1/event", b"not json"),
        ("campus/s1/button/b1/event", b'{"seq": 1, "ts": "2026-11-23T08:00:00Z", "event": "x"}'),
        ("campus/s1/lift/l1/status", b"{}"),
        ("campus/s1/button", b"{}"),
        ("campus/s1/button/b1/status", b"x" * 70000),
    ]
    await ingest.handle([*bad, ("campus/s1/button/b2/event", PRESS)])
    reasons = [letter.reason for letter in store.letters]
    assert len(reasons) == len(bad)
    assert reasons[2].startswith("unknown kind") and reasons[3].startswith("unknown topic")
    assert reasons[4].startswith("oversized") and len(store.letters[4].payload) == 65536
    assert [a.device for a in store.alarms] == ["b2"]
    assert len(points) == 1


async def test_test_event_and_test_mode_make_test_alarms_for_test_channels_only(parts) -> None:  # type: ignore[no-untyped-def]
    ingest, store, _, _ = parts
    test = b'{"seq": 1, "ts": "2026-11-23T08:00:00Z", "event": "test"}'
    status = b'{"seq": 2, "ts": "2026-11-23T08:00:01Z", "test_mode": true}'
    press = b'{"seq": 3, "ts": "2026-11-23T08:00:02Z", "event": "press"}'
    await ingest.handle([("campus/s1/button/b1/event", test)])
    await ingest.handle([("campus/s1/button/b1/status", status)])
    await ingest.handle(
        [("campus/s1/button/b1/event", press), ("campus/s1/button/b2/event", PRESS)]
    )
    # The example config gives police a test_url (its test channel); fire has none.
    assert [(a.device, a.test, a.endpoints) for a in store.alarms] == [
        ("b1", True, ("police",)), ("b1", True, ("police",)), ("b2", False, ("police",)),
    ]  # fmt: skip


async def test_restore_is_recorded_not_an_alarm(parts) -> None:  # type: ignore[no-untyped-def]
    ingest, store, _, _ = parts
    restore = b'{"seq": 2, "ts": "2026-11-23T08:00:05Z", "event": "restore"}'
    await ingest.handle(
        [("campus/s1/button/b1/event", PRESS), ("campus/s1/button/b1/event", restore)]
    )
    assert len(store.alarms) == 1
    assert [(r.school, r.device) for r in store.restores] == [("s1", "b1")]


async def test_nvr_not_recording_or_short_retention_is_a_trouble_then_restored(
    settings: Settings,
) -> None:
    store = FakeStore()
    ingest = Ingest(
        settings, DriverRouter(settings), store, no_points,
        AvailabilityTracker(settings.availability), Stats(), on_alarms=lambda ids: None,
        nvr=NvrTroubles(lambda school: 30),
    )  # type: ignore[arg-type]  # fmt: skip
    topic = "campus/s1/camera/c1/status"
    bad = b'{"seq": 1, "ts": "2026-11-23T08:00:00Z", "recording": false, "retention_days": 12}'
    good = b'{"seq": 2, "ts": "2026-11-23T08:01:00Z", "recording": true, "retention_days": 31}'
    await ingest.handle([(topic, bad), (topic, bad)])
    assert sorted(a.event for a in store.alarms) == ["nvr_not_recording", "nvr_retention_short"]
    await ingest.handle([(topic, good)])
    assert sorted(r.event or "" for r in store.restores) == [
        "nvr_not_recording", "nvr_retention_short",
    ]  # fmt: skip


STATUS = b'{"seq": 1, "ts": "2026-11-23T08:00:00Z", "battery": 90}'


def in_one_window(
    settings: Settings, store: FakeStore, stats: Stats, add_points: Callable[..., Any]
) -> Ingest:
    """An Ingest whose rate-limit clock stays in one one-second window."""
    ingest = Ingest(
        settings, DriverRouter(settings), store, add_points,
        AvailabilityTracker(settings.availability), stats, on_alarms=lambda ids: None,
    )  # type: ignore[arg-type]  # fmt: skip
    ingest._clock = lambda: 1000.5
    return ingest


async def test_a_flooding_device_is_limited_counted_and_named_events_never(
    settings: Settings,
) -> None:
    stats, store = Stats(), FakeStore()
    ingest = in_one_window(settings, store, stats, no_points)
    limit = settings.limits.device_msgs_per_s
    flood = [("campus/s1/button/loud/status", STATUS)] * (limit + 30)
    quiet = [("campus/s1/button/calm/status", STATUS)] * 3
    presses = [
        ("campus/s1/button/loud/event",
         b'{"seq": %d, "ts": "2026-11-23T08:00:0%dZ", "event": "press"}' % (n, n))
        for n in range(1, 4)
    ]  # fmt: skip
    await ingest.handle(flood + quiet + presses)
    assert stats.rate_limited == 30
    assert ingest.flooding() == {"campus/s1/button/loud": 30}
    assert len(store.alarms) == 3  # the flooding device's presses all became alarms
    ingest._clock = lambda: 1001.5  # the next second: allowed again
    await ingest.handle(flood[:limit])
    assert stats.rate_limited == 30


async def test_topics_worked_out_once_give_the_same_results_and_errors_each_time(
    parts, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    ingest, store, points, _ = parts
    monkeypatch.setattr("gateway.ingest.ROUTES_KEPT", 2)  # the cache starts again past two
    status = b'{"seq": 1, "ts": "2026-11-23T08:00:00Z", "battery": 90}'
    good = [(f"campus/s1/button/b{n}/status", status) for n in range(3)]
    bad = [("campus/s1/lift/l1/status", status), ("campus/s1/button/b 1/status", status)]
    for _ in range(2):
        await ingest.handle([*good, *bad, ("campus/s1/button/b0/event", PRESS)])
    assert points[:4] == points[4:]
    assert [p.split(b" ")[0] for p in points[:3]] == [
        b"button_status,school=s1,kind=button,device=b%d" % n for n in range(3)
    ]
    reasons = [letter.reason for letter in store.letters]
    assert reasons[:2] == reasons[2:] and reasons[0].startswith("unknown kind 'lift'")
    assert reasons[1].startswith("bad device id 'b 1'")
    assert len(ingest._routes) <= 2


class FailingOnce(FakeStore):
    """Refuses its first commit, as a store does while its disk is full."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def commit(
        self,
        alarms: Sequence[NewAlarm],
        letters: Sequence[NewDeadLetter],
        restores: Sequence[Restore] = (),
    ) -> list[str]:
        if not self.failed:
            self.failed = True
            raise OSError("disk full")
        return await super().commit(alarms, letters, restores)


async def test_a_batch_retried_after_a_store_error_is_rate_limited_once(
    settings: Settings,
) -> None:
    stats, store, points = Stats(), FailingOnce(), []

    async def add_points(lines: list[bytes]) -> None:
        points.extend(lines)

    ingest = in_one_window(settings, store, stats, add_points)
    limit = settings.limits.device_msgs_per_s
    calm = [("campus/s1/button/b1/status", STATUS)] * (limit - 10)
    loud = [("campus/s1/button/loud/status", STATUS)] * (limit + 5)
    batch = [*calm, *loud, ("campus/s1/button/b1/event", PRESS)]  # a press: a commit to fail
    with pytest.raises(OSError, match="disk full"):
        await ingest.handle(batch)
    assert stats.rate_limited == 0 and ingest.flooding() == {}
    await ingest.handle(batch)  # the broker delivers it again
    assert len(points) == (limit - 10) + limit + 1  # b1 whole, loud up to its limit, the press
    assert stats.rate_limited == 5
    assert ingest.flooding() == {"campus/s1/button/loud": 5}
    assert len(store.alarms) == 1
