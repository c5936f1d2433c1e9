"""The hash-chained audit log: every alarm transition and delivery attempt, append-only.

Each row's hash is SHA-256 over the previous row's hash and the row's own fields, so changing or
deleting any row breaks the chain from there on; `campusgw audit verify` walks it. (Cutting rows
off the end leaves a valid shorter chain: compare the head hash with one kept elsewhere.)
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One thing that happened to an alarm or an endpoint."""

    action: str
    alarm_id: str | None
    actor: str
    detail: dict[str, Any]


def row_hash(prev: str, seq: int, at: str, entry: AuditEntry, detail_json: str) -> str:
    """SHA-256 (hex) of the previous hash and this row's fields."""
    material = orjson.dumps([prev, seq, at, entry.action, entry.alarm_id, entry.actor, detail_json])
    return hashlib.sha256(material).hexdigest()


class AuditChain:
    """Appends entries inside the caller's transaction (store thread only)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        self._seq, self._head = (int(row[0]), str(row[1])) if row else (0, GENESIS)

    @property
    def head(self) -> tuple[int, str]:
        """(sequence, hash) of the last row."""
        return self._seq, self._head

    def append(self, entries: list[AuditEntry]) -> None:
        """Add rows; call inside an open transaction, and `rollback` if it aborts."""
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        rows = []
        for entry in entries:
            detail_json = orjson.dumps(entry.detail, option=orjson.OPT_SORT_KEYS).decode()
            seq = self._seq + 1
            digest = row_hash(self._head, seq, at, entry, detail_json)
            rows.append((seq, at, entry.action, entry.alarm_id, entry.actor, detail_json,
                         self._head, digest))  # fmt: skip
            self._seq, self._head = seq, digest
        self._db.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?)", rows)

    def reload(self) -> None:
        """Re-read the head after a rolled-back transaction."""
        self.__init__(self._db)  # type: ignore[misc]


def verify(db: sqlite3.Connection) -> Iterator[str]:
    """Yield one problem per broken row (nothing when the chain is intact)."""
    prev, expected_seq = GENESIS, 1
    rows = db.execute("SELECT seq, at, action, alarm_id, actor, detail, prev, hash FROM audit"
                      " ORDER BY seq")  # fmt: skip
    for seq, at, action, alarm_id, actor, detail, stored_prev, stored_hash in rows:
        if seq != expected_seq:
            yield f"row {expected_seq}: missing (next row is {seq})"
        if stored_prev != prev:
            yield f"row {seq}: prev hash does not match row {seq - 1}"
        entry = AuditEntry(action, alarm_id, actor, {})
        if row_hash(stored_prev, seq, at, entry, detail) != stored_hash:
            yield f"row {seq}: contents do not match its hash (changed)"
        prev, expected_seq = stored_hash, seq + 1
