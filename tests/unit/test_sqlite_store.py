"""SQLite alarm store: duplicates, outbox order and state, dead letters, counts."""

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.alarms import new_alarm_id
from gateway.models import AlarmState, DeliveryStatus, Kind
from gateway.ports import (
    AlarmNotFoundError,
    AlarmQuery,
    Attempt,
    InvalidTransitionError,
    NewAlarm,
    NewDeadLetter,
    Restore,
    SendResult,
)
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
    await store.record_attempts([
        Attempt(fire.id, "fire", SendResult(False, "HTTP 503"), retry_at=5e9),
        Attempt(police.id, "police", SendResult(True, "HTTP 200"), None),
    ])  # fmt: skip
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


async def test_resent_press_within_window_is_not_new_but_restarted_device_is(
    store: SqliteAlarmStore,
) -> None:
    first = alarm(1)
    resent = dataclasses.replace(alarm(1), device_ts=first.device_ts + timedelta(seconds=30))
    restarted = dataclasses.replace(alarm(1), device_ts=first.device_ts + timedelta(hours=2))
    assert await store.commit([first, resent], []) == [first.id]
    assert await store.commit([restarted], []) == [restarted.id]


async def test_handling_is_latched_and_ordered(store: SqliteAlarmStore) -> None:
    a = alarm(1)
    await store.commit([a], [], [Restore("s1", Kind.BUTTON, "b1", T0 + timedelta(minutes=1))])
    got = await store.get_alarm(a.id)
    assert got is not None and got.restored_at is not None and got.state == AlarmState.NEW
    with pytest.raises(InvalidTransitionError, match="acknowledge it first"):
        await store.transition(a.id, "reset", "li", "")
    acked = await store.transition(a.id, "acknowledge", "li", "on my way")
    assert (acked.state, acked.acknowledged_by, acked.acknowledged_note) == (
        AlarmState.ACKNOWLEDGED, "li", "on my way",
    )  # fmt: skip
    done = await store.transition(a.id, "reset", "wang", "false alarm, child pressed")
    assert (done.state, done.reset_by) == (AlarmState.RESET, "wang")
    with pytest.raises(InvalidTransitionError):
        await store.transition(a.id, "acknowledge", "li", "")
    with pytest.raises(AlarmNotFoundError):
        await store.transition("nope", "acknowledge", "li", "")


async def test_overdue_delivery_goes_to_backup_and_raises_one_trouble(
    store: SqliteAlarmStore,
) -> None:
    a = alarm(1, endpoints=("police", "fire"))
    await store.commit([a], [])
    late = a.received_at.timestamp() + 91
    troubles = await store.escalate_overdue(late, 90, {"police": "police2"})
    assert len(troubles) == 1
    assert await store.escalate_overdue(late + 10, 90, {"police": "police2"}) == []
    trouble = await store.get_alarm(troubles[0])
    assert trouble is not None
    assert (trouble.category, trouble.related_alarm_id, trouble.deliveries) == ("trouble", a.id, ())
    got = await store.get_alarm(a.id)
    assert got is not None
    assert sorted(d.endpoint for d in got.deliveries) == ["fire", "police", "police2"]


