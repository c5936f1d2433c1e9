"""Availability on real mosquitto: silence, last wills, broker restarts (issue 5)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from simulators.servers import InfluxDB, Mosquitto, spawn, stop_process
from tests.integration.conftest import Gateway, Linkage, publish_lines, wait_for

pytestmark = pytest.mark.integration
FAST = {"mains_timeout_s": 1.5, "gate_timeout_s": 1.5, "camera_timeout_s": 1.5,
        "battery_timeout_s": 1.5, "check_interval_s": 0.1, "startup_grace_s": 0}  # fmt: skip


def state_of(gw: Gateway, key: str) -> str | None:
    school, kind, device = key.split("/")
    items = gw.get(f"/api/devices?school={school}&kind={kind}")["items"]
    return next((d["availability"] for d in items if d["device"] == device), None)


def retained(broker: Mosquitto, topic: str) -> str:
    """The retained message on a topic, read by the real mosquitto_sub."""
    out = subprocess.run(
        ["mosquitto_sub", "-p", str(broker.port), "-t", topic, "-C", "1", "-W", "5"],
        capture_output=True, check=False, timeout=10,
    )  # fmt: skip
    return out.stdout.decode().strip()


def stays(predicate: Callable[[], bool], seconds: float) -> bool:
    """True if predicate holds at every poll for `seconds` (checking that nothing happens)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(0.1)
    return True


def test_silent_device_goes_offline_after_its_timeout_and_raises_one_trouble(
    broker: Mosquitto, influx: InfluxDB, gateway: Gateway
) -> None:
    gateway.stop()
    gateway.configure(availability=FAST)
    gateway.start()
    body = json.dumps({"seq": 1, "ts": "2026-11-23T08:00:00Z", "battery": 90.0})
    publish_lines(broker.port, "campus/s1/button/b1/status", [body])
    wait_for(lambda: state_of(gateway, "s1/button/b1") == "online", 10, "online")
    started = time.monotonic()
    wait_for(lambda: state_of(gateway, "s1/button/b1") == "offline", 10, "offline by silence")
    silent_for = time.monotonic() - started
    assert 1.0 <= silent_for <= 5.0, silent_for
    assert json.loads(retained(broker, "campus/s1/button/b1/availability")) == {
        "state": "offline", "by": "gateway",
    }  # fmt: skip
    troubles = gateway.get("/api/alarms?open=true")["items"]
    assert [(a["device"], a["category"], a["event"]) for a in troubles] == [
        ("b1", "trouble", "offline")
    ]

    def judged() -> list[list[str]]:
        answer = influx.query('SELECT "state", "source" FROM "availability"', gateway.db)
        series = answer["results"][0].get("series") or [{"values": []}]
        return [v[1:] for v in series[0]["values"]]

    wait_for(lambda: len(judged()) >= 2, 10, "availability points")
    assert judged() == [["online", "gateway"], ["offline", "gateway"]]


def test_last_will_marks_offline_at_once(
    tmp_path: Path, broker: Mosquitto, gateway: Gateway
) -> None:
    topic = "campus/s1/button/w1/availability"
    device = spawn(
        ["mosquitto_sub", "-p", str(broker.port), "-i", "device-w1", "-t", "campus/none",
         "--will-topic", topic, "--will-payload", "offline", "--will-retain", "--will-qos", "1"],
        tmp_path / "device.log",
    )  # fmt: skip
    publish_lines(broker.port, topic, ["online"])
    wait_for(lambda: state_of(gateway, "s1/button/w1") == "online", 10, "online")
    device.kill()  # no DISCONNECT: the broker publishes the will
    device.wait(5)
    started = time.monotonic()
    wait_for(lambda: state_of(gateway, "s1/button/w1") == "offline", 10, "offline by will")
    assert time.monotonic() - started < 2.0
    assert retained(broker, topic) == "offline"  # the device's own will, not rewritten by us


def test_broker_restart_does_not_mark_the_fleet_offline(
    tmp_path: Path, broker: Mosquitto, linkage: Linkage, gateway: Gateway
) -> None:
    gateway.stop()
    gateway.configure(availability={**FAST, "mains_timeout_s": 4, "camera_timeout_s": 4,
                                    "gate_timeout_s": 4, "startup_grace_s": 4})  # fmt: skip
    gateway.start()
    fleet = spawn(
        [sys.executable, "-m", "gateway", "simulate", "--port", str(broker.port),
         "--schools", "2", "--buttons", "2", "--cameras", "2", "--gates", "1",
         "--status-interval", "1", "--press-every", "0", "--forced-every", "0",
         "--progress", "0"],
        tmp_path / "fleet.log",
    )  # fmt: skip
    try:
        total = 2 * (2 + 2 + 1)
        wait_for(lambda: gateway.get("/api/stats")["devices_online"] == total, 20, "fleet online")
        broker.stop()
        time.sleep(5)  # the outage lasts longer than every silence timeout (4 s)
        broker.start(broker.dir, broker.port)
        wait_for(gateway.mqtt_connected, 10, "gateway reconnected")
        assert stays(lambda: gateway.get("/api/stats")["devices_offline"] == 0, 6.0)
        assert gateway.get("/api/stats")["devices_online"] == total
        assert gateway.get("/api/alarms?open=true")["total"] == 0  # no offline troubles
    finally:
        stop_process(fleet)


def test_a_restart_within_the_cooldown_raises_no_second_offline_trouble(
    broker: Mosquitto, gateway: Gateway
) -> None:
    gateway.stop()
    # The cooldown (an hour by default) must hold across the restart on its own: the alarm
    # store's duplicate window (seq 0, device time within 300 s) would otherwise hide a repeat.
    gateway.configure(availability=FAST, alarms={"duplicate_window_s": 0.5})
    gateway.start()
    will = json.dumps({"state": "offline"})
    body = json.dumps({"seq": 1, "ts": "2026-11-23T08:00:00Z", "battery": 90.0})
    publish_lines(broker.port, "campus/s1/button/b2/status", [body])
    subprocess.run(
        ["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-r",
         "-t", "campus/s1/button/b2/availability", "-m", will],
        check=True, timeout=10,
    )  # a last will, retained as mosquitto keeps one  # fmt: skip
    wait_for(lambda: state_of(gateway, "s1/button/b2") == "offline", 10, "offline by its will")

    def offline_troubles() -> int:
        items = gateway.get("/api/alarms?device=b2")["items"]
        return sum(a["event"] == "offline" for a in items)

    assert offline_troubles() == 1
    gateway.stop()
    time.sleep(1.0)  # past the duplicate window, well within the cooldown
    gateway.start()  # the retained will comes again; the device is still offline
    wait_for(lambda: state_of(gateway, "s1/button/b2") == "offline", 10, "offline again")
    assert stays(lambda: offline_troubles() == 1, 3.0)
