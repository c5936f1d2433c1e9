"""The coverage rules for one school: required devices registered, heard and behaving (issue 5).

`sort_devices` looks at each device once; `evaluate` then gives one school's rates, each with
its numerator, denominator and the problems behind a shortfall. Definitions and reason codes:
docs/coverage.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

from gateway.config import CoverageSettings
from gateway.coverage_model import (
    KINDS,
    NEVER_SEEN,
    OFFLINE,
    ONLINE,
    UNKNOWN,
    DeviceCounts,
    Problem,
    Rate,
    Shortfall,
    Unit,
)
from gateway.registry import DeviceEntry, Location, Registry, School

MET = Rate(1, 1)  # one school meeting a rate; shared, like its JSON dict
NOT_COUNTED = Rate(0, 0)  # a rate that does not apply to the school (kitchen without canteen)
_KIND_INDEX = {kind: i for i, kind in enumerate(KINDS)}
_CATEGORY_INDEX = {ONLINE: 1, OFFLINE: 2, UNKNOWN: 3, NEVER_SEEN: 4}  # 0: registered


@dataclass(frozen=True, slots=True)
class Context:
    """What is the same for every school of one computation."""

    now: datetime
    test_max_age: timedelta
    local_time: str  # HH:MM in the schools' time zone, for problem details
    gates_may_be_open: bool  # now is inside one of the gate open hours


def make_context(settings: CoverageSettings, now: datetime) -> Context:
    """Fix the clock for one computation; `now` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("coverage needs a timezone-aware `now`")
    local = now.astimezone(timezone(timedelta(hours=settings.utc_offset_hours)))
    second = local.hour * 3600 + local.minute * 60 + local.second
    windows = parse_open_hours(settings.gate_open_hours)
    return Context(
        now=now,
        test_max_age=timedelta(days=settings.test_alarm_max_age_days),
        local_time=f"{local:%H:%M}",
        gates_may_be_open=any(_inside(second, window) for window in windows),
    )


def parse_open_hours(items: Sequence[str]) -> list[tuple[int, int]]:
    """ "06:30-08:30" -> (23400, 30600) seconds of the day; "22:00-06:00" wraps past midnight."""
    windows = []
    for item in items:
        start, sep, end = item.partition("-")
        if not sep:
            raise ValueError(f"gate open hours {item!r} is not HH:MM-HH:MM")
        windows.append((_seconds(start, item), _seconds(end, item)))
    return windows


def _seconds(text: str, item: str) -> int:
    hours, sep, minutes = text.strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"gate open hours {item!r} is not HH:MM-HH:MM")
    seconds = int(hours) * 3600 + int(minutes) * 60
    if int(minutes) > 59 or seconds > 86400:
        raise ValueError(f"gate open hours {item!r} has a time outside 00:00-24:00")
    return seconds


def _inside(second: int, window: tuple[int, int]) -> bool:
    start, end = window  # start included, end excluded
    return start <= second < end if start <= end else second >= start or second < end


