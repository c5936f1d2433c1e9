"""SQLite adapter for the AlarmStore port: alarms, per-endpoint outbox, dead letters, audit log.

WAL with synchronous=FULL: a commit that returned is on disk, so an MQTT message is acknowledged
only after its alarm or dead letter survives a crash. All calls run on one dedicated thread, which
owns the connection; every write is one transaction that also appends its audit rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from gateway.alarms import new_alarm_id, next_state, trouble_alarm
from gateway.models import Alarm, DeadLetter, Kind
from gateway.ports import (
    AlarmNotFoundError,
    AlarmQuery,
    Attempt,
    DueDelivery,
    NewAlarm,
    NewDeadLetter,
    Restore,
)
from gateway.storage import sqlite_rows as rows
from gateway.storage.audit import AuditChain, AuditEntry, verify
from gateway.storage.schema import migrate

T = TypeVar("T")


class SqliteAlarmStore:
    """AlarmStore on one SQLite file; use as an async context manager."""

    def __init__(self, path: Path, duplicate_window_s: float = 300.0) -> None:
        self._path = path
        self._window = timedelta(seconds=duplicate_window_s)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None
        self._chain: AuditChain | None = None

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
        migrate(db)
        self._db, self._chain = db, AuditChain(db)

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

    def _transaction(self, work: Callable[[list[AuditEntry]], T]) -> T:
        """Run work in one transaction, then append the audit entries it collected."""
        assert self._chain is not None
        entries: list[AuditEntry] = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            result = work(entries)
            self._chain.append(entries)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            self._chain.reload()
            raise
        return result

    # --- ingest ------------------------------------------------------------------------------

    async def commit(
        self,
        alarms: Sequence[NewAlarm],
        letters: Sequence[NewDeadLetter],
        restores: Sequence[Restore] = (),
    ) -> list[str]:
        """Insert new alarms (skipping resent ones), letters and restores in one transaction."""
        return await self._run(self._transaction, lambda audit: self._commit(
            alarms, letters, restores, audit))  # fmt: skip

    def _commit(
        self,
        alarms: Sequence[NewAlarm],
        letters: Sequence[NewDeadLetter],
        restores: Sequence[Restore],
        audit: list[AuditEntry],
    ) -> list[str]:
        created = [a.id for a in alarms if self._insert_alarm(a, audit)]
        self.db.executemany(
            "INSERT INTO dead_letters (topic, payload, reason, received_at) VALUES (?,?,?,?)",
            [(d.topic, d.payload, d.reason, _iso(d.received_at)) for d in letters],
        )
        for restore in restores:
            self._restore(restore, audit)
        return created

    def _insert_alarm(self, a: NewAlarm, audit: list[AuditEntry]) -> bool:
        if self._is_resent(a):
            return False
        self.db.execute(
            "INSERT INTO alarms (id, school, kind, device, event, category, seq, device_ts,"
            " received_at, test, related_alarm_id, evidence) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (a.id, a.school, a.kind.value, a.device, a.event, a.category, a.seq,
             _iso(a.device_ts), _iso(a.received_at), int(a.test), a.related_alarm_id,
             a.evidence),
        )  # fmt: skip
        created = a.received_at.timestamp()
        self.db.executemany(
            "INSERT INTO deliveries (alarm_id, endpoint, priority, created_at) VALUES (?,?,?,?)",
            [(a.id, endpoint, a.priority, created) for endpoint in a.endpoints],
        )
        detail = {
            "device": f"{a.school}/{a.kind}/{a.device}", "event": a.event, "seq": a.seq,
            "category": a.category, "test": a.test, "endpoints": list(a.endpoints),
        }  # fmt: skip
        audit.append(AuditEntry("raised", a.id, "device", detail))
        return True

    def _is_resent(self, a: NewAlarm) -> bool:
        low, high = _iso(a.device_ts - self._window), _iso(a.device_ts + self._window)
        row = self.db.execute(
            "SELECT 1 FROM alarms WHERE school=? AND kind=? AND device=? AND seq=?"
            " AND event=? AND device_ts BETWEEN ? AND ? LIMIT 1",
            (a.school, a.kind.value, a.device, a.seq, a.event, low, high),
        ).fetchone()
        return row is not None

    def _restore(self, r: Restore, audit: list[AuditEntry]) -> None:
        sql = ("SELECT id FROM alarms WHERE school=? AND kind=? AND device=? AND state != 'reset'"
               " AND restored_at IS NULL")  # fmt: skip
        args: list[object] = [r.school, r.kind.value, r.device]
        if r.event is not None:
            sql, args = sql + " AND event = ?", [*args, r.event]
        ids = [row[0] for row in self.db.execute(sql, args)]
        for alarm_id in ids:
            self.db.execute("UPDATE alarms SET restored_at=? WHERE id=?", (_iso(r.at), alarm_id))
            audit.append(AuditEntry("restored", alarm_id, "device", {"at": _iso(r.at)}))

    # --- outbox ------------------------------------------------------------------------------

    async def record_attempts(self, attempts: Sequence[Attempt]) -> None:
        """Record attempts' outcomes on their delivery rows, in one transaction."""
        await self._run(self._transaction, lambda audit: self._record(attempts, audit))

    def _record(self, attempts: Sequence[Attempt], audit: list[AuditEntry]) -> None:
        now = _iso(datetime.now(UTC))
        for a in attempts:
            if a.result.ok:
                self.db.execute(
                    "UPDATE deliveries SET status='delivered', attempts=attempts+1,"
                    " last_attempt_at=?, delivered_at=?, last_error=NULL"
                    " WHERE alarm_id=? AND endpoint=?", (now, now, a.alarm_id, a.endpoint),
                )  # fmt: skip
            else:
                self.db.execute(
                    "UPDATE deliveries SET status='retrying', attempts=attempts+1,"
                    " last_attempt_at=?, last_error=?, next_attempt_at=?"
                    " WHERE alarm_id=? AND endpoint=? AND status != 'delivered'",
                    (now, a.result.detail, a.retry_at or 0.0, a.alarm_id, a.endpoint),
                )  # fmt: skip
            action = "delivered" if a.result.ok else "delivery_failed"
            detail = {"endpoint": a.endpoint, "detail": a.result.detail}
            audit.append(AuditEntry(action, a.alarm_id, "gateway", detail))

    async def due_deliveries(self, now: float, limit: int) -> list[DueDelivery]:
        """Unconfirmed deliveries due by `now`, highest priority then oldest first."""
        return await self._run(self._due, now, limit)

    def _due(self, now: float, limit: int) -> list[DueDelivery]:
        found = self.db.execute(
            "SELECT alarm_id, endpoint, attempts FROM deliveries"
            f" INDEXED BY deliveries_unconfirmed WHERE {rows.UNCONFIRMED}"
            " AND next_attempt_at <= ? ORDER BY priority DESC, rowid LIMIT ?",
            (now, limit),
        ).fetchall()
        alarms = rows.alarms_by_id(self.db, [r[0] for r in found])
        return [DueDelivery(alarms[a], endpoint, attempts) for a, endpoint, attempts in found]

    async def next_due_at(self) -> float | None:
        """When the earliest unconfirmed delivery is due."""
        return await self._run(self._next_due_at)

    def _next_due_at(self) -> float | None:
        row = self.db.execute(
            f"SELECT min(next_attempt_at) FROM deliveries WHERE {rows.UNCONFIRMED}"
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    async def escalate_overdue(
        self, now: float, deadline_s: float, backups: dict[str, str]
    ) -> list[str]:
        """Backup delivery and trouble alarm for each delivery overdue (once each)."""
        return await self._run(self._transaction, lambda audit: self._escalate(
            now - deadline_s, backups, audit))  # fmt: skip

    def _escalate(
        self, cutoff: float, backups: dict[str, str], audit: list[AuditEntry]
    ) -> list[str]:
        overdue = self.db.execute(
            f"SELECT alarm_id, endpoint, priority FROM deliveries WHERE escalated = 0"
            f" AND {rows.UNCONFIRMED} AND created_at <= ?", (cutoff,),
        ).fetchall()  # fmt: skip
        alarms = rows.alarms_by_id(self.db, [r[0] for r in overdue])
        troubles: list[str] = []
        for alarm_id, endpoint, priority in overdue:
            self.db.execute("UPDATE deliveries SET escalated = 1 WHERE alarm_id=? AND endpoint=?",
                            (alarm_id, endpoint))  # fmt: skip
            backup = backups.get(endpoint)
            if backup is not None:
                created = datetime.now(UTC).timestamp()
                self.db.execute(
                    "INSERT OR IGNORE INTO deliveries (alarm_id, endpoint, priority, created_at)"
                    " VALUES (?,?,?,?)", (alarm_id, backup, priority, created),
                )  # fmt: skip
            # One trouble alarm per undelivered alarm, however many endpoints are late.
            trouble = trouble_alarm(alarms[alarm_id], endpoint, new_alarm_id())
            if self._insert_alarm(trouble, audit):
                troubles.append(trouble.id)
            detail = {"endpoint": endpoint, "backup": backup, "trouble": trouble.id}
            audit.append(AuditEntry("escalated", alarm_id, "gateway", detail))
        return troubles

    # --- handling ----------------------------------------------------------------------------

    async def transition(self, alarm_id: str, action: str, operator: str, note: str) -> Alarm:
        """acknowledge or reset; the audit log records who, when and the note."""
        return await self._run(self._transaction, lambda audit: self._transition(
            alarm_id, action, operator, note, audit))  # fmt: skip

    def _transition(
        self, alarm_id: str, action: str, operator: str, note: str, audit: list[AuditEntry]
    ) -> Alarm:
        current = rows.alarms_by_id(self.db, [alarm_id]).get(alarm_id)
        if current is None:
            raise AlarmNotFoundError(f"no alarm {alarm_id}")
        state = next_state(current.state, action)
        prefix = "acknowledged" if action == "acknowledge" else "reset"
        self.db.execute(
            f"UPDATE alarms SET state=?, {prefix}_by=?, {prefix}_at=?, {prefix}_note=? WHERE id=?",
            (state.value, operator, _iso(datetime.now(UTC)), note, alarm_id),
        )
        audit.append(AuditEntry(prefix, alarm_id, operator, {"note": note}))
        return rows.alarms_by_id(self.db, [alarm_id])[alarm_id]

    async def audit(self, action: str, actor: str, detail: dict[str, object]) -> None:
        """Append one audit row that concerns no single alarm."""
        entry = AuditEntry(action, None, actor, dict(detail))
        await self._run(self._transaction, lambda audit: audit.append(entry))

    async def verify_audit(self) -> tuple[list[str], tuple[int, str]]:
        """Problems found in the audit chain (none when intact) and its head."""
        return await self._run(self._verify)

    def _verify(self) -> tuple[list[str], tuple[int, str]]:
        assert self._chain is not None
        return list(verify(self.db)), self._chain.head

    # --- reads -------------------------------------------------------------------------------

    async def last_test_ok(self) -> dict[str, datetime]:
        """Per school, when a test alarm was last confirmed by a linkage endpoint."""
        return await self._run(self._last_test_ok)

    def _last_test_ok(self) -> dict[str, datetime]:
        rows_ = self.db.execute(
            "SELECT a.school, max(d.delivered_at) FROM alarms a JOIN deliveries d"
            " ON d.alarm_id = a.id WHERE a.test = 1 AND d.status = 'delivered' GROUP BY a.school"
        )
        return {school: datetime.fromisoformat(at) for school, at in rows_}

    async def last_troubles(self, event: str) -> dict[str, datetime]:
        """Per device (`school/kind/device`), when a trouble of this event was last raised."""
        return await self._run(self._last_troubles, event)

    def _last_troubles(self, event: str) -> dict[str, datetime]:
        rows_ = self.db.execute(
            "SELECT school, kind, device, max(received_at) FROM alarms"
            " WHERE event = ? AND category = 'trouble' GROUP BY school, kind, device",
            (event,),
        )
        return {f"{s}/{k}/{d}": datetime.fromisoformat(at) for s, k, d, at in rows_}

    async def open_troubles(
        self, kind: Kind, event_prefix: str
    ) -> list[tuple[str, str, str, datetime]]:
        """(school, device, event, raised at) of each trouble of these devices whose event
        starts with the prefix, not yet restored nor reset (the latest per device and event)."""
        return await self._run(self._open_troubles, kind, event_prefix)

    def _open_troubles(self, kind: Kind, prefix: str) -> list[tuple[str, str, str, datetime]]:
        rows_ = self.db.execute(
            "SELECT school, device, event, max(received_at) FROM alarms WHERE kind = ?"
            " AND category = 'trouble' AND substr(event, 1, ?) = ? AND restored_at IS NULL"
            " AND state != 'reset' GROUP BY school, device, event ORDER BY school, device, event",
            (kind.value, len(prefix), prefix),
        )
        return [(s, d, e, datetime.fromisoformat(at)) for s, d, e, at in rows_]

    async def list_alarms(self, query: AlarmQuery) -> tuple[list[Alarm], int]:
        """Alarms matching the filters, oldest first, with the total before paging."""
        return await self._run(rows.list_alarms, self.db, query)

    async def get_alarm(self, alarm_id: str) -> Alarm | None:
        """One alarm with its deliveries, or None."""
        return (await self._run(rows.alarms_by_id, self.db, [alarm_id])).get(alarm_id)

    async def list_dead_letters(self, limit: int, offset: int) -> tuple[list[DeadLetter], int]:
        """Newest first."""
        return await self._run(rows.dead_letters, self.db, limit, offset)

    async def counts(self) -> dict[str, int]:
        """Figures for the progress line and /api/stats."""
        return await self._run(rows.counts, self.db)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds")
