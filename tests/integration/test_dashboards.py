"""Every Grafana panel's InfluxQL against a real influxd that the real gateway filled from the
simulators: no query may fail, and none may come back empty, since the data each one reads exists.

The device fleet and the camera simulator publish through mosquitto to the gateway; a few events
the simulators never send (a medical press, tamper ...) are published with `mosquitto_pub`.
Grafana's macros are expanded the way Grafana would (`$timeFilter`, `$__interval`), and each
template variable takes the real values its own `SHOW TAG VALUES` query answers.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from simulators.servers import InfluxDB, InfluxError, Mosquitto, spawn, stop_process
from tests.integration.conftest import Gateway, publish_lines

pytestmark = pytest.mark.integration
DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards" / "grafana" / "dashboards"
MACROS = {"timeFilter": "time > now() - 1h", "__interval": "10s", "interval": "10s"}
READY_WITHIN_S = 45.0


@dataclass(frozen=True)
class Target:
    """One panel query of one dashboard."""

    dashboard: str
    panel: str
    ref: str
    query: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}: {self.query}"


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON by file name."""
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, f"no dashboards in {DASHBOARDS}"
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in files}


def panels_of(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Panels, including those nested in rows."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels_of(panel)


def targets_of(name: str, dashboard: dict[str, Any]) -> list[Target]:
    return [
        Target(name, panel["title"], target["refId"], target["query"])
        for panel in panels_of(dashboard)
        for target in panel.get("targets", [])
    ]


def expand(query: str, variables: dict[str, str]) -> str:
    """Grafana's interpolation of `$name` / `${name}`, failing on a name it would not know."""
    values = {**MACROS, **{k: re.escape(v) for k, v in variables.items()}}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            pytest.fail(f"unknown variable ${name} in {query}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, query)


def run(influx: InfluxDB, db: str, query: str) -> list[dict[str, Any]]:
    """The series a query answers; fails the test on any error InfluxDB reports."""
    try:
        answer = influx.query(query, db)
    except InfluxError as exc:
        pytest.fail(f"{query}\n  -> {exc}")
    results = answer.get("results") or [answer]
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        pytest.fail(f"{query}\n  -> {errors}")
    return [series for result in results for series in result.get("series", [])]


def has_data(series: list[dict[str, Any]]) -> bool:
    """True when some value besides the time is set and not zero: a count filled with zeros
    over the whole range found nothing."""
    for one in series:
        columns = one["columns"]
        for row in one.get("values", []):
            if any(
                v not in (None, 0, False, "")
                for c, v in zip(columns, row, strict=True)
                if c != "time"
            ):
                return True
    return False


def choices(influx: InfluxDB, db: str, dashboard: dict[str, Any]) -> list[dict[str, str]]:
    """Every combination of template variable values, each from its own SHOW TAG VALUES query
    with the variables before it set."""
    combos: list[dict[str, str]] = [{}]
    for variable in dashboard.get("templating", {}).get("list", []):
        name, query = variable["name"], variable["query"]
        query = query if isinstance(query, str) else query["query"]
        grown = []
        for combo in combos:
            series = run(influx, db, expand(query, combo))
            values = sorted({row[1] for s in series for row in s.get("values", [])})
            grown += [{**combo, name: value} for value in values]
        combos = grown
    return combos


def empty_targets(influx: InfluxDB, db: str, pending: list[Target]) -> list[Target]:
    """The targets that still answer no data for any value of the dashboard's variables."""
    dashboards = load_dashboards()
    combos = {
        name: choices(influx, db, dashboards[name]) for name in {t.dashboard for t in pending}
    }
    still = []
    for target in pending:
        answers = [run(influx, db, expand(target.query, c)) for c in combos[target.dashboard]]
        if not any(has_data(series) for series in answers):
            still.append(target)
    return still


# --- the fleet that fills the database ----------------------------------------------------------


def extra_events(port: int) -> None:
    """Events the simulators never send, published like a device would. Each has its own ts:
    two points of one device at the same time are one point in InfluxDB."""
    by_topic = {
        "s1/button/b1/event": [{"event": "press", "category": "medical"}, {"event": "test"},
                               {"event": "tamper"}, {"event": "low_battery"}],
        "s1/gate/g1/event": [{"event": "held_open"}, {"event": "tamper"}],
        "s1/camera/c1/event": [{"event": "tamper"}, {"event": "storage_fault"}],
        # a camera without a will that falls silent: the gateway judges it offline
        "s1/camera/cx/status": [{"fps": 25.0}],
    }  # fmt: skip
    start, n = datetime.now(UTC) - timedelta(seconds=1), itertools.count()
    for topic, bodies in by_topic.items():
        lines = []
        for body in bodies:
            i = next(n)
            ts = (start + timedelta(milliseconds=i)).isoformat(timespec="milliseconds")
            lines.append(json.dumps({"seq": 1_000_000 + i, "ts": ts, **body}))
        publish_lines(port, f"campus/{topic}", lines)


@pytest.fixture
def filled(tmp_path: Path, broker: Mosquitto, gateway: Gateway) -> Iterator[Gateway]:
    """The gateway, fed by a device fleet of three schools and two cameras sending snapshots,
    one of which turns black after 6 s."""
    gateway.stop()
    gateway.configure(
        availability={"startup_grace_s": 0, "check_interval_s": 0.5, "camera_timeout_s": 3},
        video_quality={"baseline_frames": 4, "hits_to_raise": 2, "decode_reduction": 1,
                       "evidence_dir": str(tmp_path / "evidence")},
    )  # fmt: skip
    gateway.start()
    port = str(broker.port)
    fleet = spawn(
        [sys.executable, "-m", "gateway", "simulate", "--port", port, "--schools", "3",
         "--buttons", "2", "--cameras", "2", "--gates", "2", "--status-interval", "1",
         "--press-every", "0.5", "--forced-every", "1", "--video-loss-every", "1",
         "--vendor-devices", "--seed", "3", "--progress", "0"],
        tmp_path / "fleet.log",
    )  # fmt: skip
    cameras = spawn(
        [sys.executable, "-m", "gateway", "simulate", "cameras", "--port", port,
         "--schools", "1", "--school-prefix", "v", "--cameras", "2", "--interval", "0.5",
         "--status-interval", "1", "--width", "640", "--height", "360", "--light", "0.8",
         "--schedule", "v1/c2:6-600=black", "--seed", "7", "--progress", "0"],
        tmp_path / "cameras.log",
    )  # fmt: skip
    try:
        extra_events(broker.port)
        yield gateway
    finally:
        stop_process(cameras)
        stop_process(fleet)


def test_every_panel_query_runs_and_finds_the_data(influx: InfluxDB, filled: Gateway) -> None:
    pending = [t for name, d in load_dashboards().items() for t in targets_of(name, d)]
    assert len(pending) > 40  # five dashboards, most panels have several queries
    deadline = time.monotonic() + READY_WITHIN_S
    while pending and time.monotonic() < deadline:
        pending = empty_targets(influx, filled.db, pending)
        if pending:
            time.sleep(0.5)
    assert not pending, "no data for:\n" + "\n".join(map(str, pending))
