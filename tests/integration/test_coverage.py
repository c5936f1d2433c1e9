"""Registry and coverage through the real gateway and the real CLI (issue 5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulators.servers import InfluxDB, Mosquitto
from tests.integration.conftest import Gateway, Linkage, publish_lines, wait_for

pytestmark = pytest.mark.integration

SCHOOLS = """id,name,prefecture,county,type,has_dormitory,has_canteen
s1,First Primary,p1,c1,primary,false,true
s2,Second Middle,p1,c1,secondary,true,true
s3,Hill Kindergarten,p1,c2,kindergarten,false,false
"""
DEVICES = """school,kind,id,location,power,linkage
s1,button,b1,gatehouse,mains,police
s1,camera,c1,gatehouse,mains,
s1,camera,k1,canteen,mains,
s1,gate,g1,entrance,mains,
s2,button,b1,gatehouse,mains,police
s2,button,b2,dormitory_duty_room,battery,police
s2,camera,c1,perimeter,mains,
s3,camera,c1,gatehouse,mains,
"""
BAD_DEVICES = """school,kind,id,location,power,linkage
s1,button,b1,gatehouse,mains,police
s9,button,b1,gatehouse,mains,police
s1,siren,x1,gatehouse,mains,police
s1,button,b1,gatehouse,mains,police
"""


def campusgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def rate(unit: dict[str, Any], name: str) -> tuple[int, int]:
    found = unit["rates"][name]
    return found["numerator"], found["denominator"]


def test_bad_csv_rows_are_reported_with_line_numbers_and_nothing_is_imported(
    tmp_path: Path,
) -> None:
    (tmp_path / "schools.csv").write_text(SCHOOLS)
    (tmp_path / "devices.csv").write_text(BAD_DEVICES)
    store = tmp_path / "registry.db"
    result = campusgw("registry", "import", str(tmp_path / "schools.csv"),
                      str(tmp_path / "devices.csv"), "--store", str(store))  # fmt: skip
    assert result.returncode == 1
    report = result.stdout + result.stderr
    for line, words in ((3, "s9"), (4, "kind"), (5, "duplicate")):
        assert any(f"devices.csv:{line}:" in row and words in row for row in report.splitlines()), (
            line, report,
        )  # fmt: skip
    shown = campusgw("registry", "show", "--store", str(store))
    assert "0 schools" in shown.stdout + shown.stderr or shown.returncode != 0


def test_coverage_of_a_hand_made_registry_matches_hand_computed_rates(
    tmp_path: Path, broker: Mosquitto, influx: InfluxDB, linkage3: Linkage
) -> None:
    gw = Gateway(tmp_path / "gw", broker, influx, linkage3, "t_coverage")
    gw.settings["store"]["registry_path"] = str(tmp_path / "registry.db")
    gw.settings["coverage"] = {"refresh_s": 0.2}
    gw.settings["linkage"]["endpoints"]["police"]["test_url"] = linkage3.url("police", "/tests")
    (tmp_path / "schools.csv").write_text(SCHOOLS)
    (tmp_path / "devices.csv").write_text(DEVICES)
    files = [str(tmp_path / "schools.csv"), str(tmp_path / "devices.csv")]
    imported = campusgw("registry", "import", *files, "--store", str(tmp_path / "registry.db"))
    assert imported.returncode == 0, imported.stderr
    gw.start()
    try:
        status = json.dumps({"seq": 1, "ts": "2026-11-23T08:00:00Z"})
        # Online: s1 all four devices, s2 only the gatehouse button; s3 never heard.
        for key in ("s1/button/b1", "s1/camera/c1", "s1/camera/k1", "s1/gate/g1", "s2/button/b1"):
            publish_lines(broker.port, f"campus/{key}/status", [status])
        publish_lines(broker.port, "campus/s1/button/zz/status", [status])  # unregistered
        tested = campusgw("test-alarms", "--school", "s1", "--api", gw.api(""), "--wait", "20")
        assert tested.returncode == 0 and "OK" in tested.stdout, tested.stdout + tested.stderr
        wait_for(lambda: gw.get("/api/stats")["devices_online"] == 6, 10, "devices online")

        def county(unit_id: str) -> dict[str, Any]:
            units: list[dict[str, Any]] = gw.get(f"/api/coverage?level=county&id={unit_id}")[
                "units"
            ]
            return units[0]

        c1 = wait_for(lambda: (u := county("c1"))["rates"]["one_click_networked"]["numerator"]
                      == 1 and u, 20, "coverage with the test alarm")  # fmt: skip
        c2 = county("c2")
        # c1 = s1 (complete) + s2 (dormitory button offline, camera offline, no gate/canteen cam)
        assert rate(c1, "one_click_installed") == (2, 2)
        assert rate(c1, "one_click_networked") == (1, 2)  # s1 tested; s2 untested, b2 offline
        assert rate(c1, "video_installed") == (2, 2)
        assert rate(c1, "video_online") == (1, 2)
        assert rate(c1, "bright_kitchen") == (1, 2)  # s2 has a canteen but no canteen camera
        assert rate(c1, "closed_management") == (1, 2)  # s2 has no gate
        assert rate(c1, "device_online") == (5, 7)
        assert rate(c2, "one_click_installed") == (0, 1)  # s3 has no button at all
        assert rate(c2, "bright_kitchen") == (0, 0)  # no canteen: not counted
        assert rate(c2, "device_online") == (0, 1)
        never = gw.get("/api/devices?never_seen=true")["items"]
        assert sorted(f"{d['school']}/{d['device']}" for d in never) == [
            "s2/b2", "s2/c1", "s3/c1",
        ]  # fmt: skip
        unregistered = gw.get("/api/devices?registered=false")["items"]
        assert [d["device"] for d in unregistered] == ["zz"]
        table = campusgw("coverage", "--level", "county", "--api", gw.api(""))
        assert table.returncode == 0 and "c1" in table.stdout and "c2" in table.stdout
    finally:
        gw.stop()
