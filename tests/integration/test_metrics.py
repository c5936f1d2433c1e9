"""/metrics on real parts: what mosquitto_pub published is what the gateway's counters show.

Every assertion is a count: messages per topic class, deliveries per endpoint and the alarm
latency histogram's count against what the police and fire simulators confirmed.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulators.servers import Mosquitto
from tests.integration.conftest import Gateway, Linkage, publish, publish_lines, wait_for
from tests.integration.test_end_to_end import button_status, press

pytestmark = pytest.mark.integration
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(gateway: Gateway) -> tuple[str, Samples]:
    """Content type and every sample of one GET /metrics."""
    with urllib.request.urlopen(gateway.api("/metrics"), timeout=5) as resp:
        content_type, text = resp.headers["Content-Type"], resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return content_type, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_exactly_what_was_published(
    broker: Mosquitto, linkage: Linkage, gateway: Gateway
) -> None:
    statuses = 0
    for device in ("b1", "b2", "b3"):
        publish_lines(broker.port, f"campus/s1/button/{device}/status",
                      [button_status(n) for n in range(1, 101)])  # fmt: skip
        statuses += 100
    police, fire = 7, 2
    publish_lines(broker.port, "campus/s1/button/b9/event", [press(n) for n in range(1, 8)])
    publish_lines(broker.port, "campus/s1/button/b8/event", [press(n, "fire") for n in (1, 2)])
    publish(broker.port, "campus/s1/gate/g1/status", b"not json")

    wait_for(lambda: linkage.received("police")["count"] >= police, 30, "police")
    wait_for(lambda: linkage.received("fire")["count"] >= fire, 30, "fire")

    def settled() -> Samples | None:
        _, s = scrape(gateway)
        done = (
            value(s, "campusgw_messages_in_total", kind="button", channel="status") >= statuses
            and value(s, "campusgw_dead_letters_total", kind="gate", channel="status") >= 1
            and value(s, "campusgw_telemetry_pending_points") == 0
            and value(s, "campusgw_alarm_delivery_seconds_count", endpoint="fire") >= fire
            and value(s, "campusgw_alarm_delivery_seconds_count", endpoint="police") >= police
        )
        return s if done else None

    s = wait_for(settled, 30, "/metrics to show every message")
    button_status_class = {"kind": "button", "channel": "status"}
    assert value(s, "campusgw_messages_in_total", **button_status_class) == statuses
    assert value(s, "campusgw_messages_out_total", **button_status_class) == statuses
    assert value(s, "campusgw_dead_letters_total", **button_status_class) == 0
    assert value(s, "campusgw_messages_in_total", kind="button", channel="event") == police + fire
    assert value(s, "campusgw_messages_in_total", kind="gate", channel="status") == 1
    assert value(s, "campusgw_messages_out_total", kind="gate", channel="status") == 0
    assert value(s, "campusgw_decode_errors_total") == 1
    assert value(s, "campusgw_alarms_raised_total") == police + fire

    # One latency observation per confirmed delivery, as many as the endpoints confirmed.
    for endpoint, sent in (("police", police), ("fire", fire)):
        confirmed = linkage.received(endpoint)["count"]
        assert confirmed == sent
        latency = value(s, "campusgw_alarm_delivery_seconds_count", endpoint=endpoint)
        assert latency == confirmed
        ok = value(s, "campusgw_deliveries_total", endpoint=endpoint, result="ok")
        assert ok == confirmed
        within_10_s = value(
            s, "campusgw_alarm_delivery_seconds_bucket", endpoint=endpoint, le="10.0"
        )
        assert within_10_s == confirmed
    assert value(s, "campusgw_deliveries_pending") == 0

    assert value(s, "campusgw_telemetry_write_seconds_count") >= 1
    assert value(s, "campusgw_telemetry_points_written_total") >= statuses + police + fire
    assert value(s, "campusgw_devices", state="online") == 5  # b1 b2 b3 b8 b9
    assert value(s, "campusgw_mqtt_connected", session="events") == 1
    assert value(s, "campusgw_mqtt_connected", session="telemetry") == 1
    assert value(s, "campusgw_endpoint_up", endpoint="police") == 1
    content_type, _ = scrape(gateway)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    # /api/stats stays the flat JSON the console and benches read.
    stats = gateway.get("/api/stats")
    assert all(not isinstance(v, dict | list) for v in stats.values()), json.dumps(stats)
