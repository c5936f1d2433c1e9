"""The durable telemetry spool on real parts: an InfluxDB outage plus a kill -9 of the gateway
lose no acknowledged telemetry; counts sent vs points in InfluxDB."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulators.servers import InfluxDB, Mosquitto, free_port
from tests.integration.conftest import Gateway, Linkage, publish_lines, wait_for

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def statuses(device: str, count: int) -> list[str]:
    return [
        json.dumps({"seq": n, "ts": (T0 + timedelta(milliseconds=n)).isoformat(), "battery": 80})
        for n in range(1, count + 1)
    ]


def test_influxdb_outage_and_gateway_kill9_lose_no_telemetry(
    tmp_path: Path, broker: Mosquitto, linkage: Linkage
) -> None:
    influx = InfluxDB().start(tmp_path / "influx", free_port())  # this test's own, stopped below
    gw = Gateway(tmp_path / "gw", broker, influx, linkage, "t_spool")
    try:
        gw.start()
        influx.stop()  # the outage starts
        per_device, devices = 1000, 3
        for d in range(devices):
            publish_lines(
                broker.port, f"campus/s1/button/sp{d}/status", statuses(f"sp{d}", per_device)
            )
        sent = per_device * devices
        # Every message acknowledged means every point is on disk in the spool.
        wait_for(lambda: gw.get("/api/stats")["points_pending"] >= sent, 30, "points spooled")
        spooled = gw.get("/api/stats")["points_pending"]
        gw.kill()  # kill -9 while InfluxDB is still down: nothing in memory survives
        gw.start(healthy=False)
        assert gw.get("/api/stats")["points_pending"] >= sent  # read back from the spool
        influx.start(influx.dir, influx.port)  # the outage ends
        wait_for(lambda: influx.count_points("t_spool", "button_status") >= sent, 60,
                 "points in InfluxDB")  # fmt: skip
        wait_for(lambda: gw.get("/api/stats")["points_pending"] == 0, 30, "spool drained")
        stored = influx.count_points("t_spool", "button_status")
        print(f"\nspool: sent={sent} spooled_before_kill={spooled} stored={stored}")
        assert stored == sent
    finally:
        gw.stop()
        influx.stop()
