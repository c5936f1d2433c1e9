"""Coverage rates per school, county, prefecture and overall: what the bureaus report (issue 5).

The registry says which devices should exist, availability says which are heard; `compute`
compares the two once per change and precomputes every unit's result, so the API and the CLI
only look results up. Each rate's definition is in docs/coverage.md.
"""

from __future__ import annotations

import gc
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.config import CoverageSettings
from gateway.coverage_model import (
    CATEGORIES,
    DEVICE_KEYS,
    DEVICE_RATES,
    LEVELS,
    RATES,
    SCHOOL_RATES,
    DeviceCounts,
    Level,
    Problem,
    Rate,
    Shortfall,
    Unit,
)
from gateway.coverage_report import (
    Json,
    csv_text,
    share_views,
    table_text,
    unit_dict,
    without_shortfalls,
)
from gateway.coverage_rules import (
    Context,
    SeenState,
    evaluate,
    make_context,
    school_devices,
    test_alarm_problems,
)
from gateway.registry import Registry

__all__ = [
    "CATEGORIES",
    "DEVICE_RATES",
    "LEVELS",
    "RATES",
    "SCHOOL_RATES",
    "Coverage",
    "CoverageKeeper",
    "DeviceCounts",
    "Level",
    "Problem",
    "Rate",
    "Shortfall",
    "Unit",
    "compute",
]


@dataclass(frozen=True, slots=True)
class Coverage:
    """Every unit's rates at one moment. Read-only: `level` hands out shared dicts."""

    computed_at: datetime
    registry_version: int
    units: Mapping[Level, Mapping[str, Unit]]  # level -> unit id -> unit, ids sorted
    warnings: tuple[str, ...] = ()
    views: Mapping[Level, Mapping[str, dict[str, Any]]] = field(default_factory=dict, repr=False)

    def unit(self, level: Level, unit_id: str | None = None) -> Unit:
        """One unit; `unit_id` may be omitted for "all". KeyError when there is no such unit."""
        return self.units[_check(level)][_unit_id(level, unit_id)]

    def level(
        self, level: Level, id: str | None = None, *, shortfalls: bool = True
    ) -> dict[str, Any]:
        """{"level", "computed_at", "registry_version", "warnings", "units": [unit dicts]}: one
        unit when `id` is given (KeyError if unknown), else every unit of the level by id.
        The unit dicts are precomputed and shared: serialize them, do not change them.
        `shortfalls=False` leaves out the schools and devices behind each rate (a summary)."""
        views = self.views[_check(level)]
        if id is None and level != "all":
            chosen = list(views.values())
        else:
            chosen = [views[_unit_id(level, id)]]
        if not shortfalls:
            chosen = [without_shortfalls(unit) for unit in chosen]
        return {
            "level": level,
            "computed_at": self.computed_at.isoformat(),
            "registry_version": self.registry_version,
            "warnings": list(self.warnings),
            "units": chosen,
        }

    def to_csv(self, level: Level) -> str:
        """One row per unit of the level, numerator/denominator/percent columns per rate."""
        return csv_text(self.units[_check(level)].values())

    def table(self, level: Level) -> str:
        """A fixed-width table of the level's units, closed by the overall line."""
        total = None if level == "all" else self.units["all"]["all"]
        return table_text(self.units[_check(level)].values(), total)


def _check(level: str) -> Level:
    for known in LEVELS:
        if level == known:
            return known
    raise ValueError(f"unknown coverage level {level!r}; levels: {', '.join(LEVELS)}")


def _unit_id(level: Level, unit_id: str | None) -> str:
    if level == "all" and unit_id is None:
        return "all"
    if unit_id is None:
        raise KeyError(f"a {level} id is needed")
    return unit_id


def compute(
    registry: Registry,
    states: Mapping[str, SeenState],
    last_test_ok: Mapping[str, datetime],
    settings: CoverageSettings,
    now: datetime,
) -> Coverage:
    """Rates of every school, county, prefecture and overall.

    `states` by device key (school/kind/device); `last_test_ok` by school id: when the school's
    last successful end-to-end test alarm was confirmed. Pure: no I/O, no clock but `now`
    (timezone-aware).
    """
    return CoverageKeeper(settings).compute(registry, states, None, last_test_ok, now)


