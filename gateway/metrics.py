"""Prometheus `/metrics`: the gateway's counters, gauges and histograms as text format 0.0.4.

Nothing here runs per message: the hot path only bumps the integers and buckets in
gateway/stats.py, and this module reads them when Prometheus scrapes (docs/metrics.md lists
every metric; docs/decisions.md, decision 11, says why it is built this way).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.stats import Histogram, Stats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "campusgw_"
STATES = ("online", "offline", "unknown")

# Stats field -> (metric name without prefix and _total, help).
COUNTERS: dict[str, tuple[str, str]] = {
    "messages_in": ("mqtt_messages_received", "MQTT messages received for ingest."),
    "messages_acked": ("mqtt_messages_acked", "MQTT messages acknowledged after handling."),
    "mqtt_connects": ("mqtt_connects", "Successful MQTT connections (all sessions)."),
    "decode_errors": ("decode_errors", "Payloads no driver could decode (dead-lettered)."),
    "points_queued": ("telemetry_points_queued", "Points queued for InfluxDB."),
    "points_written": ("telemetry_points_written", "Points InfluxDB accepted."),
    "points_evicted": ("telemetry_points_evicted", "Oldest points evicted, spool full."),
    "telemetry_holds": ("telemetry_holds", "Telemetry batches held back: writer behind."),
    "rate_limited": ("rate_limited", "Messages over a device's rate limit, dropped."),
    "points_rejected": ("telemetry_points_rejected", "Points InfluxDB refused (dead-lettered)."),
    "write_errors": ("telemetry_write_errors", "Failed InfluxDB writes (retried)."),
    "alarms_raised": ("alarms_raised", "Alarms stored (device alarms and troubles)."),
    "alarm_duplicates": ("alarm_duplicates", "Resent presses recognised as duplicates."),
    "trouble_alarms": ("linkage_trouble_alarms", "Alarms not confirmed within the deadline."),
    "store_errors": ("store_errors", "Batches the alarm store could not commit (retried)."),
    "snapshots_in": ("snapshots_received", "Camera snapshots accepted for video checks."),
    "snapshots_checked": ("snapshots_checked", "Camera snapshots checked."),
    "snapshots_skipped": ("snapshots_skipped", "Snapshots replaced by a newer one unchecked."),
    "video_troubles": ("video_troubles", "Camera troubles raised by video checks."),
    "vqd_worker_restarts": ("vqd_worker_restarts", "Video check worker processes replaced."),
}


@dataclass(frozen=True, slots=True)
class MetricsView:
    """What one scrape reads, gathered by the API route from the running gateway."""

    stats: Stats
    gauges: Mapping[str, float] = field(default_factory=dict)  # runtime's extra stats
    sessions: Mapping[str, bool] = field(default_factory=dict)  # MQTT session -> connected
    endpoints: Mapping[str, str] = field(default_factory=dict)  # endpoint -> up/down
    store: Mapping[str, int] = field(default_factory=dict)  # AlarmStore.counts(), if answered


_PROCESS = ProcessCollector(registry=None)


class _Collector(Collector):
    def __init__(self, view: MetricsView) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        yield from _counters(self._view.stats)
        yield from _topic_classes(self._view.stats)
        yield from _deliveries(self._view.stats)
        yield from _gauges(self._view)
        yield from _histograms(self._view.stats)
        yield from _PROCESS.collect()


def render(view: MetricsView) -> bytes:
    """The exposition text of one scrape."""
    return generate_latest(_Collector(view))


def _counters(stats: Stats) -> Iterator[Metric]:
    for attr, (name, help_) in COUNTERS.items():
        yield CounterMetricFamily(PREFIX + name, help_, value=getattr(stats, attr))


def _topic_classes(stats: Stats) -> Iterator[Metric]:
    labels = ["kind", "channel"]
    seen = CounterMetricFamily(
        PREFIX + "messages_in", "Messages handled by ingest, per topic class.", labels=labels
    )
    used = CounterMetricFamily(
        PREFIX + "messages_out",
        "Messages decoded and passed on (point, alarm, availability, snapshot).",
        labels=labels,
    )
    dead = CounterMetricFamily(
        PREFIX + "dead_letters", "MQTT messages dead-lettered, per topic class.", labels=labels
    )
    for key in sorted({*stats.class_used, *stats.class_dead}):
        ok, bad = stats.class_used.get(key, 0), stats.class_dead.get(key, 0)
        seen.add_metric([str(key[0]), str(key[1])], ok + bad)
        used.add_metric([str(key[0]), str(key[1])], ok)
        dead.add_metric([str(key[0]), str(key[1])], bad)
    return iter((seen, used, dead))


def _deliveries(stats: Stats) -> Iterator[Metric]:
    family = CounterMetricFamily(
        PREFIX + "deliveries",
        "Alarm delivery attempts per endpoint: ok (confirmed) or failed (retried).",
        labels=["endpoint", "result"],
    )
    for endpoint in sorted({*stats.alarm_delivery, *stats.failures_by_endpoint}):
        histogram = stats.alarm_delivery.get(endpoint)
        family.add_metric([endpoint, "ok"], histogram.count if histogram else 0)
        family.add_metric([endpoint, "failed"], stats.failures_by_endpoint.get(endpoint, 0))
    yield family


def _gauges(view: MetricsView) -> Iterator[Metric]:
    g = view.gauges
    yield _gauge(
        "telemetry_pending_points",
        "Points accepted and not yet written to InfluxDB (memory buffer; later the spool).",
        g.get("points_pending", 0),
    )
    devices = {state: g.get(f"devices_{state}", 0) for state in STATES}
    yield _labelled("devices", "Devices known to the gateway, per availability.", "state", devices)
    yield _gauge("devices_registered", "Devices in the registry.", g.get("devices_registered", 0))
    sessions = {name: float(up) for name, up in view.sessions.items()}
    yield _labelled("mqtt_connected", "1 while an MQTT session is connected.", "session", sessions)
    ups = {name: float(state != "down") for name, state in view.endpoints.items()}
    yield _labelled("endpoint_up", "0 while a linkage endpoint is declared down.", "endpoint", ups)
    if "alarms_open" in view.store:
        yield _gauge(
            "alarms_open", "Alarms not yet reset (tests excluded).", view.store["alarms_open"]
        )
    if "deliveries_pending" in view.store:
        yield _gauge(
            "deliveries_pending",
            "Alarm deliveries not yet confirmed by their endpoint.",
            view.store["deliveries_pending"],
        )


def _gauge(name: str, help_: str, value: float) -> Metric:
    return GaugeMetricFamily(PREFIX + name, help_, value=value)


def _labelled(name: str, help_: str, label: str, values: Mapping[str, float]) -> Metric:
    family = GaugeMetricFamily(PREFIX + name, help_, labels=[label])
    for value_label, value in sorted(values.items()):
        family.add_metric([value_label], value)
    return family


def _histograms(stats: Stats) -> Iterator[Metric]:
    family = HistogramMetricFamily(
        PREFIX + "alarm_delivery_seconds",
        "Alarm received by the gateway -> confirmed by the endpoint, per confirmed delivery.",
        labels=["endpoint"],
    )
    for endpoint, histogram in sorted(stats.alarm_delivery.items()):
        family.add_metric([endpoint], _buckets(histogram), histogram.sum)
    yield family
    for name, help_, histogram in (
        ("ingest_commit_seconds", "Batch handed to ingest -> its alarms and dead letters "
         "durable, per batch that had any.", stats.ingest_commit),
        ("telemetry_write_seconds", "One batch of points written to InfluxDB.",
         stats.telemetry_write),
    ):  # fmt: skip
        family = HistogramMetricFamily(PREFIX + name, help_)
        family.add_metric([], _buckets(histogram), histogram.sum)
        yield family


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    cumulative, out = 0, list[tuple[str, float]]()
    bounds = [*map(_le, histogram.bounds), "+Inf"]
    for bound, count in zip(bounds, histogram.buckets, strict=True):
        cumulative += count
        out.append((bound, cumulative))
    return out


def _le(bound: float) -> str:
    return repr(float(bound))
