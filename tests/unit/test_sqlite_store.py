"""SQLite alarm store: duplicates, outbox order and state, dead letters, counts."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.alarms import new_alarm_id
from gateway.models import DeliveryStatus, Kind
from gateway.ports import AlarmQuery, NewAlarm, NewDeadLetter, SendResult
from gateway.storage.sqlite import SqliteAlarmStore

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def alarm(seq: int, category: str = "police", endpoints: tuple[str, ...] = ("police",)) -> NewAlarm:
    return NewAlarm(
        id=new_alarm_id(), school="s1", kind=Kind.BUTTON, device="b1", event="press",
        category=category, seq=seq, device_ts=T0 + timedelta(seconds=seq),
        received_at=T0 + timedelta(seconds=seq, milliseconds=5), endpoints=endpoints,
        priority=30 if category == "fire" else 20,
    )  # fmt: skip


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteAlarmStore]:
    async with SqliteAlarmStore(tmp_path / "store.db") as s:
        yield s


async def test_same_device_seq_and_ts_is_one_alarm(store: SqliteAlarmStore) -> None:
    first, again = alarm(1), alarm(1)
    assert await store.commit([first], []) == [first.id]
    assert await store.commit([again], []) == []
    assert (await store.list_alarms(AlarmQuery()))[1] == 1


async def test_outbox_fire_first_then_retry_then_delivered(store: SqliteAlarmStore) -> None:
    police, fire = alarm(1), alarm(2, "fire", ("fire",))
    await store.commit([police, fire], [])
    due = await store.due_deliveries(now=T0.timestamp() + 10**9, limit=10)
    assert [(d.alarm.id, d.endpoint) for d in due] == [(fire.id, "fire"), (police.id, "police")]
    await store.record_attempt(fire.id, "fire", SendResult(False, "HTTP 503"), retry_at=5e9)
    await store.record_attempt(police.id, "police", SendResult(True, "HTTP 200"), None)
    assert [d.endpoint for d in await store.due_deliveries(now=4e9, limit=10)] == []
    assert await store.next_due_at() == 5e9
    got = await store.get_alarm(fire.id)
    assert got is not None
    (delivery,) = got.deliveries
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        DeliveryStatus.RETRYING, 1, "HTTP 503",
    )  # fmt: skip
    counts = await store.counts()
    assert (counts["alarms_open"], counts["alarms_forwarded"], counts["deliveries_pending"]) == (
        2, 1, 1,
    )  # fmt: skip


async def test_list_filters_and_pages_oldest_first(store: SqliteAlarmStore) -> None:
    alarms = [alarm(n) for n in range(1, 8)]
    await store.commit(alarms, [])
    page, total = await store.list_alarms(AlarmQuery(limit=3, offset=3))
    assert total == 7
    assert [a.seq for a in page] == [4, 5, 6]
    assert (await store.list_alarms(AlarmQuery(school="s2")))[1] == 0
    assert (await store.list_alarms(AlarmQuery(state="new", device="b1")))[1] == 7


async def test_dead_letters_keep_bytes_and_reason(store: SqliteAlarmStore) -> None:
    letters = [NewDeadLetter("campus/x", bytes([n, 255]), f"reason {n}", T0) for n in range(3)]
    await store.commit([], letters)
    got, total = await store.list_dead_letters(limit=2, offset=0)
    assert total == 3
    assert [(d.payload, d.reason) for d in got] == [
        (b"\x02\xff", "reason 2"),
        (b"\x01\xff", "reason 1"),
    ]


async def test_alarms_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with SqliteAlarmStore(path) as s:
        await s.commit([alarm(1), alarm(2)], [])
    async with SqliteAlarmStore(path) as s:
        assert len(await s.due_deliveries(now=1e10, limit=10)) == 2
