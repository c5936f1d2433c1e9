"""dashboards/grafana: the dashboards are valid Grafana JSON wired to the provisioned InfluxQL
datasource, and every query reads measurements the gateway writes (tests/integration/
test_dashboards.py runs them against a real influxd)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.lineproto import change_line, quality_line, to_line
from gateway.models import EVENT_MODELS, STATUS_MODELS, Channel, DeviceMessage, Kind, Topic

GRAFANA = Path(__file__).resolve().parents[2] / "dashboards" / "grafana"
FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
NAMES = ["alarms", "camera-quality", "fleet-overview", "gateway-health", "school-devices"]
MACROS = {"timeFilter", "__interval", "interval"}


def load(path: Path) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return dashboard


def panels_of(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Panels, including those nested in rows."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels_of(panel)


def targets_of(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in panels_of(dashboard):
        yield from panel.get("targets", [])


def queries_of(dashboard: dict[str, Any]) -> list[str]:
    """Panel queries and template variable queries."""
    variables = dashboard.get("templating", {}).get("list", [])
    return [t["query"] for t in targets_of(dashboard)] + [v["query"] for v in variables]


def datasource_uid() -> str:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "influxdb.yaml").read_text())
    (source,) = doc["datasources"]
    assert source["type"] == "influxdb"
    uid: str = source["uid"]
    return uid


def written_measurements() -> set[str]:
    """The measurement of every kind of point the gateway writes, from its own line protocol."""
    now = datetime.now(UTC)
    lines = [change_line("s", "button", "d", "offline", "silent", now),
             quality_line("s", "d", {"brightness": 1.0}, [], now)]  # fmt: skip
    for kind in Kind:
        event = EVENT_MODELS[kind].model_json_schema()["properties"]["event"]["enum"][0]
        bodies = {
            Channel.EVENT: EVENT_MODELS[kind](seq=1, ts=now, event=event),
            Channel.STATUS: STATUS_MODELS[kind](seq=1, ts=now),
        }
        for channel, body in bodies.items():
            lines.append(to_line(DeviceMessage(Topic("s", kind, "d", channel), body, now)))
    return {line.decode().split(",", 1)[0] for line in lines}


def measurements_named(query: str) -> list[str]:
    """`"name"` and `/regex/` items of every FROM clause (subqueries have their own FROM)."""
    items = r'(?:"[^"]+"|/[^/]+/)'
    clauses = re.findall(rf"\bFROM\s+({items}(?:\s*,\s*{items})*)", query, re.IGNORECASE)
    return [item for clause in clauses for item in re.findall(items, clause)]


def test_the_five_dashboards_are_there() -> None:
    assert [path.stem for path in FILES] == NAMES


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_panel_ids_are_unique_and_every_query_is_raw_influxql(path: Path) -> None:
    dashboard = load(path)
    ids = Counter(panel["id"] for panel in panels_of(dashboard))
    assert ids and ids.most_common(1)[0][1] == 1, f"duplicate panel ids: {ids}"
    targets = list(targets_of(dashboard))
    assert targets
    for target in targets:
        assert target["rawQuery"] is True, target
        assert target["query"].strip(), target
    for panel in panels_of(dashboard):
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_uids_and_titles_are_unique() -> None:
    dashboards = [load(path) for path in FILES]
    assert len({d["uid"] for d in dashboards}) == len({d["title"] for d in dashboards}) == 5
    assert all(d["id"] is None and "campusgw" in d["tags"] for d in dashboards)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_everything_uses_the_provisioned_datasource(path: Path) -> None:
    uid = datasource_uid()
    dashboard = load(path)
    users = [*panels_of(dashboard), *targets_of(dashboard), *dashboard["templating"]["list"]]
    for user in users:
        if user.get("type") == "text":
            continue
        assert user["datasource"] == {"type": "influxdb", "uid": uid}, user.get("title", user)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_queries_read_only_measurements_the_gateway_writes(path: Path) -> None:
    written = written_measurements()
    assert written == {
        "availability", "camera_quality", "button_event", "button_status", "camera_event",
        "camera_status", "gate_event", "gate_status",
    }  # fmt: skip
    for query in queries_of(load(path)):
        named = measurements_named(query)
        assert named or query.startswith("SHOW TAG VALUES WITH KEY"), query
        for item in named:
            if item.startswith("/"):
                pattern = re.compile(item[1:-1])
                assert any(pattern.search(m) for m in written), f"{item} matches none: {query}"
            else:
                assert item.strip('"') in written, f"{item} is not written: {query}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_queries_use_only_defined_variables(path: Path) -> None:
    dashboard = load(path)
    defined = {v["name"] for v in dashboard["templating"]["list"]} | MACROS
    for query in queries_of(dashboard):
        used = {a or b for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", query)}
        assert used <= defined, f"undefined {used - defined} in {query}"


def test_the_readme_explains_every_panel() -> None:
    readme = (GRAFANA / "README.md").read_text(encoding="utf-8")
    missing = [
        f"{path.stem}: {panel['title']}"
        for path in FILES
        for panel in panels_of(load(path))
        if panel["type"] != "text" and f"| {panel['title']} |" not in readme
    ]
    assert not missing, missing


def test_the_provider_loads_the_mounted_dashboards_folder() -> None:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "campusgw.yaml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
