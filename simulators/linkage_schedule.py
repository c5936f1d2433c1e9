"""Fault schedules of the linkage simulator: which mode an endpoint is in, and when.

A schedule is a few windows `START-END=MODE` in seconds after its origin (the simulator's
start, or a /_control request); outside every window the endpoint's base mode applies.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MODES = ("ok", "error", "timeout", "slow", "drop", "refuse")

_WINDOW = re.compile(r"(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)=([a-z_]+)")


@dataclass(frozen=True)
class Window:
    """From `start` (included) to `end` (excluded) seconds after the origin, `mode` applies."""

    start: float
    end: float
    mode: str

    def as_json(self) -> dict[str, Any]:
        """The window as /_control takes it."""
        return {"start": self.start, "end": self.end, "mode": self.mode}


def parse_spec(spec: str, modes: Sequence[str] = MODES) -> tuple[Window, ...]:
    """Windows from `0-20=error,20-40=timeout`; ValueError saying what is wrong.

    `modes` are the ones the schedule may name (the DC-09 receiver has its own)."""
    windows = []
    for item in spec.split(","):
        match = _WINDOW.fullmatch(item.strip())
        if match is None:
            raise ValueError(f"{item!r} is not START-END=MODE such as 0-20=error")
        start, end, mode = match.groups()
        windows.append(Window(float(start), float(end), mode))
    return checked(windows, modes)


def from_json(items: Any) -> tuple[Window, ...]:
    """Windows from `[{"start": 0, "end": 20, "mode": "error"}]`; null or [] is no schedule."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ValueError("schedule must be a list of {start, end, mode}")
    windows = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"start", "end", "mode"}:
            raise ValueError(f"schedule item {item!r} must have exactly start, end and mode")
        start, end = _seconds(item["start"]), _seconds(item["end"])
        windows.append(Window(start, end, str(item["mode"])))
    return checked(windows)


def _seconds(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"schedule times must be numbers >= 0, got {value!r}")
    return float(value)


def checked(windows: Sequence[Window], modes: Sequence[str] = MODES) -> tuple[Window, ...]:
    """The windows sorted by start; ValueError on an unknown mode, an empty or overlapping one."""
    ordered = sorted(windows, key=lambda w: w.start)
    for window in ordered:
        if window.mode not in modes:
            raise ValueError(f"mode {window.mode!r} is not one of {', '.join(modes)}")
        if window.end <= window.start:
            raise ValueError(f"window {_text(window)} ends before it starts")
    for before, after in itertools.pairwise(ordered):
        if after.start < before.end:
            raise ValueError(f"windows {_text(before)} and {_text(after)} overlap")
    return tuple(ordered)


def _text(window: Window) -> str:
    return f"{window.start:g}-{window.end:g}={window.mode}"


def mode_at(windows: Sequence[Window], t: float) -> str | None:
    """The mode of the window holding t seconds after the origin, None outside every window."""
    for window in windows:
        if window.start <= t < window.end:
            return window.mode
    return None


def next_change(windows: Sequence[Window], t: float) -> float | None:
    """The first window start or end after t, None when nothing changes any more."""
    edges = [edge for w in windows for edge in (w.start, w.end) if edge > t]
    return min(edges, default=None)
