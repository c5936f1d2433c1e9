"""/metrics: the exposition parses, and its counters move when the real ingest, dispatcher,
telemetry writer and API record things."""

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.api.app import ApiContext, create_app
from gateway.availability import AvailabilityTracker
from gateway.config import LinkageSettings, Settings, load_settings
from gateway.fleet import Fleet
from gateway.forwarding import Dispatcher
from gateway.ingest import Ingest, topic_class
from gateway.metrics import CONTENT_TYPE, MetricsView, render
from gateway.ports import NewAlarm, NewDeadLetter, Restore
from gateway.runtime import DriverRouter
from gateway.spool import Spool
from gateway.stats import Histogram, Stats
from gateway.storage.sqlite import SqliteAlarmStore
from gateway.telemetry import TelemetryWriter
from tests.unit.test_forwarding import FlakyEndpoint
from tests.unit.test_ingest import EXAMPLE, PRESS, FakeStore
from tests.unit.test_sqlite_store import alarm
from tests.unit.test_telemetry import Sink

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(view: MetricsView) -> Samples:
    """Render and parse back with prometheus_client's own parser."""
    return parse(render(view).decode())


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


def status(seq: int) -> bytes:
    return b'{"seq": %d, "ts": "2026-11-23T08:00:00Z", "battery": 80}' % seq


@pytest.fixture
def settings() -> Settings:
    return load_settings(EXAMPLE)


async def no_points(lines: list[bytes]) -> None:
    pass


def ingest_for(settings: Settings, store: object, stats: Stats) -> Ingest:
    return Ingest(
        settings, DriverRouter(settings), store, no_points,  # type: ignore[arg-type]
        AvailabilityTracker(settings.availability), stats, on_alarms=lambda ids: None,
    )  # fmt: skip


def test_every_family_parses_with_help_type_and_prefix() -> None:
    text = render(MetricsView(Stats())).decode()
    families = list(text_string_to_metric_families(text))
    ours = [f for f in families if f.name.startswith("campusgw_")]
    assert {f.type for f in ours} == {"counter", "gauge", "histogram"}
    assert all(f.documentation for f in ours)
    assert {f.name for f in families} - {f.name for f in ours} <= {
        f.name for f in families if f.name.startswith("process_")
    }
    assert "# TYPE campusgw_alarm_delivery_seconds histogram" in text


async def test_ingest_counts_per_topic_class_decode_errors_and_commit_time(
    settings: Settings,
) -> None:
    stats = Stats()
    ingest = ingest_for(settings, FakeStore(), stats)
    good = [("campus/s1/button/b1/status", status(n)) for n in range(1, 8)]
    bad = [
        ("campus/s1/button/b1/status", b"not json"),  # decode error, still a button status
        ("campus/s1/lift/l1/status", b"{}"),  # not in the contract
        ("campus/s1/button/b2/event", b"x" * 70_000),  # oversized
    ]
    await ingest.handle([*good, *bad, ("campus/s1/button/b2/event", PRESS)])
    s = scrape(MetricsView(stats))
    button_status = {"kind": "button", "channel": "status"}
    assert value(s, "campusgw_messages_in_total", **button_status) == 8
    assert value(s, "campusgw_messages_out_total", **button_status) == 7
    assert value(s, "campusgw_dead_letters_total", **button_status) == 1
    assert value(s, "campusgw_messages_in_total", kind="button", channel="event") == 2
    assert value(s, "campusgw_dead_letters_total", kind="invalid", channel="invalid") == 1
    assert value(s, "campusgw_decode_errors_total") == 1
    assert value(s, "campusgw_alarms_raised_total") == 1
    assert value(s, "campusgw_ingest_commit_seconds_count") == 1
    assert value(s, "campusgw_ingest_commit_seconds_bucket", le="+Inf") == 1


async def test_a_batch_the_store_refused_is_counted_once_when_it_is_retried(
    settings: Settings,
) -> None:
    class OnceBroken(FakeStore):
        broken = True

        async def commit(
            self,
            alarms: Sequence[NewAlarm],
            letters: Sequence[NewDeadLetter],
            restores: Sequence[Restore] = (),
        ) -> list[str]:
            if self.broken:
                self.broken = False
                raise OSError("disk I/O error")
            return await super().commit(alarms, letters, restores)

    stats = Stats()
    ingest = ingest_for(settings, OnceBroken(), stats)
    batch = [("campus/s1/button/b1/event", PRESS), ("campus/s1/button/b1/status", status(2))]
    with pytest.raises(OSError):
        await ingest.handle(batch)
    await ingest.handle(batch)  # what the MQTT adapter does: hand the same batch over again
    assert stats.class_used == {("button", "event"): 1, ("button", "status"): 1}


