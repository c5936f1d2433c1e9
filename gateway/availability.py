"""Is each device online, offline or unknown? From its retained availability (last will), any
message, and per-class silence timeouts; published on change only (zigbee2mqtt style)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

State = Literal["online", "offline", "unknown"]


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What coverage and the API need to know about one device right now."""

    key: str  # school/kind/device
    state: State
    since: datetime | None  # when it entered this state, if known
    last_seen: datetime | None
    last_status: dict[str, Any] | None