class CoverageKeeper:
    """Computes the rates again after a change, evaluating only the schools that changed.

    A school's rates depend on its registry entries, its devices' states and the status fields
    the rules read (recording, retention, door), its last end-to-end test, and on the clock
    through the test's age and the gate open hours. The caller names the schools whose devices
    changed (`dirty`, from AvailabilityTracker.take_dirty); the test age and the gate problems
    that quote the local time are checked here every time. Every school is evaluated again on
    the first run, when the registry version changes, when an open-hours window starts or ends,
    when `dirty` is None, and at least every `full_every_s` (a safety net against a change
    the tracker did not mark). Results are the same as a full computation's (tested).

    Not thread-safe: one keeper, one caller at a time (the gateway's coverage task).
    """

    def __init__(self, settings: CoverageSettings, full_every_s: float = 600.0) -> None:
        self._settings = settings
        self._full_every_s = full_every_s
        self._version: int | None = None
        self._gates_open: bool | None = None
        self._local_time = ""
        self._full_at: datetime | None = None
        self._order: list[str] = []  # school ids, sorted
        self._units: dict[str, Unit] = {}
        self._views: dict[str, Json] = {}
        self._tests: dict[str, list[Problem]] = {}
        self._clocked: set[str] = set()  # schools whose problems quote the local time
        self.evaluated = 0  # schools evaluated by the last call
        self.full = False  # whether the last call evaluated every school

    def compute(
        self,
        registry: Registry,
        states: Mapping[str, SeenState],
        dirty: Collection[str] | None,
        last_test_ok: Mapping[str, datetime],
        now: datetime,
    ) -> Coverage:
        """The rates now; `dirty`: schools whose devices changed since the last call."""
        with _gc_paused():
            ctx = make_context(self._settings, now)
            tests = {
                school_id: test_alarm_problems(last_test_ok.get(school_id), ctx)
                for school_id in registry.schools
            }
            self.full = self._must_do_all(registry, ctx, dirty)
            if self.full:
                self._order, self._units, self._views = sorted(registry.schools), {}, {}
                self._clocked, self._full_at = set(), now
                todo: Collection[str] = self._order
            else:
                assert dirty is not None
                todo = {s for s in dirty if s in registry.schools}
                todo |= {s for s, problems in tests.items() if problems != self._tests.get(s)}
                if ctx.local_time != self._local_time:
                    todo |= self._clocked
            self._version, self._gates_open, self._local_time = (
                registry.version, ctx.gates_may_be_open, ctx.local_time,
            )  # fmt: skip
            self._tests = tests
            memo: dict[int, Json] = {}
            for school_id in todo:
                seen = school_devices(registry, school_id, states, ctx)
                unit = evaluate(seen, last_test_ok.get(school_id), ctx, tests[school_id])
                self._units[school_id] = unit
                self._views[school_id] = unit_dict(unit, memo)
                if seen.quotes_clock:
                    self._clocked.add(school_id)
                else:
                    self._clocked.discard(school_id)
            self.evaluated = len(todo)
            return self._assemble(registry, ctx, memo)

    def _must_do_all(self, registry: Registry, ctx: Context, dirty: Collection[str] | None) -> bool:
        return (
            dirty is None
            or self._full_at is None
            or registry.version != self._version
            or ctx.gates_may_be_open != self._gates_open
            or (ctx.now - self._full_at).total_seconds() >= self._full_every_s
        )

    def _assemble(self, registry: Registry, ctx: Context, memo: dict[int, Json]) -> Coverage:
        tallies = _Tallies()
        schools: dict[str, Unit] = {}
        school_views: dict[str, Json] = {}
        for school_id in self._order:
            unit = schools[school_id] = self._units[school_id]
            view = school_views[school_id] = self._views[school_id]
            tallies.add(unit)
            share_views(unit, view, memo)  # aggregates reuse the schools' shortfall dicts
        upper = tallies.freeze()
        views: dict[Level, dict[str, Json]] = {"school": school_views}
        for level, units in upper.items():
            views[level] = {uid: unit_dict(unit, memo) for uid, unit in units.items()}
        return Coverage(
            computed_at=ctx.now,
            registry_version=registry.version,
            units={"school": schools, **upper},
            warnings=tuple(tallies.warnings),
            views=views,
        )


