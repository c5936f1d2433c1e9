"""SQLite adapter for the AlarmStore port: alarms, per-endpoint outbox and dead letters.

WAL with synchronous=FULL: a commit that returned is on disk, so an MQTT message is acknowledged
only after its alarm or dead letter survives a crash. All calls run on one dedicated thread,
which owns the connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from gateway.models import Alarm, AlarmState, DeadLetter, Delivery, DeliveryStatus, Kind
from gateway.ports import AlarmQuery, DueDelivery, NewAlarm, NewDeadLetter, SendResult

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    id TEXT PRIMARY KEY,
    school TEXT NOT NULL, kind TEXT NOT NULL, device TEXT NOT NULL,
    event TEXT NOT NULL, category TEXT NOT NULL,
    seq INTEGER NOT NULL, device_ts TEXT NOT NULL, received_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'new',
    UNIQUE (school, kind, device, seq, device_ts)
);
CREATE INDEX IF NOT EXISTS alarms_state ON alarms (state, received_at);
CREATE TABLE IF NOT EXISTS deliveries (
    alarm_id TEXT NOT NULL REFERENCES alarms (id),
    endpoint TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    priority INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, last_attempt_at TEXT, delivered_at TEXT,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (alarm_id, endpoint)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL, payload BLOB NOT NULL, reason TEXT NOT NULL, received_at TEXT NOT NULL
);
"""
_UNCONFIRMED = "status IN ('pending', 'retrying')"


