"""SQLite persistence of the registry: tables of its own (registry_*) and a version counter.

The file is store.registry_path (its own, so a large import never holds the alarm store's write
lock); the tables would also sit beside the alarm store's in one file, as they are created here
with CREATE TABLE IF NOT EXISTS, apart from the alarm store's numbered migrations. Every write is
one transaction that bumps `registry_meta.version`; the gateway polls version() (one read) and
rebuilds its in-memory Registry with load() when it changed. The API is synchronous: the CLI
calls it directly, the gateway from worker threads (asyncio.to_thread); the one connection's
calls are serialised by a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from gateway.registry import Device, Registry, School

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS registry_schools (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL, prefecture TEXT NOT NULL, county TEXT NOT NULL, type TEXT NOT NULL,
    has_dormitory INTEGER NOT NULL, has_canteen INTEGER NOT NULL, retention_days INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS registry_devices (
    school TEXT NOT NULL REFERENCES registry_schools (id),
    kind TEXT NOT NULL, id TEXT NOT NULL,
    zone TEXT NOT NULL, location TEXT NOT NULL, power TEXT NOT NULL,
    install_date TEXT, linkage TEXT, name TEXT,
    PRIMARY KEY (school, kind, id)
);
CREATE TABLE IF NOT EXISTS registry_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT OR IGNORE INTO registry_meta (id, version) VALUES (1, 0);
"""
SCHOOL_COLUMNS = tuple(School.model_fields)
DEVICE_COLUMNS = tuple(Device.model_fields)


class RegistryStoreError(Exception):
    """A registry change the store refuses; nothing was written."""


class UnknownSchoolError(RegistryStoreError):
    """Devices name schools that are neither stored nor part of the same change."""


class SchoolHasDevicesError(RegistryStoreError):
    """A school with devices cannot be deleted without cascade=True."""


def _upsert(table: str, columns: Sequence[str], key: Sequence[str]) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


UPSERT_SCHOOL = _upsert("registry_schools", SCHOOL_COLUMNS, ("id",))
UPSERT_DEVICE = _upsert("registry_devices", DEVICE_COLUMNS, ("school", "kind", "id"))


class RegistryStore:
    """The stored registry in the SQLite file at path (created when missing)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        # timeout: wait (not fail) while the alarm store holds the write lock, and vice versa.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        self._db = db
        self._write(lambda: [db.execute(s) for s in SCHEMA.split(";") if s.strip()], bump=False)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> RegistryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write(self, work: Callable[[], T], bump: bool = True) -> T:
        """Run work in one write transaction; bump the version unless told not to."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work()
                if bump:
                    self._db.execute("UPDATE registry_meta SET version = version + 1")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return result

    # --- writes ----------------------------------------------------------------------------------

    def replace(self, schools: Sequence[School], devices: Sequence[Device]) -> None:
        """Make the registry exactly these schools and devices (one transaction)."""
        _check_schools(devices, {s.id for s in schools})
        school_rows, device_rows = _rows(schools, SCHOOL_COLUMNS), _rows(devices, DEVICE_COLUMNS)

        def work() -> None:
            self._db.execute("DELETE FROM registry_devices")
            self._db.execute("DELETE FROM registry_schools")
            self._db.executemany(UPSERT_SCHOOL, school_rows)
            self._db.executemany(UPSERT_DEVICE, device_rows)

        self._write(work)

    def merge(self, schools: Sequence[School], devices: Sequence[Device]) -> None:
        """Add these schools and devices, replacing stored ones with the same id or key."""
        school_rows, device_rows = _rows(schools, SCHOOL_COLUMNS), _rows(devices, DEVICE_COLUMNS)

        def work() -> None:
            _check_schools(devices, {s.id for s in schools} | self._school_ids())
            self._db.executemany(UPSERT_SCHOOL, school_rows)
            self._db.executemany(UPSERT_DEVICE, device_rows)

        self._write(work)

    def upsert_school(self, school: School) -> None:
        """Add or replace one school."""
        self.merge([school], [])

    def upsert_device(self, device: Device) -> None:
        """Add or replace one device; its school must be stored."""
        self.merge([], [device])

    def delete_school(self, school_id: str, cascade: bool = False) -> bool:
        """Delete a school (and its devices when cascade); False when there was none."""

        def work() -> bool:
            sql = "SELECT count(*) FROM registry_devices WHERE school = ?"
            devices = int(self._db.execute(sql, (school_id,)).fetchone()[0])
            if devices and not cascade:
                raise SchoolHasDevicesError(
                    f"school {school_id} has {devices} device(s); delete them first or cascade"
                )
            self._db.execute("DELETE FROM registry_devices WHERE school = ?", (school_id,))
            deleted = self._db.execute("DELETE FROM registry_schools WHERE id = ?", (school_id,))
            return deleted.rowcount > 0

        return self._write_if_changed(work)

    def delete_device(self, school: str, kind: str, device_id: str) -> bool:
        """Delete one device; False when there was none."""
        sql = "DELETE FROM registry_devices WHERE school = ? AND kind = ? AND id = ?"
        return self._write_if_changed(
            lambda: self._db.execute(sql, (school, str(kind), device_id)).rowcount > 0
        )

    def _write_if_changed(self, work: Callable[[], bool]) -> bool:
        """Run work in a transaction; bump the version only when it changed something."""

        def then_bump() -> bool:
            changed = work()
            if changed:
                self._db.execute("UPDATE registry_meta SET version = version + 1")
            return changed

        return self._write(then_bump, bump=False)

    # --- reads -----------------------------------------------------------------------------------

    def version(self) -> int:
        """The registry's version: it changes with every write (cheap; polled by the gateway)."""
        with self._lock:
            return int(self._db.execute("SELECT version FROM registry_meta").fetchone()[0])

    def load(self) -> Registry:
        """The whole registry, indexed, read in one consistent snapshot."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                version = int(self._db.execute("SELECT version FROM registry_meta").fetchone()[0])
                schools = self._read("registry_schools", SCHOOL_COLUMNS)
                devices = self._read("registry_devices", DEVICE_COLUMNS)
            finally:
                self._db.execute("COMMIT")
        return Registry.build(
            [School.model_validate(s) for s in schools],
            [Device.model_validate(d) for d in devices],
            version,
        )

    def school_ids(self) -> set[str]:
        """Ids of the stored schools (what devices of a merge may refer to)."""
        with self._lock:
            return self._school_ids()

    def _school_ids(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT id FROM registry_schools")}

    def _read(self, table: str, columns: Sequence[str]) -> list[dict[str, Any]]:
        # Import order (rowid), so an export lists schools and devices as they were imported.
        cursor = self._db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid")
        # A NULL is a field left out: the model's default applies.
        return [
            {c: v for c, v in zip(columns, row, strict=True) if v is not None} for row in cursor
        ]


def _rows(records: Iterable[BaseModel], columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """SQLite values: enums as their text, dates ISO 8601, booleans 0/1."""
    return [tuple(_sql(getattr(r, c)) for c in columns) for r in records]


def _sql(value: Any) -> Any:
    if value is None or isinstance(value, int | float | str):
        return str(value) if isinstance(value, str) else value  # StrEnum -> plain str
    return value.isoformat()  # date


def _check_schools(devices: Iterable[Device], school_ids: set[str]) -> None:
    unknown = sorted({d.school for d in devices} - school_ids)
    if unknown:
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise UnknownSchoolError(f"devices name unknown schools: {', '.join(unknown[:10])}{more}")