def test_topic_class() -> None:
    assert topic_class("campus/s1/camera/c1/snapshot", "campus") == ("camera", "snapshot")
    for topic in ("campus/s1/button", "other/s1/button/b1/event", "campus/s1/lift/l1/status"):
        assert topic_class(topic, "campus") == ("invalid", "invalid")


async def test_confirmed_deliveries_are_timed_per_endpoint_and_failures_counted(
    tmp_path: Path,
) -> None:
    endpoint, stats = FlakyEndpoint(failures=1), Stats()
    now = datetime.now(UTC)
    async with SqliteAlarmStore(tmp_path / "s.db") as store:
        alarms = [dataclasses.replace(alarm(n), received_at=now) for n in range(1, 6)]
        await store.commit(alarms, [])
        linkage = LinkageSettings(retry_initial_s=0.001, retry_max_s=0.01, down_after_failures=100)
        task = asyncio.create_task(Dispatcher(store, endpoint, stats, linkage).run())
        async with asyncio.timeout(20):
            while (await store.counts())["deliveries_pending"]:  # noqa: ASYNC110 (polling the store)
                await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    s = scrape(MetricsView(stats))
    assert value(s, "campusgw_deliveries_total", endpoint="police", result="ok") == 5
    assert value(s, "campusgw_deliveries_total", endpoint="police", result="failed") == 5
    assert value(s, "campusgw_alarm_delivery_seconds_count", endpoint="police") == 5
    assert 0 < value(s, "campusgw_alarm_delivery_seconds_sum", endpoint="police") < 20
    assert value(s, "campusgw_alarm_delivery_seconds_bucket", endpoint="police", le="10.0") == 5


async def test_each_written_batch_is_one_write_latency_observation(tmp_path: Path) -> None:
    stats, sink = Stats(), Sink()
    w = TelemetryWriter(sink, stats, Spool(tmp_path, 1 << 20), batch_size=3,
                        flush_interval_s=0.01, max_loose=100,
                        on_rejected=lambda lines, reason: None)  # fmt: skip
    for n in range(0, 9, 3):  # three records of 3, one batch each
        await w.add_batch([b"p%d" % m for m in range(n, n + 3)])
    assert await w.flush()
    s = scrape(MetricsView(stats, gauges={"points_pending": w.pending}))
    assert value(s, "campusgw_telemetry_write_seconds_count") == 3
    assert value(s, "campusgw_telemetry_points_written_total") == 9
    assert value(s, "campusgw_telemetry_pending_points") == 0


def test_histogram_buckets_are_inclusive_and_cumulative() -> None:
    stats = Stats()
    for seconds in (0.001, 0.0011, 2.0, 60.0):
        stats.telemetry_write.observe(seconds)
    s = scrape(MetricsView(stats))
    bucket = "campusgw_telemetry_write_seconds_bucket"
    assert [value(s, bucket, le=le) for le in ("0.001", "0.0025", "2.0", "10.0", "+Inf")] == [
        1, 2, 3, 3, 4,
    ]  # fmt: skip
    assert value(s, "campusgw_telemetry_write_seconds_sum") == pytest.approx(62.0021)


def test_stats_snapshot_stays_flat_json() -> None:
    stats = Stats()
    stats.alarm_delivery["police"] = Histogram()
    stats.class_used["button", "event"] = 1
    snap = stats.snapshot()
    assert "alarm_delivery" not in snap and "class_used" not in snap
    json.dumps(snap)


async def test_metrics_route_serves_text_0_0_4_with_gauges(tmp_path: Path) -> None:
    async with SqliteAlarmStore(tmp_path / "s.db") as store:
        await store.commit([alarm(1), alarm(2)], [])
        fleet = Fleet(Settings(), publish=lambda topic, payload: True, add_point=lambda line: None)
        gauges = {"points_pending": 42, "devices_online": 3, "devices_offline": 1}
        ctx = ApiContext(
            store, fleet, Stats(), health=lambda: asyncio.sleep(0, {"status": "ok"}),
            extra_stats=lambda: gauges, sessions=lambda: {"events": True, "telemetry": False},
            endpoints=lambda: {"police": "up", "fire": "down"},
        )  # fmt: skip
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE
    s = parse(answer.text)
    assert value(s, "campusgw_telemetry_pending_points") == 42
    assert [value(s, "campusgw_devices", state=x) for x in ("online", "offline", "unknown")] == [
        3, 1, 0,
    ]  # fmt: skip
    assert value(s, "campusgw_mqtt_connected", session="telemetry") == 0
    assert value(s, "campusgw_endpoint_up", endpoint="fire") == 0
    assert value(s, "campusgw_alarms_open") == 2
    assert value(s, "campusgw_deliveries_pending") == 2
