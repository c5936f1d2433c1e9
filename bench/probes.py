"""What a durable commit costs on this disk: write+fsync, and one SQLite WAL synchronous=FULL
commit, timed in the directory the gateway's store will use (so on the same file system)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from latency import percentiles

BLOCK = b"\0" * 4096


def fsync_cost(directory: Path, samples: int) -> dict[str, Any]:
    """`samples` times: write 4 KiB to a file and fsync it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    times = []
    try:
        for _ in range(samples):
            t0 = time.perf_counter()
            os.write(fd, BLOCK)
            os.fsync(fd)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return {"samples": samples, **percentiles(times)}


def sqlite_commit_cost(directory: Path, samples: int) -> dict[str, Any]:
    """`samples` one-row INSERT transactions in WAL mode with synchronous=FULL, as the store."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "commit-probe.db"
    db = sqlite3.connect(path, isolation_level=None)
    times = []
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        for i in range(samples):
            t0 = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (body) VALUES (?)", (f"row {i}" * 20,))
            db.execute("COMMIT")
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {"samples": samples, **percentiles(times)}
