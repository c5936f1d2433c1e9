"""One simulated police/fire receiver: its behaviour (mode, schedule, secret) and its records."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from simulators import linkage_schedule as schedule
from simulators.linkage_schedule import MODES, Window

MAX_SKEW_S = 300  # a signed request's timestamp may be this far from our clock, either way
BAD_SIGNATURE = "bad signature"
STALE_TIMESTAMP = "stale timestamp"
CONTROL_KEYS = {"mode", "slow_ms", "fail_next", "clear", "secret", "schedule", "schedule_origin"}
log = logging.getLogger("campusgw.linkage_sim")


def now_iso() -> str:
    """The UTC wall clock, to the microsecond: 2024-05-01T08:00:00.123456Z."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def verify_signature(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> str | None:
    """Why a webhook signature is refused (BAD_SIGNATURE or STALE_TIMESTAMP), None if it is good.

    The signature is `sha256=` + hex HMAC-SHA256(secret, timestamp + "." + body), the timestamp
    unix seconds as an integer.
    """
    if timestamp is None or signature is None or not (timestamp.isascii() and timestamp.isdigit()):
        return BAD_SIGNATURE
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    expected = b"sha256=" + mac.hexdigest().encode()
    if not hmac.compare_digest(expected, signature.encode("utf-8", "surrogateescape")):
        return BAD_SIGNATURE
    if abs(now - int(timestamp)) > MAX_SKEW_S:
        return STALE_TIMESTAMP
    return None


@dataclass
class Endpoint:
    """One simulated receiver: its behaviour and everything it was sent.

    `mode` is the base mode; a window of `schedule` (seconds after `schedule_origin` on `clock`)
    overrides it while it lasts. `changed` is set whenever the behaviour was changed.
    """

    name: str
    mode: str = "ok"
    slow_ms: int = 1000
    fail_next: int = 0
    record_dir: Path | None = None
    secret: str | None = None
    schedule: tuple[Window, ...] = ()
    clock: Callable[[], float] = time.monotonic
    listening: bool = True
    attempts: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    ids_by_key: dict[str, str] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False, compare=False)
    started: float = field(init=False)
    schedule_origin: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.schedule_origin = self.clock()

    def mode_now(self) -> str:
        """The mode that applies now: the current schedule window's, else the base mode."""
        return schedule.mode_at(self.schedule, self.clock() - self.schedule_origin) or self.mode

    def next_change_in(self) -> float | None:
        """Seconds until the schedule may change the mode, None when it never will."""
        t = self.clock() - self.schedule_origin
        edge = schedule.next_change(self.schedule, t)
        return None if edge is None else edge - t

    def control(self, change: dict[str, Any]) -> dict[str, Any]:
        """Apply a /_control body, all or nothing; ValueError on a bad one. Returns settings()."""
        unknown = set(change) - CONTROL_KEYS
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        mode = change.get("mode", self.mode)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        slow_ms = change.get("slow_ms", self.slow_ms)
        fail_next = change.get("fail_next", self.fail_next)
        if type(slow_ms) is not int or type(fail_next) is not int or min(slow_ms, fail_next) < 0:
            raise ValueError("slow_ms and fail_next must be integers >= 0")
        secret = change.get("secret", self.secret)
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ValueError("secret must be a non-empty string, or null for unsigned requests")
        windows, origin = self._schedule_change(change)
        self.mode, self.slow_ms, self.fail_next, self.secret = mode, slow_ms, fail_next, secret
        self.schedule, self.schedule_origin = windows, origin
        if change.get("clear"):
            self.clear()
        self.changed.set()
        return self.settings()

    def _schedule_change(self, change: dict[str, Any]) -> tuple[tuple[Window, ...], float]:
        if "schedule" not in change:
            if "schedule_origin" in change:
                raise ValueError("schedule_origin only goes with schedule")
            return self.schedule, self.schedule_origin
        origin = change.get("schedule_origin", "start")
        if origin not in ("start", "now"):
            raise ValueError('schedule_origin must be "start" (of the simulator) or "now"')
        windows = schedule.from_json(change["schedule"])
        return windows, self.clock() if origin == "now" else self.started

    def clear(self) -> None:
        """Forget every attempt, confirmation and rejection."""
        self.attempts.clear()
        self.received.clear()
        self.ids_by_key.clear()
        self.rejected.clear()

    def settings(self) -> dict[str, Any]:
        """The current behaviour; schedule times are seconds after schedule_origin_s, which
        like clock_s counts from the simulator's start."""
        return {
            "name": self.name,
            "mode": self.mode_now(),
            "base_mode": self.mode,
            "slow_ms": self.slow_ms,
            "fail_next": self.fail_next,
            "signed": self.secret is not None,
            "listening": self.listening,
            "schedule": [w.as_json() for w in self.schedule],
            "schedule_origin_s": round(self.schedule_origin - self.started, 6),
            "clock_s": round(self.clock() - self.started, 6),
        }

    def attempt(self, at: str, key: str | None, alarm: Any) -> dict[str, Any]:
        """Record a request that arrived at `at`; its `answer` is filled in when it is known."""
        entry = {
            "index": len(self.attempts),
            "at": at,
            "idempotency_key": key,
            "answer": None,
            "reason": None,
            "alarm": alarm,
        }
        self.attempts.append(entry)
        return entry

    def reject(self, entry: dict[str, Any], reason: str) -> None:
        """Count a request refused with 401 for `reason`."""
        entry["answer"], entry["reason"] = 401, reason
        self.rejected[reason] += 1
        log.info("%s rejected key=%s: %s", self.name, entry["idempotency_key"], reason)

    def settle(self, entry: dict[str, Any]) -> None:
        """Write an attempt to the record once its answer is known (or it was dropped)."""
        self._append("attempts.jsonl", entry)

    def confirm(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Record an alarm answered 2xx; a repeated key gets the id it got the first time."""
        key = str(entry["idempotency_key"])
        duplicate = key in self.ids_by_key
        received_id = self.ids_by_key.setdefault(key, f"{self.name}-{len(self.ids_by_key) + 1:06d}")
        record = {
            "index": len(self.received),
            "received_id": received_id,
            "idempotency_key": key,
            "duplicate": duplicate,
            "at": entry["at"],
            "alarm": entry["alarm"],
        }
        self.received.append(record)
        self._append("jsonl", record)
        log.info("%s received %s key=%s%s", self.name, received_id, key, " (duplicate)" * duplicate)
        return record

    def _append(self, suffix: str, record: dict[str, Any]) -> None:
        if self.record_dir is None:
            return
        with (self.record_dir / f"{self.name}.{suffix}").open("ab") as out:
            out.write(orjson.dumps(record) + b"\n")
            out.flush()
