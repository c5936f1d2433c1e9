"""Reading the alarm store: SQL rows -> Alarm records (store thread only)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from gateway.models import Alarm, AlarmState, DeadLetter, Delivery, DeliveryStatus, Kind
from gateway.ports import AlarmQuery

UNCONFIRMED = "status IN ('pending', 'retrying')"
ALARM_COLUMNS = (
    "id, school, kind, device, event, category, seq, device_ts, received_at, test, state,"
    " acknowledged_by, acknowledged_at, acknowledged_note, reset_by, reset_at, reset_note,"
    " restored_at, related_alarm_id, evidence"
)


def alarms_by_id(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, Alarm]:
    """Alarms with their deliveries, in two queries whatever the number of ids."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    deliveries: dict[str, list[Delivery]] = {}
    for row in db.execute(
        "SELECT alarm_id, endpoint, status, attempts, last_error, last_attempt_at, delivered_at"
        f" FROM deliveries WHERE alarm_id IN ({marks}) ORDER BY endpoint",
        list(ids),
    ):
        deliveries.setdefault(row[0], []).append(
            Delivery(endpoint=row[1], status=DeliveryStatus(row[2]), attempts=row[3],
                     last_error=row[4], last_attempt_at=row[5], delivered_at=row[6])
        )  # fmt: skip
    rows = db.execute(f"SELECT {ALARM_COLUMNS} FROM alarms WHERE id IN ({marks})", list(ids))
    return {row[0]: _alarm(row, deliveries.get(row[0], [])) for row in rows}


def _alarm(row: Sequence[object], deliveries: list[Delivery]) -> Alarm:
    names = [name.strip() for name in ALARM_COLUMNS.split(",")]
    values = dict(zip(names, row, strict=True))
    values["kind"] = Kind(str(values["kind"]))
    values["state"] = AlarmState(str(values["state"]))
    values["test"] = bool(values["test"])
    return Alarm.model_validate({**values, "deliveries": tuple(deliveries)})


def list_alarms(db: sqlite3.Connection, q: AlarmQuery) -> tuple[list[Alarm], int]:
    """Alarms matching the filters, oldest first, with the total before paging."""
    where: list[str] = []
    args: list[object] = []
    for column, value in (("school", q.school), ("device", q.device), ("state", q.state)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if q.open_only:
        where.append("state != 'reset'")
    if q.test is not None:
        where.append("test = ?")
        args.append(int(q.test))
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    total = db.execute(f"SELECT count(*) FROM alarms{clause}", args).fetchone()[0]
    ids = [row[0] for row in db.execute(
        f"SELECT id FROM alarms{clause} ORDER BY received_at, rowid LIMIT ? OFFSET ?",
        [*args, q.limit, q.offset],
    )]  # fmt: skip
    found = alarms_by_id(db, ids)
    return [found[i] for i in ids], total


def dead_letters(db: sqlite3.Connection, limit: int, offset: int) -> tuple[list[DeadLetter], int]:
    """Newest first."""
    total = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    rows = db.execute(
        "SELECT id, topic, payload, reason, received_at FROM dead_letters"
        " ORDER BY id DESC LIMIT ? OFFSET ?",
        (limit, offset),
    ).fetchall()
    letters = [
        DeadLetter(id=r[0], topic=r[1], payload=r[2], reason=r[3], received_at=r[4]) for r in rows
    ]
    return letters, total


def counts(db: sqlite3.Connection) -> dict[str, int]:
    """Figures for the progress line and /api/stats, in time that grows with what is open or
    pending, not with the history (totals come from store_counts, kept by triggers)."""

    def one(sql: str) -> int:
        return int(db.execute(sql).fetchone()[0])

    alarms, letters, delivered = db.execute(
        "SELECT alarms, dead_letters, delivered_alarms FROM store_counts"
    ).fetchone()
    # `+status`: the subquery must use the (alarm_id, endpoint) key, not the status index.
    delivered_but_pending = one(
        f"SELECT count(DISTINCT alarm_id) FROM deliveries AS d WHERE {UNCONFIRMED} AND EXISTS "
        "(SELECT 1 FROM deliveries WHERE alarm_id = d.alarm_id AND +status = 'delivered')"
    )
    return {
        "alarms_total": int(alarms),
        "alarms_open": one("SELECT count(*) FROM alarms WHERE state != 'reset' AND test = 0"),
        "alarms_forwarded": int(delivered) - delivered_but_pending,
        "deliveries_pending": one(f"SELECT count(*) FROM deliveries WHERE {UNCONFIRMED}"),
        "dead_letters": int(letters),
    }
