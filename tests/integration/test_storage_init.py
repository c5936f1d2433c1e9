"""`campusgw storage init` against a real influxd: retention policies and continuous queries
created once however often it runs, and downsampling queries that work on the gateway's points."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.storage.influx_init import RAW_RP, cq_name, downsample_select, rollups
from simulators.servers import InfluxDB

pytestmark = pytest.mark.integration


def storage_init(tmp_path: Path, influx: InfluxDB, db: str, *args: str) -> str:
    config = tmp_path / "campusgw.toml"
    config.write_text(f'[influxdb]\nurl = "{influx.url}"\ndatabase = "{db}"\n')
    argv = [sys.executable, "-m", "gateway", "storage", "init", "--config", str(config), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def rows(answer: dict[str, Any], name: str | None = None) -> list[list[Any]]:
    found: list[list[Any]] = []
    for series in answer["results"][0].get("series", []):
        if name is None or series.get("name") == name:
            found += series["values"]
    return found


def policies(influx: InfluxDB, db: str) -> dict[str, tuple[str, bool]]:
    answer = influx.query(f'SHOW RETENTION POLICIES ON "{db}"')
    names = [row[0] for row in rows(answer)]
    assert len(names) == len(set(names))
    return {row[0]: (row[1], row[4]) for row in rows(answer)}


def continuous_queries(influx: InfluxDB, db: str) -> list[str]:
    return [row[0] for row in rows(influx.query("SHOW CONTINUOUS QUERIES"), db)]


def test_running_twice_creates_everything_exactly_once(tmp_path: Path, influx: InfluxDB) -> None:
    db = "t_storage_init_twice"
    first = storage_init(tmp_path, influx, db)
    second = storage_init(tmp_path, influx, db)

    assert f"database {db}: created" in first and f"database {db}: exists" in second
    assert "retention policy raw (90d, default): created" in first
    assert "retention policy raw (90d, default): unchanged" in second
    assert second.count(": unchanged") == 2 + len(rollups())
    assert policies(influx, db) == {
        "autogen": ("0s", False),  # CREATE DATABASE makes it; nothing is written there
        "raw": ("2160h0m0s", True),
        "downsampled": ("17520h0m0s", False),
    }
    assert sorted(continuous_queries(influx, db)) == sorted(cq_name(r) for r in rollups())


def test_changed_settings_alter_and_replace_in_place(tmp_path: Path, influx: InfluxDB) -> None:
    db = "t_storage_init_changed"
    influx.query(f'CREATE DATABASE "{db}"')
    influx.query(
        f'CREATE CONTINUOUS QUERY "cq_button_status_5m" ON "{db}" BEGIN SELECT max("rssi") '
        f'INTO "{db}"."autogen"."old" FROM "button_status" GROUP BY time(1h), * END'
    )
    storage_init(tmp_path, influx, db)
    out = storage_init(tmp_path, influx, db, "--retention", "30d", "--downsample-retention", "52w")

    assert "retention policy raw (30d, default): altered (was 2160h0m0s, default)" in out
    assert policies(influx, db)["raw"] == ("720h0m0s", True)
    assert policies(influx, db)["downsampled"] == ("8736h0m0s", False)
    queries = {row[0]: row[1] for row in rows(influx.query("SHOW CONTINUOUS QUERIES"), db)}
    assert len(queries) == len(rollups())
    assert "mean(battery)" in queries["cq_button_status_5m"]


def test_dry_run_changes_nothing(tmp_path: Path, influx: InfluxDB) -> None:
    db = "t_storage_init_dry"
    out = storage_init(tmp_path, influx, db, "--dry-run")
    assert out.startswith(f'CREATE DATABASE "{db}";\n')
    assert db not in [row[0] for row in rows(influx.query("SHOW DATABASES"))]


def test_the_downsampling_queries_average_the_gateways_points(
    tmp_path: Path, influx: InfluxDB
) -> None:
    db = "t_storage_init_means"
    storage_init(tmp_path, influx, db)
    # Written like the gateway writes (no rp: the default policy, which is now raw).
    t0 = 1_795_420_800_000_000_000  # 2026-11-23T08:00:00Z, a 5-minute boundary
    influx.write(
        db,
        [
            f"button_status,school=s1,kind=button,device=b1 seq={n}i,battery={b},rssi={r}i,"
            f'power="battery",tamper=false {t0 + n * 60_000_000_000}'
            for n, b, r in ((0, 80.0, -60), (1, 70.0, -70), (2, 60.0, -80), (5, 50.0, -50))
        ],
    )
    counted = influx.query(f'SELECT count("seq") FROM "{RAW_RP}"."button_status"', db)
    assert rows(counted)[0][1] == 4
    window = f"time >= {t0} AND time < {t0 + 600_000_000_000}"
    for rollup in rollups():  # every CQ's body runs, on data or not
        assert "error" not in influx.query(downsample_select(db, rollup, window), db)["results"][0]
    answer = influx.query('SELECT * FROM "downsampled"."button_status"', db)
    series = answer["results"][0]["series"][0]
    got = [dict(zip(series["columns"], values, strict=True)) for values in series["values"]]
    assert [(p["messages"], p["battery"], p["rssi"], p["device"]) for p in got] == [
        (3, 70.0, -70.0, "b1"),
        (1, 50.0, -50.0, "b1"),
    ]