async def test_audit_chain_detects_a_changed_or_deleted_row(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    async with SqliteAlarmStore(path) as s:
        for n in range(1, 4):
            await s.commit([alarm(n)], [])
        problems, (rows, _) = await s.verify_audit()
        assert (problems, rows) == ([], 3)
    db = sqlite3.connect(path)
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET detail = replace(detail, 'police', 'fire') WHERE seq = 2")
    db.commit()
    db.close()
    async with SqliteAlarmStore(path) as s:
        problems, _ = await s.verify_audit()
    assert problems == ["row 2: contents do not match its hash (changed)"]


async def test_audit_log_refuses_updates_and_deletes(
    store: SqliteAlarmStore, tmp_path: Path
) -> None:
    await store.commit([alarm(1)], [])
    other = sqlite3.connect(tmp_path / "store.db")
    for sql in ("DELETE FROM audit", "UPDATE audit SET actor = 'x'"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            other.execute(sql)
    other.close()


def scanned_counts(path: Path) -> dict[str, int]:
    """The definitions of /api/stats by scanning every row, to check the running totals."""
    db = sqlite3.connect(path)
    try:

        def one(sql: str) -> int:
            return int(db.execute(sql).fetchone()[0])

        unconfirmed = "status IN ('pending', 'retrying')"
        return {
            "alarms_total": one("SELECT count(*) FROM alarms"),
            "alarms_open": one("SELECT count(*) FROM alarms WHERE state != 'reset' AND test = 0"),
            "alarms_forwarded": one(
                "SELECT count(DISTINCT alarm_id) FROM deliveries WHERE status = 'delivered' AND "
                f"alarm_id NOT IN (SELECT alarm_id FROM deliveries WHERE {unconfirmed})"
            ),
            "deliveries_pending": one(f"SELECT count(*) FROM deliveries WHERE {unconfirmed}"),
            "dead_letters": one("SELECT count(*) FROM dead_letters"),
        }
    finally:
        db.close()


async def test_running_counts_match_a_full_scan(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with SqliteAlarmStore(path) as store:
        both = ("police", "fire")
        alarms = [alarm(n, endpoints=both if n % 3 == 0 else ("police",)) for n in range(1, 31)]
        letter = NewDeadLetter("campus/x", b"\xff", "bad", T0)
        await store.commit(alarms[:20], [letter, letter])
        await store.commit(alarms[:5], [])  # duplicates: no new rows, no counts
        attempts = []
        for n, a in enumerate(alarms[:20]):
            for endpoint in a.endpoints:
                ok = (n + len(endpoint)) % 4 != 0
                attempts.append(Attempt(a.id, endpoint, SendResult(ok, "x"), None if ok else 9e9))
        await store.record_attempts(attempts)
        await store.record_attempts(  # a retry that now succeeds, one delivered twice
            [Attempt(a.id, "police", SendResult(True, "x"), None) for a in alarms[:8]]
        )
        await store.commit(alarms[20:], [letter])
        for a in alarms[:6]:
            await store.transition(a.id, "acknowledge", "op", "")
            await store.transition(a.id, "reset", "op", "")
        counts = await store.counts()
    assert counts == scanned_counts(path)
    assert counts["alarms_total"] == 30 and counts["dead_letters"] == 3
    assert 0 < counts["alarms_forwarded"] < 20 and counts["alarms_open"] == 24


async def test_totals_are_counted_when_an_old_store_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with SqliteAlarmStore(path) as store:
        first = [alarm(n) for n in range(1, 6)]
        await store.commit(first, [NewDeadLetter("campus/x", b"", "bad", T0)])
        await store.record_attempts([Attempt(first[0].id, "police", SendResult(True, "x"), None)])
    db = sqlite3.connect(path)  # back to schema 4, as a gateway of that version left it
    db.executescript(
        "DROP TABLE store_counts; DROP INDEX alarms_open; PRAGMA user_version = 4;"
        + "".join(
            f"DROP TRIGGER {name};"
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            if name.startswith("count_")
        )
    )
    db.close()
    async with SqliteAlarmStore(path) as store:
        counts = await store.counts()
    assert counts == scanned_counts(path)
    assert (counts["alarms_total"], counts["alarms_forwarded"], counts["dead_letters"]) == (5, 1, 1)


async def test_last_troubles_per_device_of_one_event(store: SqliteAlarmStore) -> None:
    def trouble(device: str, event: str, minutes: int) -> NewAlarm:
        at = T0 + timedelta(minutes=minutes)
        return dataclasses.replace(
            alarm(0, category="trouble", endpoints=()), device=device, event=event,
            device_ts=at, received_at=at,
        )  # fmt: skip

    await store.commit([trouble("b1", "offline", 0), trouble("b1", "offline", 90),
                        trouble("b2", "offline", 30), trouble("b3", "video_black", 40),
                        dataclasses.replace(alarm(7), event="offline")], [])  # fmt: skip
    assert await store.last_troubles("offline") == {
        "s1/button/b1": T0 + timedelta(minutes=90), "s1/button/b2": T0 + timedelta(minutes=30),
    }  # fmt: skip


async def test_open_troubles_are_the_unrestored_unreset_ones_by_prefix(
    store: SqliteAlarmStore,
) -> None:
    def trouble(device: str, event: str, minutes: int) -> NewAlarm:
        at = T0 + timedelta(minutes=minutes)
        return dataclasses.replace(
            alarm(0, category="trouble", endpoints=()), kind=Kind.CAMERA, device=device,
            event=event, device_ts=at, received_at=at,
        )  # fmt: skip

    black, frozen = trouble("c1", "video_black", 0), trouble("c2", "video_frozen", 5)
    reset, offline = trouble("c3", "video_blur", 10), trouble("c4", "offline", 15)
    await store.commit([black, frozen, reset, offline, trouble("c5", "video_noise", 20)], [])
    await store.commit([], [], [Restore("s1", Kind.CAMERA, "c5", T0, "video_noise")])
    await store.transition(reset.id, "acknowledge", "op", "")
    await store.transition(reset.id, "reset", "op", "")
    assert await store.open_troubles(Kind.CAMERA, "video_") == [
        ("s1", "c1", "video_black", T0), ("s1", "c2", "video_frozen", T0 + timedelta(minutes=5)),
    ]  # fmt: skip
