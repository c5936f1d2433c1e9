"""End to end on real parts: mosquitto_pub -> mosquitto -> gateway -> InfluxDB and police/fire.

Every assertion is a count: what was published against what arrived.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from simulators.servers import InfluxDB, Mosquitto
from tests.integration.conftest import Gateway, Linkage, publish, publish_lines, wait_for

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def ts(seq: int) -> str:
    """A distinct device time per seq."""
    return (T0 + timedelta(milliseconds=seq)).isoformat().replace("+00:00", "Z")


def press(seq: int, category: str = "police") -> str:
    return json.dumps({"seq": seq, "ts": ts(seq), "event": "press", "category": category})


def button_status(seq: int) -> str:
    return json.dumps({"seq": seq, "ts": ts(seq), "battery": 80.5, "rssi": -60})


def keys(received: dict[str, object]) -> list[str]:
    return [a["idempotency_key"] for a in received["alarms"]]  # type: ignore[index,union-attr]


def test_presses_reach_police_and_fire_exactly_once(
    broker: Mosquitto, linkage: Linkage, gateway: Gateway
) -> None:
    police_sent = fire_sent = 0
    for school in ("s1", "s2", "s3"):
        for device in ("b1", "b2"):
            topic = f"campus/{school}/button/{device}/event"
            publish_lines(broker.port, topic, [press(n) for n in range(1, 11)])
            publish_lines(broker.port, topic, [press(n, "fire") for n in range(11, 14)])
            police_sent, fire_sent = police_sent + 10, fire_sent + 3
    # The minimal example of the device contract, byte for byte.
    publish(
        broker.port,
        "campus/s9/button/b1/event",
        b'{"seq": 1, "ts": "2026-11-23T08:00:00Z", "event": "press"}',
    )
    police_sent += 1

    police = wait_for(
        lambda: (r := linkage.received("police"))["count"] >= police_sent and r, 30, "police"
    )
    fire = wait_for(lambda: (r := linkage.received("fire"))["count"] >= fire_sent and r, 30, "fire")
    assert (police["count"], len(set(keys(police)))) == (police_sent, police_sent)
    assert (fire["count"], len(set(keys(fire)))) == (fire_sent, fire_sent)
    alarms = gateway.get("/api/alarms?limit=1000")
    assert alarms["total"] == police_sent + fire_sent
    assert {a["id"] for a in alarms["items"]} == set(keys(police)) | set(keys(fire))
    assert all(a["deliveries"][0]["status"] == "delivered" for a in alarms["items"])
    one = gateway.get(f"/api/alarms/{alarms['items'][0]['id']}")
    assert one["deliveries"][0]["attempts"] == 1


def test_status_messages_become_exactly_as_many_points(
    broker: Mosquitto, influx: InfluxDB, gateway: Gateway
) -> None:
    sent = 0
    for school in ("s1", "s2"):
        for device in ("b1", "b2", "b3"):
            publish_lines(
                broker.port, f"campus/{school}/button/{device}/status",
                [button_status(n) for n in range(1, 101)],
            )  # fmt: skip
            sent += 100
    camera = json.dumps({"seq": 1, "ts": ts(1), "fps": 25.0, "recording": True})
    publish(broker.port, "campus/s1/camera/c1/status", camera.encode())
    wait_for(lambda: influx.count_points(gateway.db, "button_status") >= sent, 30, "points")
    assert influx.count_points(gateway.db, "button_status") == sent
    wait_for(lambda: influx.count_points(gateway.db, "camera_status") == 1, 10, "camera point")
    devices = gateway.get("/api/devices")
    assert devices["total"] == 7
    assert {d["device"] for d in devices["items"]} == {"b1", "b2", "b3", "c1"}


BAD_INPUT = [
    ("campus/s1/button/b1/event", b"\xff\xfe binary", "not UTF-8"),
    ("campus/s1/button/b1/event", b"press!", "not JSON"),
    ("campus/s1/button/b1/event", b'{"seq": 1, "ts": "2026-11-23T08:00:00Z"}', "event"),
    ("campus/s1/button/b1/event", b'{"seq": 1, "event": "press"}', "ts"),
    ("campus/s1/siren/x1/event", b"{}", "unknown kind"),
    ("campus/s1/button/b1/config", b"{}", "unknown channel"),
    ("campus/s1/button", b"{}", "unknown topic"),
    ("campus/s1/button/b1/status", b"x" * 70_000, "oversized"),
    ("campus/s1/gate/kv-g1/event", b"seq=1 evt=FORCED", "ts"),
]


def test_bad_input_is_dead_lettered_while_good_traffic_flows(
    broker: Mosquitto, linkage: Linkage, gateway: Gateway
) -> None:
    for seq, (topic, payload, _) in enumerate(BAD_INPUT, start=1):
        publish(broker.port, topic, payload)
        publish(broker.port, "campus/s1/button/b2/event", press(seq).encode())
    wait_for(lambda: linkage.received("police")["count"] >= len(BAD_INPUT), 30, "presses")
    assert linkage.received("police")["count"] == len(BAD_INPUT)
    letters = wait_for(
        lambda: (d := gateway.get("/api/dead-letters"))["total"] >= len(BAD_INPUT) and d, 10, "dl"
    )
    assert letters["total"] == len(BAD_INPUT)
    # Events and telemetry arrive on separate MQTT sessions, so match letters without order.
    unmatched = list(letters["items"])
    for topic, payload, reason in BAD_INPUT:
        found = [d for d in unmatched if d["topic"] == topic and reason in d["reason"]
                 and d["size"] == min(len(payload), 65536)]  # fmt: skip
        assert found, f"no dead letter for {topic} with {reason!r}: {unmatched}"
        unmatched.remove(found[0])
    assert gateway.get("/api/stats")["dead_letters"] == len(BAD_INPUT)


def _feeder(port: int, topic: str) -> subprocess.Popen[bytes]:
    """A long-lived `mosquitto_pub -l`: every line written to its stdin is one QoS 1 message."""
    argv = ["mosquitto_pub", "-p", str(port), "-q", "1", "-t", topic, "-l"]
    return subprocess.Popen(argv, stdin=subprocess.PIPE)


def test_restart_under_traffic_loses_nothing(
    broker: Mosquitto, influx: InfluxDB, linkage: Linkage, gateway: Gateway
) -> None:
    statuses, presses = 3000, 300
    status_pub = _feeder(broker.port, "campus/s1/button/b1/status")
    press_pub = _feeder(broker.port, "campus/s2/button/b1/event")

    def feed() -> None:
        assert status_pub.stdin is not None and press_pub.stdin is not None
        for n in range(1, statuses + 1):
            status_pub.stdin.write(button_status(n).encode() + b"\n")
            status_pub.stdin.flush()
            if n % 10 == 0:
                press_pub.stdin.write(press(n // 10).encode() + b"\n")
                press_pub.stdin.flush()
            time.sleep(0.001)  # pacing, so traffic spans the restart; not a wait for a result
        status_pub.stdin.close()
        press_pub.stdin.close()

    thread = threading.Thread(target=feed)
    thread.start()
    wait_for(lambda: gateway.get("/api/stats")["messages_in"] > 200, 30, "traffic")
    assert gateway.stop() == 0, "gateway did not exit cleanly on SIGTERM"
    gateway.start()
    thread.join(120)
    assert (status_pub.wait(30), press_pub.wait(30)) == (0, 0)
    wait_for(lambda: influx.count_points(gateway.db, "button_status") >= statuses, 60, "points")
    wait_for(lambda: len(set(keys(linkage.received("police")))) >= presses, 60, "presses")
    assert influx.count_points(gateway.db, "button_status") == statuses
    assert len(set(keys(linkage.received("police")))) == presses
    assert gateway.get("/api/alarms?limit=1")["total"] == presses
