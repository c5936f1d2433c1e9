"""The gateway writing through the InfluxDB v2 API (influxdb-client, /api/v2/write) to a real
server that speaks it, VictoriaMetrics: every status message becomes exactly one point, also
when the server was down for a while.

VictoriaMetrics stores each field as a metric `measurement_field` (button_status_seq, ...), one
sample per point, so samples of button_status_seq count the gateway's points.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulators.servers import Mosquitto, VictoriaMetrics, free_port
from tests.integration.conftest import Gateway, Linkage, publish_lines, wait_for

pytestmark = pytest.mark.integration
# Recent device times: VictoriaMetrics drops samples older than its retention (1 month).
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
SCHOOL = "v2s1"  # only this test's devices are counted


def status(seq: int) -> str:
    ts = (T0 + timedelta(milliseconds=seq)).isoformat().replace("+00:00", "Z")
    return json.dumps({"seq": seq, "ts": ts, "battery": 50 + seq % 50, "rssi": -60})


def points(vm: VictoriaMetrics) -> int:
    return sum(
        len(series["values"])
        for series in vm.export(f'{{__name__="button_status_seq",school="{SCHOOL}"}}')
    )


def publish_statuses(broker: Mosquitto, device: str, seqs: range) -> int:
    topic = f"campus/{SCHOOL}/button/{device}/status"
    publish_lines(broker.port, topic, [status(n) for n in seqs])
    return len(seqs)


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics().start(tmp_path / "victoria-metrics", free_port())
    yield server
    server.stop()


@pytest.fixture
def gateway_v2(
    tmp_path: Path, broker: Mosquitto, victoria: VictoriaMetrics, linkage: Linkage
) -> Iterator[Gateway]:
    gw = Gateway(tmp_path / "gateway", broker, victoria, linkage, "unused")  # type: ignore[arg-type]
    # VictoriaMetrics checks neither token nor org and has no buckets: any values will do.
    gw.configure(influxdb={"api": "v2", "token": "t0ken", "org": "edu", "bucket": "campus"})
    yield gw.start()
    if gw.proc is not None and gw.proc.poll() is None:
        gw.stop()


def test_each_status_message_becomes_exactly_one_point(
    broker: Mosquitto, victoria: VictoriaMetrics, gateway_v2: Gateway
) -> None:
    sent = sum(publish_statuses(broker, f"b{d}", range(1, 101)) for d in range(1, 4))

    wait_for(lambda: points(victoria) >= sent, 30, f"{sent} points in VictoriaMetrics")
    assert points(victoria) == sent
    series = victoria.export(f'{{__name__="button_status_battery",school="{SCHOOL}"}}')
    assert {s["metric"]["device"] for s in series} == {"b1", "b2", "b3"}
    assert sorted(series[0]["values"]) == sorted(float(50 + n % 50) for n in range(1, 101))
    assert gateway_v2.health()["influxdb"]["reachable"] is True


def test_points_written_while_the_server_was_down_arrive_after_it_returns(
    broker: Mosquitto, victoria: VictoriaMetrics, gateway_v2: Gateway
) -> None:
    sent = publish_statuses(broker, "b1", range(1, 101))
    wait_for(lambda: points(victoria) == sent, 30, "the first 100 points")

    victoria.stop()
    sent += publish_statuses(broker, "b1", range(101, 301))
    wait_for(lambda: gateway_v2.get("/api/stats")["write_errors"] >= 3, 30, "3 failed writes")
    assert gateway_v2.health()["influxdb"]["reachable"] is False
    victoria.restart()

    wait_for(lambda: points(victoria) >= sent, 60, f"all {sent} points after the outage")
    assert points(victoria) == sent
    wait_for(lambda: gateway_v2.health()["influxdb"]["reachable"], 15, "healthy again")