@contextmanager
def _gc_paused() -> Iterator[None]:
    # compute allocates some 300,000 small acyclic objects for 100,000 devices; the cyclic
    # collector would walk the whole heap once or twice meanwhile (0.3 s measured) and find
    # nothing. Reference counting still frees everything; the collector resumes afterwards.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(slots=True)
class _Tally:
    """Running sums of one county, prefecture or "all"; rates by index in RATES."""

    level: Level
    id: str
    prefecture: str | None
    schools: int = 0
    numerators: list[int] = field(default_factory=lambda: [0] * len(RATES))
    denominators: list[int] = field(default_factory=lambda: [0] * len(RATES))
    shortfalls: list[list[Shortfall]] = field(default_factory=lambda: [[] for _ in RATES])
    devices: list[list[int]] = field(default_factory=lambda: [[0] * 5 for _ in DEVICE_KEYS])

    def add(self, unit: Unit) -> None:
        """Count one school in (its rates in RATES order, devices in DEVICE_KEYS order)."""
        self.schools += 1
        numerators, denominators, shortfalls = self.numerators, self.denominators, self.shortfalls
        for i, rate in enumerate(unit.rates.values()):
            numerators[i] += rate.numerator
            denominators[i] += rate.denominator
            if rate.shortfalls:
                shortfalls[i] += rate.shortfalls
        for sums, counts in zip(self.devices, unit.devices.values(), strict=True):
            sums[0] += counts.registered
            sums[1] += counts.online
            sums[2] += counts.offline
            sums[3] += counts.unknown
            sums[4] += counts.never_seen

    def merge(self, other: _Tally) -> None:
        """Add another tally's sums (a county's into its prefecture, ...)."""
        self.schools += other.schools
        for i in range(len(RATES)):
            self.numerators[i] += other.numerators[i]
            self.denominators[i] += other.denominators[i]
            self.shortfalls[i] += other.shortfalls[i]
        for sums, more in zip(self.devices, other.devices, strict=True):
            for i, value in enumerate(more):
                sums[i] += value

    def freeze(self) -> Unit:
        """The finished unit."""
        rates = {
            name: Rate(self.numerators[i], self.denominators[i], tuple(self.shortfalls[i]))
            for i, name in enumerate(RATES)
        }
        devices = {
            key: DeviceCounts(*sums) for key, sums in zip(DEVICE_KEYS, self.devices, strict=True)
        }
        county = self.id if self.level == "county" else None
        return Unit(
            self.level, self.id, self.id, self.prefecture, county, self.schools, rates, devices
        )


class _Tallies:
    """Sums per (prefecture, county) filled school by school, then merged upwards."""

    def __init__(self) -> None:
        self.pairs: dict[tuple[str, str], _Tally] = {}
        self.warnings: list[str] = []

    def add(self, unit: Unit) -> None:
        """Count one school into its (prefecture, county)."""
        pair = (unit.prefecture or "", unit.county or "")
        tally = self.pairs.get(pair)
        if tally is None:
            tally = self.pairs[pair] = _Tally("county", pair[1], pair[0])
        tally.add(unit)

    def freeze(self) -> dict[Level, dict[str, Unit]]:
        """Finished county, prefecture and overall units, ids sorted; shortfalls are listed by
        prefecture, county, then school id."""
        counties: dict[str, _Tally] = {}
        prefectures: dict[str, _Tally] = {}
        total = _Tally("all", "all", None)
        for prefecture, county in sorted(self.pairs):
            pair = self.pairs[prefecture, county]
            if county in counties:
                self.warnings.append(
                    f"county {county!r} is in prefectures {counties[county].prefecture!r} and "
                    f"{prefecture!r}; its county figures add both"
                )
            counties.setdefault(county, _Tally("county", county, prefecture)).merge(pair)
            prefectures.setdefault(prefecture, _Tally("prefecture", prefecture, None)).merge(pair)
            total.merge(pair)
        return {
            "county": {cid: counties[cid].freeze() for cid in sorted(counties)},
            "prefecture": {pid: tally.freeze() for pid, tally in prefectures.items()},
            "all": {"all": total.freeze()},
        }
