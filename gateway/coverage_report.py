"""Coverage results as JSON-ready dicts (for the API), CSV (for bureaus) and terminal tables."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from gateway.coverage_model import (
    CATEGORIES,
    RATES,
    DeviceCounts,
    Problem,
    Rate,
    Shortfall,
    Unit,
)

Json = dict[str, Any]
# Short column headers for the terminal table, in display order.
TABLE_RATES = {
    "one_click_installed": "1-click inst",
    "one_click_networked": "1-click net",
    "video_installed": "video inst",
    "video_online": "video online",
    "bright_kitchen": "kitchen",
    "closed_management": "closed",
    "device_online": "devices online",
}
_COUNT_FIELDS = ("registered", *CATEGORIES)


def share_views(unit: Unit, view: Json, memo: dict[int, Json]) -> None:
    """Note a school's existing shortfall dicts in `memo`, so the units that list the same
    Shortfall objects (its county, prefecture, "all") share those dicts instead of new ones."""
    rate_views = view["rates"]
    for name, rate in unit.rates.items():
        if rate.shortfalls:
            for shortfall, shortfall_view in zip(
                rate.shortfalls, rate_views[name]["shortfalls"], strict=True
            ):
                memo[id(shortfall)] = shortfall_view


def unit_dict(unit: Unit, memo: dict[int, Json] | None = None) -> Json:
    """One unit: where it sits, its rates with shortfalls, and its device counts."""
    memo = {} if memo is None else memo
    return {
        "level": unit.level,
        "id": unit.id,
        "name": unit.name,
        "prefecture": unit.prefecture,
        "county": unit.county,
        "schools": unit.schools,
        "rates": {name: rate_dict(unit.rates[name], memo) for name in RATES},
        "devices": {kind: counts_dict(counts) for kind, counts in unit.devices.items()},
    }


def rate_dict(rate: Rate, memo: dict[int, Json]) -> Json:
    """numerator, denominator, rate (None when denominator is 0), percent and shortfalls."""
    found = memo.get(id(rate))  # most schools share one Rate (and dict) per met rate
    if found is None:
        found = memo[id(rate)] = {
            "numerator": rate.numerator,
            "denominator": rate.denominator,
            "rate": rate.rate,
            "percent": rate.percent,
            "shortfalls": [_shortfall_dict(item, memo) for item in rate.shortfalls],
        }
    return found


def _shortfall_dict(shortfall: Shortfall, memo: dict[int, Json]) -> Json:
    found = memo.get(id(shortfall))
    if found is None:
        found = memo[id(shortfall)] = {
            "school": shortfall.school,
            "name": shortfall.name,
            "county": shortfall.county,
            "prefecture": shortfall.prefecture,
            "problems": [_problem_dict(problem, memo) for problem in shortfall.problems],
        }
    return found


def _problem_dict(problem: Problem, memo: dict[int, Json]) -> Json:
    # A device's "offline" is one Problem listed under several rates: one dict for all of them.
    found = memo.get(id(problem))
    if found is None:
        found = memo[id(problem)] = {
            "device": problem.device,
            "reason": problem.reason,
            "detail": problem.detail,
        }
    return found


def without_shortfalls(unit: Json) -> Json:
    """A unit dict whose rates have no "shortfalls" (a new dict; the shared one is untouched)."""
    rates = {
        name: {key: value for key, value in rate.items() if key != "shortfalls"}
        for name, rate in unit["rates"].items()
    }
    return {**unit, "rates": rates}


def counts_dict(counts: DeviceCounts) -> dict[str, int]:
    """registered, online, offline, unknown, never_seen."""
    return {name: getattr(counts, name) for name in _COUNT_FIELDS}


def csv_text(units: Iterable[Unit]) -> str:
    """One row per unit: where it is, then numerator/denominator/percent per rate, then devices."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["level", "id", "name", "prefecture", "county", "schools"]
    for name in RATES:
        header += [f"{name}_numerator", f"{name}_denominator", f"{name}_percent"]
    writer.writerow(header + [f"devices_{name}" for name in _COUNT_FIELDS])
    for unit in units:
        row: list[Any] = [unit.level, unit.id, unit.name, unit.prefecture, unit.county]
        row.append(unit.schools)
        for name in RATES:
            rate = unit.rates[name]
            row += [rate.numerator, rate.denominator, rate.percent]
        row += [getattr(unit.devices["all"], name) for name in _COUNT_FIELDS]
        writer.writerow(["" if cell is None else cell for cell in row])
    return out.getvalue()


def table_text(units: Iterable[Unit], total: Unit | None) -> str:
    """A fixed-width table: one line per unit, `percent num/den` per rate, then device counts;
    `total` (the "all" unit) closes it under a rule when given."""
    header = ["id", "schools", *TABLE_RATES.values(), "offline", "unknown", "never seen"]
    rows = [_table_row(unit) for unit in units]
    last = [_table_row(total)] if total is not None else []
    widths = [max(len(row[i]) for row in [header, *rows, *last]) for i in range(len(header))]
    lines = [_line(header, widths), _line(["-" * w for w in widths], widths)]
    lines += [_line(row, widths) for row in rows]
    if last:
        lines += [_line(["-" * w for w in widths], widths), _line(last[0], widths)]
    return "\n".join(lines) + "\n"


def _table_row(unit: Unit) -> list[str]:
    counts = unit.devices["all"]
    cells = [unit.id, str(unit.schools)]
    cells += [_cell(unit.rates[name]) for name in TABLE_RATES]
    return [*cells, str(counts.offline), str(counts.unknown), str(counts.never_seen)]


def _cell(rate: Rate) -> str:
    if rate.percent is None:
        return "n/a"
    return f"{rate.percent:5.1f}% {rate.numerator}/{rate.denominator}"


def _line(cells: list[str], widths: list[int]) -> str:
    first = cells[0].ljust(widths[0])
    rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
    return "  ".join([first, *rest]).rstrip()
