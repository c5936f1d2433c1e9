"""Linkage through the whole gateway: signed webhooks, SIA DC-09 and test alarms."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.servers import InfluxDB, Mosquitto, free_port, spawn, stop_process
from tests.integration.conftest import Gateway, Linkage, publish_lines, wait_for
from tests.integration.test_faults import press, report, unique_keys

pytestmark = pytest.mark.integration


def test_signed_webhooks_are_verified_and_a_wrong_secret_is_never_confirmed(
    tmp_path: Path, broker: Mosquitto, influx: InfluxDB, linkage3: Linkage
) -> None:
    linkage3.control("police", secret="right")
    linkage3.control("police2", secret="right")
    gw = Gateway(tmp_path / "gw", broker, influx, linkage3, "t_signed")
    endpoints = gw.settings["linkage"]["endpoints"]
    endpoints["police"]["secret"] = "right"
    endpoints["police2"]["secret"] = "wrong"
    gw.settings["linkage"]["routes"]["police"] = ["police", "police2"]
    gw.start()
    try:
        publish_lines(broker.port, "campus/s1/button/b1/event", [press(n) for n in range(1, 6)])
        wait_for(lambda: len(unique_keys(linkage3, "police")) >= 5, 20, "signed alarms")
        rejected = wait_for(
            lambda: (a := linkage3.attempts("police2"))["rejected"].get("bad signature", 0) >= 5
            and a, 20, "rejections",
        )  # fmt: skip
        alarms = gw.get("/api/alarms")["items"]
        report("signed webhooks", sent=5, accepted=len(unique_keys(linkage3, "police")),
               wrong_secret_rejected=rejected["rejected"]["bad signature"])  # fmt: skip
        assert len(unique_keys(linkage3, "police")) == 5
        assert linkage3.received("police2")["count"] == 0
        by_endpoint = {d["endpoint"]: d for d in alarms[0]["deliveries"]}
        assert by_endpoint["police"]["status"] == "delivered"
        assert by_endpoint["police2"]["status"] == "retrying"
        assert "401" in by_endpoint["police2"]["last_error"]
    finally:
        gw.stop()


@pytest.fixture
def dc09_receiver(tmp_path: Path) -> Iterator[dict[str, Any]]:
    port, record = free_port(), tmp_path / "dc09.jsonl"
    argv = [sys.executable, "-m", "gateway", "dc09-sim", "--port", str(port), "--account",
            "1234", "--record", str(record)]  # fmt: skip
    proc = spawn(argv, tmp_path / "dc09.log")
    log = tmp_path / "dc09.log"
    wait_for(lambda: "dc09-sim:" in log.read_text(), 15, "dc09-sim listening")
    yield {"port": port, "record": record}
    stop_process(proc)


def test_alarms_reach_a_dc09_receiving_centre(
    tmp_path: Path, broker: Mosquitto, influx: InfluxDB, linkage: Linkage,
    dc09_receiver: dict[str, Any],
) -> None:  # fmt: skip
    gw = Gateway(tmp_path / "gw", broker, influx, linkage, "t_dc09")
    gw.settings["linkage"]["endpoints"]["arc"] = {
        "type": "dc09", "receivers": [f"127.0.0.1:{dc09_receiver['port']}"], "account": "1234",
    }  # fmt: skip
    gw.settings["linkage"]["routes"].update(police=["arc"], fire=["arc"])
    gw.start()
    try:
        fire = json.dumps({"seq": 99, "ts": "2026-11-23T08:00:00Z", "event": "press",
                           "category": "fire"})  # fmt: skip
        publish_lines(broker.port, "campus/s1/button/b1/event", [press(n) for n in range(1, 5)])
        publish_lines(broker.port, "campus/s1/button/b2/event", [fire])
        record: Path = dc09_receiver["record"]

        def acked() -> list[dict[str, Any]]:
            lines = record.read_text().splitlines() if record.exists() else []
            return [m for m in map(json.loads, lines) if m["msg_id"] == "SIA-DCS"]

        messages = wait_for(lambda: len(acked()) >= 5 and acked(), 20, "SIA messages")
        codes = sorted(m["code"] for m in messages)
        report("DC-09 through the gateway", sent=5, received=len(messages), codes=codes)
        assert codes == ["FA", "PA", "PA", "PA", "PA"]
        assert {m["answer"] for m in messages} == {"ACK"}
        alarms = gw.get("/api/alarms")["items"]
        assert [d["status"] for a in alarms for d in a["deliveries"]] == ["delivered"] * 5
    finally:
        gw.stop()


def test_test_alarms_are_recorded_but_never_sent_to_police(
    broker: Mosquitto, linkage: Linkage, gateway: Gateway
) -> None:
    test = json.dumps({"seq": 1, "ts": "2026-11-23T08:00:00Z", "event": "test"})
    publish_lines(broker.port, "campus/s1/button/b1/event", [test, press(2)])
    wait_for(lambda: linkage.received("police")["count"] >= 1, 20, "the real press")
    tests = gateway.get("/api/alarms?test=true")
    assert [(a["event"], a["deliveries"]) for a in tests["items"]] == [("test", [])]
    assert linkage.received("police")["count"] == 1
    assert gateway.get("/api/stats")["alarms_open"] == 1  # tests are not open emergencies