class SqliteAlarmStore:
    """AlarmStore on one SQLite file; use as an async context manager."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None

    async def __aenter__(self) -> SqliteAlarmStore:
        await self._run(self._open)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._run(self._close)
        self._pool.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(SCHEMA)
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        """The connection (store thread only)."""
        if self._db is None:
            raise RuntimeError("SqliteAlarmStore used outside 'async with'")
        return self._db

    # --- writes ------------------------------------------------------------------------------

    async def commit(
        self, alarms: Sequence[NewAlarm], letters: Sequence[NewDeadLetter]
    ) -> list[str]:
        """Insert alarms (ignoring duplicates of device+seq+ts) and letters in one transaction."""
        return await self._run(self._commit, alarms, letters)

    def _commit(self, alarms: Sequence[NewAlarm], letters: Sequence[NewDeadLetter]) -> list[str]:
        created: list[str] = []
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for alarm in alarms:
                if self._insert_alarm(alarm):
                    created.append(alarm.id)
            db.executemany(
                "INSERT INTO dead_letters (topic, payload, reason, received_at) VALUES (?,?,?,?)",
                [(d.topic, d.payload, d.reason, _iso(d.received_at)) for d in letters],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return created

    def _insert_alarm(self, a: NewAlarm) -> bool:
        cur = self.db.execute(
            "INSERT OR IGNORE INTO alarms (id, school, kind, device, event, category, seq,"
            " device_ts, received_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (a.id, a.school, a.kind.value, a.device, a.event, a.category, a.seq,
             _iso(a.device_ts), _iso(a.received_at)),
        )  # fmt: skip
        if cur.rowcount == 0:
            return False
        self.db.executemany(
            "INSERT INTO deliveries (alarm_id, endpoint, priority) VALUES (?,?,?)",
            [(a.id, endpoint, a.priority) for endpoint in a.endpoints],
        )
        return True

    async def record_attempt(
        self, alarm_id: str, endpoint: str, result: SendResult, retry_at: float | None
    ) -> None:
        """Record an attempt's outcome on the delivery row."""
        await self._run(self._record_attempt, alarm_id, endpoint, result, retry_at)

    def _record_attempt(
        self, alarm_id: str, endpoint: str, result: SendResult, retry_at: float | None
    ) -> None:
        now = _iso(datetime.now(UTC))
        if result.ok:
            sql = ("UPDATE deliveries SET status='delivered', attempts=attempts+1,"
                   " last_attempt_at=?, delivered_at=?, last_error=NULL"
                   " WHERE alarm_id=? AND endpoint=?")  # fmt: skip
            self.db.execute(sql, (now, now, alarm_id, endpoint))
            return
        sql = ("UPDATE deliveries SET status='retrying', attempts=attempts+1,"
               " last_attempt_at=?, last_error=?, next_attempt_at=?"
               " WHERE alarm_id=? AND endpoint=?")  # fmt: skip
        self.db.execute(sql, (now, result.detail, retry_at or 0.0, alarm_id, endpoint))

    # --- reads -------------------------------------------------------------------------------

    async def due_deliveries(self, now: float, limit: int) -> list[DueDelivery]:
        """Unconfirmed deliveries due by `now`, highest priority then oldest first."""
        return await self._run(self._due, now, limit)

    def _due(self, now: float, limit: int) -> list[DueDelivery]:
        rows = self.db.execute(
            f"SELECT alarm_id, endpoint, attempts FROM deliveries WHERE {_UNCONFIRMED}"
            " AND next_attempt_at <= ? ORDER BY priority DESC, rowid LIMIT ?",
            (now, limit),
        ).fetchall()
        alarms = {row[0]: self._alarm(row[0]) for row in rows}
        return [
            DueDelivery(alarm=alarm, endpoint=endpoint, attempts=attempts)
            for alarm_id, endpoint, attempts in rows
            if (alarm := alarms[alarm_id]) is not None
        ]

    async def next_due_at(self) -> float | None:
        """When the earliest unconfirmed delivery is due."""
        return await self._run(self._next_due_at)

    def _next_due_at(self) -> float | None:
        row = self.db.execute(
            f"SELECT min(next_attempt_at) FROM deliveries WHERE {_UNCONFIRMED}"
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    async def list_alarms(self, query: AlarmQuery) -> tuple[list[Alarm], int]:
        """Alarms matching the filters, oldest first, with the total before paging."""
        return await self._run(self._list_alarms, query)

    def _list_alarms(self, q: AlarmQuery) -> tuple[list[Alarm], int]:
        where, args = [], []
        for column, value in (("school", q.school), ("device", q.device), ("state", q.state)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        total = self.db.execute(f"SELECT count(*) FROM alarms{clause}", args).fetchone()[0]
        ids = self.db.execute(
            f"SELECT id FROM alarms{clause} ORDER BY received_at, rowid LIMIT ? OFFSET ?",
            [*args, q.limit, q.offset],
        ).fetchall()
        return [a for (alarm_id,) in ids if (a := self._alarm(alarm_id)) is not None], total

    async def get_alarm(self, alarm_id: str) -> Alarm | None:
        """One alarm with its deliveries, or None."""
        return await self._run(self._alarm, alarm_id)

    def _alarm(self, alarm_id: str) -> Alarm | None:
        row = self.db.execute(
            "SELECT id, school, kind, device, event, category, seq, device_ts, received_at, state"
            " FROM alarms WHERE id = ?",
            (alarm_id,),
        ).fetchone()
        if row is None:
            return None
        deliveries = self.db.execute(
            "SELECT endpoint, status, attempts, last_error, last_attempt_at, delivered_at"
            " FROM deliveries WHERE alarm_id = ? ORDER BY endpoint",
            (alarm_id,),
        ).fetchall()
        return Alarm(
            id=row[0], school=row[1], kind=Kind(row[2]), device=row[3], event=row[4],
            category=row[5], seq=row[6], device_ts=row[7], received_at=row[8],
            state=AlarmState(row[9]),
            deliveries=tuple(
                Delivery(endpoint=d[0], status=DeliveryStatus(d[1]), attempts=d[2],
                         last_error=d[3], last_attempt_at=d[4], delivered_at=d[5])
                for d in deliveries
            ),
        )  # fmt: skip

    async def list_dead_letters(self, limit: int, offset: int) -> tuple[list[DeadLetter], int]:
        """Newest first."""
        return await self._run(self._dead_letters, limit, offset)

    def _dead_letters(self, limit: int, offset: int) -> tuple[list[DeadLetter], int]:
        total = self.db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        rows = self.db.execute(
            "SELECT id, topic, payload, reason, received_at FROM dead_letters"
            " ORDER BY id DESC LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
        letters = [
            DeadLetter(id=r[0], topic=r[1], payload=r[2], reason=r[3], received_at=r[4])
            for r in rows
        ]
        return letters, total

    async def counts(self) -> dict[str, int]:
        """Figures for the progress line and /api/stats."""
        return await self._run(self._counts)

    def _counts(self) -> dict[str, int]:
        one = self.db.execute
        return {
            "alarms_total": one("SELECT count(*) FROM alarms").fetchone()[0],
            "alarms_open": one("SELECT count(*) FROM alarms WHERE state != 'reset'").fetchone()[0],
            "alarms_forwarded": one(
                "SELECT count(*) FROM alarms a WHERE EXISTS (SELECT 1 FROM deliveries d"
                " WHERE d.alarm_id = a.id) AND NOT EXISTS (SELECT 1 FROM deliveries d"
                f" WHERE d.alarm_id = a.id AND d.{_UNCONFIRMED})"
            ).fetchone()[0],
            "deliveries_pending": one(
                f"SELECT count(*) FROM deliveries WHERE {_UNCONFIRMED}"
            ).fetchone()[0],
            "dead_letters": one("SELECT count(*) FROM dead_letters").fetchone()[0],
        }


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")
