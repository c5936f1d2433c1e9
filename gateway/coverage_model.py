"""The values coverage produces: problems, shortfalls, rates and per-unit results (issue 5).

Small frozen types with no behaviour beyond arithmetic; `coverage.py` computes them,
`coverage_report.py` turns them into JSON-ready dicts, CSV and terminal tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.models import Kind

Level = Literal["school", "county", "prefecture", "all"]
LEVELS: tuple[Level, ...] = ("school", "county", "prefecture", "all")

# School-level rates: a school is in the denominator 0 or 1 times, in the numerator if it meets it.
SCHOOL_RATES = (
    "one_click_installed",
    "one_click_networked",
    "video_installed",
    "video_online",
    "bright_kitchen",
    "closed_management",
)
# Device-level rates: registered devices in the denominator, online ones in the numerator.
DEVICE_RATES = (
    "device_online",
    "device_online_button",
    "device_online_camera",
    "device_online_gate",
)
RATES = SCHOOL_RATES + DEVICE_RATES

# How a registered device is heard; the four are exclusive and add up to the registered devices.
ONLINE, OFFLINE, UNKNOWN, NEVER_SEEN = "online", "offline", "unknown", "never_seen"
CATEGORIES = (ONLINE, OFFLINE, UNKNOWN, NEVER_SEEN)
KINDS = tuple(kind.value for kind in Kind)  # button, camera, gate
DEVICE_KEYS = ("all", *KINDS)  # the keys of Unit.devices, in this order


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a school misses a rate: a device (by key) or, with `device` None, the school."""

    device: str | None
    reason: str  # a stable code, listed in docs/coverage.md
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A school behind a rate, with the devices and reasons that put it there."""

    school: str
    name: str
    county: str
    prefecture: str
    problems: tuple[Problem, ...]


@dataclass(frozen=True, slots=True)
class Rate:
    """numerator / denominator, and the schools that are not in the numerator."""

    numerator: int
    denominator: int
    shortfalls: tuple[Shortfall, ...] = ()

    @property
    def rate(self) -> float | None:
        """The fraction, or None when nothing is counted (denominator 0)."""
        return self.numerator / self.denominator if self.denominator else None

    @property
    def percent(self) -> float | None:
        """Percent with one decimal, for display; 100.0 and 0.0 only when exactly so."""
        if not self.denominator:
            return None
        percent = round(100 * self.numerator / self.denominator, 1)
        if percent == 100.0 and self.numerator < self.denominator:
            return 99.9  # 4,999 of 5,000 must not read as 100%
        if percent == 0.0 and self.numerator > 0:
            return 0.1
        return percent


@dataclass(frozen=True, slots=True)
class DeviceCounts:
    """Registered devices by how they are heard (online + offline + unknown + never_seen)."""

    registered: int = 0
    online: int = 0
    offline: int = 0
    unknown: int = 0
    never_seen: int = 0


@dataclass(frozen=True, slots=True)
class Unit:
    """The rates of one school, county, prefecture, or of everything (level "all")."""

    level: Level
    id: str
    name: str
    prefecture: str | None  # the prefecture a school or county belongs to
    county: str | None  # the county a school belongs to
    schools: int
    rates: Mapping[str, Rate]  # every name in RATES
    devices: Mapping[str, DeviceCounts]  # by DEVICE_KEYS: "all", then each kind