@dataclass(slots=True)
class SchoolDevices:
    """What the rules need from one school's devices, gathered in one pass over them. Problems
    are made once per device and shared by every rate that lists them."""

    school: School
    # KINDS index * 5 + (0 registered, 1 online, 2 offline, 3 unknown, 4 never_seen)
    counts: list[int] = field(default_factory=lambda: [0] * 5 * len(KINDS))
    not_online: list[list[Problem]] = field(default_factory=lambda: [[] for _ in KINDS])
    gatehouse_buttons: int = 0
    dormitory_buttons: int = 0  # counted only when the school has a dormitory
    button_problems: list[Problem] = field(default_factory=list)  # of those buttons
    security_cameras: int = 0  # cameras outside the canteen
    canteen_cameras: int = 0
    canteen_online: int = 0
    canteen_problems: list[Problem] = field(default_factory=list)
    camera_problems: list[Problem] = field(default_factory=list)
    gates: int = 0
    gate_problems: list[Problem] = field(default_factory=list)
    quotes_clock: bool = False  # a problem's detail quotes the local time

    def count(self, key: str, kind: str, cat: str) -> Problem | None:
        """Count a device by kind and category; its problem when it is not online."""
        base = _KIND_INDEX[kind] * 5
        self.counts[base] += 1
        self.counts[base + _CATEGORY_INDEX[cat]] += 1
        if cat == ONLINE:
            return None
        problem = Problem(key, cat)
        self.not_online[base // 5].append(problem)
        return problem

    def add_button(self, key: str, device: DeviceEntry, problem: Problem | None) -> None:
        """A button counts for the one-click rates at the gatehouse or dormitory duty room."""
        if device.location == Location.GATEHOUSE:
            self.gatehouse_buttons += 1
        elif device.location == Location.DORMITORY_DUTY_ROOM and self.school.has_dormitory:
            self.dormitory_buttons += 1
        else:
            return
        if problem:
            self.button_problems.append(problem)
        if not device.linkage:
            self.button_problems.append(Problem(key, "no_linkage"))

    def add_camera(
        self, key: str, device: DeviceEntry, state: SeenState | None, problem: Problem | None
    ) -> None:
        """A camera: security or canteen; not online, not recording or keeping too little."""
        if device.location != Location.CANTEEN:
            self.security_cameras += 1
        else:
            self.canteen_cameras += 1
            if problem:
                self.canteen_problems.append(problem)
            else:
                self.canteen_online += 1
        if problem:
            self.camera_problems.append(problem)
        elif state is not None and state.last_status:
            self.camera_problems += _camera_status(key, state.last_status, self.school)

    def add_gate(
        self, key: str, state: SeenState | None, problem: Problem | None, ctx: Context
    ) -> None:
        """A gate: not online, or reporting its door open outside the open hours."""
        self.gates += 1
        if problem:
            self.gate_problems.append(problem)
        elif ctx.gates_may_be_open or state is None or not state.last_status:
            return
        elif state.last_status.get("door") == "open":
            self.quotes_clock = True
            self.gate_problems.append(
                Problem(key, "open_outside_hours", f"open at {ctx.local_time}")
            )


def _camera_status(key: str, status: Mapping[str, object], school: School) -> list[Problem]:
    problems = []
    if status.get("recording") is False:
        problems.append(Problem(key, "not_recording"))
    kept = _number(status.get("retention_days"))
    if kept is not None and kept < school.retention_days:
        detail = f"{kept:g} days kept, {school.retention_days} required"
        problems.append(Problem(key, "retention_short", detail))
    return problems


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def category(state: SeenState | None) -> str:
    """online, offline, unknown, or never_seen (no state, or unknown and never heard)."""
    if state is None:
        return NEVER_SEEN
    if state.state in (ONLINE, OFFLINE):
        return state.state
    return UNKNOWN if state.last_seen is not None else NEVER_SEEN


class SeenState(Protocol):
    """What the rules read of a device's state: a DeviceState, or the tracker's live entry."""

    @property
    def state(self) -> str: ...

    @property
    def last_seen(self) -> datetime | None: ...

    @property
    def last_status(self) -> dict[str, Any] | None: ...


def sort_devices(
    registry: Registry, states: Mapping[str, SeenState], ctx: Context
) -> dict[str, SchoolDevices]:
    """One pass over every registered device, filing what each rule needs by school."""
    schools = {school_id: SchoolDevices(school) for school_id, school in registry.schools.items()}
    for key, device in registry.devices.items():
        seen = schools.get(device.school)
        if seen is None:
            continue  # the registry validates schools; a stray device is not counted anywhere
        file_device(seen, key, device, states.get(key), ctx)
    return schools


def school_devices(
    registry: Registry, school_id: str, states: Mapping[str, SeenState], ctx: Context
) -> SchoolDevices:
    """What the rules need of one school's devices (as sort_devices files them)."""
    seen = SchoolDevices(registry.schools[school_id])
    for device in registry.by_school.get(school_id, ()):
        key = device.key
        file_device(seen, key, device, states.get(key), ctx)
    return seen


def file_device(
    seen: SchoolDevices, key: str, device: DeviceEntry, state: SeenState | None, ctx: Context
) -> None:
    """Count one device of the school and note its problems."""
    kind = device.kind  # a StrEnum: hashes and compares as its value, without .value's cost
    problem = seen.count(key, kind, category(state))
    if kind == "camera":
        seen.add_camera(key, device, state, problem)
    elif kind == "gate":
        seen.add_gate(key, state, problem, ctx)
    else:
        seen.add_button(key, device, problem)


def evaluate(
    seen: SchoolDevices,
    last_test_ok: datetime | None,
    ctx: Context,
    test_problems: list[Problem] | None = None,
) -> Unit:
    """Every rate of one school (docs/coverage.md has each definition); `test_problems`, when
    given, are test_alarm_problems(last_test_ok, ctx) computed already."""
    school = seen.school
    missing = _missing_buttons(seen)
    if test_problems is None:
        test_problems = _test_alarm(last_test_ok, ctx)
    networked = [*missing, *seen.button_problems, *test_problems]
    no_video = _no_video(seen)
    no_gate = [] if seen.gates else [Problem(None, "no_gate")]
    rates = {  # in RATES order, which aggregation relies on
        "one_click_installed": _school_rate(school, missing),
        "one_click_networked": _school_rate(school, networked),
        "video_installed": _school_rate(school, no_video),
        "video_online": _school_rate(school, [*no_video, *seen.camera_problems]),
        "bright_kitchen": _bright_kitchen(seen),
        "closed_management": _school_rate(school, [*no_gate, *seen.gate_problems]),
        **_device_rates(seen),
    }
    return Unit(
        level="school",
        id=school.id,
        name=school.name,
        prefecture=school.prefecture,
        county=school.county,
        schools=1,
        rates=rates,
        devices=_counts(seen),
    )


def _school_rate(school: School, problems: list[Problem]) -> Rate:
    if not problems:
        return MET
    return Rate(0, 1, (_shortfall(school, problems),))


def _shortfall(school: School, problems: list[Problem]) -> Shortfall:
    return Shortfall(school.id, school.name, school.county, school.prefecture, tuple(problems))


def _missing_buttons(seen: SchoolDevices) -> list[Problem]:
    problems = []
    if not seen.gatehouse_buttons:
        problems.append(Problem(None, "no_gatehouse_button"))
    if seen.school.has_dormitory and not seen.dormitory_buttons:
        problems.append(Problem(None, "no_dormitory_button"))
    return problems


def test_alarm_problems(last_test_ok: datetime | None, ctx: Context) -> list[Problem]:
    """The school's end-to-end test problem at ctx.now, if any (it ages with the clock)."""
    return _test_alarm(last_test_ok, ctx)


def _test_alarm(last_test_ok: datetime | None, ctx: Context) -> list[Problem]:
    if last_test_ok is None:
        return [Problem(None, "no_test_alarm")]
    if last_test_ok.tzinfo is None:  # a store's naive timestamps are UTC
        last_test_ok = last_test_ok.replace(tzinfo=UTC)
    age = ctx.now - last_test_ok
    if age <= ctx.test_max_age:
        return []
    detail = f"last {last_test_ok:%Y-%m-%d}, {age / timedelta(days=1):.1f} days ago"
    return [Problem(None, "test_alarm_too_old", detail)]


def _no_video(seen: SchoolDevices) -> list[Problem]:
    if seen.security_cameras:
        return []
    return [Problem(None, "no_camera", "canteen cameras only" if seen.canteen_cameras else "")]


def _bright_kitchen(seen: SchoolDevices) -> Rate:
    if not seen.school.has_canteen:
        return NOT_COUNTED
    if not seen.canteen_cameras:
        return _school_rate(seen.school, [Problem(None, "no_canteen_camera")])
    if seen.canteen_online:
        return MET
    return _school_rate(seen.school, seen.canteen_problems)


def _device_rates(seen: SchoolDevices) -> dict[str, Rate]:
    """device_online, then device_online_<kind> for each kind (DEVICE_RATES order)."""
    every = [problem for problems in seen.not_online for problem in problems]
    counts = seen.counts
    rates = {"device_online": _device_rate(seen.school, sum(counts[1::5]), sum(counts[::5]), every)}
    for i, kind in enumerate(KINDS):
        online, registered = counts[i * 5 + 1], counts[i * 5]
        rates[f"device_online_{kind}"] = _device_rate(
            seen.school, online, registered, seen.not_online[i]
        )
    return rates


def _device_rate(school: School, online: int, registered: int, problems: list[Problem]) -> Rate:
    return Rate(online, registered, (_shortfall(school, problems),) if problems else ())


def _counts(seen: SchoolDevices) -> dict[str, DeviceCounts]:
    counts = seen.counts
    total = DeviceCounts(*(sum(counts[i::5]) for i in range(5)))
    by_kind = {kind: DeviceCounts(*counts[i * 5 : i * 5 + 5]) for i, kind in enumerate(KINDS)}
    return {"all": total, **by_kind}  # DEVICE_KEYS order, which aggregation relies on
