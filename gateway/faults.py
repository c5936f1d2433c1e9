"""Fault injection for the fault tests, switched on only by environment variables.

CAMPUSGW_FAULT_SLOW_COMMIT_S=N  every commit that holds an alarm waits N seconds first, so a
                                test can kill -9 the gateway between receive and commit.
CAMPUSGW_FAULT_READONLY_FLAG=F  while file F exists the store's connection is read-only
                                (PRAGMA query_only), so commits fail with SQLite's own
                                "attempt to write a readonly database".
Nothing here is active unless a variable is set; the gateway logs loudly when one is.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.ports import NewAlarm, NewDeadLetter, Restore

log = logging.getLogger(__name__)
SLOW_COMMIT = "CAMPUSGW_FAULT_SLOW_COMMIT_S"
READONLY_FLAG = "CAMPUSGW_FAULT_READONLY_FLAG"


class FaultyStore:
    """Wraps a SqliteAlarmStore; delays commits or makes them fail, as configured."""

    def __init__(self, store: Any, delay_s: float, readonly_flag: Path | None) -> None:
        self._store = store
        self._delay = delay_s
        self._flag = readonly_flag

    async def commit(
        self,
        alarms: Sequence[NewAlarm],
        letters: Sequence[NewDeadLetter],
        restores: Sequence[Restore] = (),
    ) -> list[str]:
        """Wait and/or turn read-only, then commit."""
        if alarms and self._delay:
            await asyncio.sleep(self._delay)
        if self._flag is not None:
            readonly = int(self._flag.exists())
            await self._store._run(self._store.db.execute, f"PRAGMA query_only = {readonly}")
        result: list[str] = await self._store.commit(alarms, letters, restores)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def wrap_store(store: Any) -> Any:
    """The store, or a fault-injecting wrapper when the environment asks for one."""
    delay, flag = os.environ.get(SLOW_COMMIT), os.environ.get(READONLY_FLAG)
    if not (delay or flag):
        return store
    log.warning("FAULT INJECTION: %s=%s %s=%s", SLOW_COMMIT, delay, READONLY_FLAG, flag)
    return FaultyStore(store, float(delay or 0), Path(flag) if flag else None)
