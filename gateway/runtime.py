"""The one place that wires everything from Settings and runs it in a TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

import drivers
from drivers.base import Driver
from gateway import faults
from gateway.alarms import NvrTroubles
from gateway.api.app import ApiContext, create_app
from gateway.config import ConfigError, InfluxSettings, Settings
from gateway.fleet import Fleet
from gateway.forwarding import Dispatcher
from gateway.heap import freeze_long_lived
from gateway.ingest import Ingest
from gateway.linkage import LinkageForwarder
from gateway.models import Kind, Topic
from gateway.mqtt import Inbound, MqttLink, roles
from gateway.ports import NewDeadLetter, TelemetrySink
from gateway.spool import Spool, SpoolError
from gateway.stats import Stats
from gateway.storage.influx import InfluxV1Sink
from gateway.storage.registry_store import RegistryStore
from gateway.storage.sqlite import SqliteAlarmStore
from gateway.telemetry import TelemetryWriter
from gateway.video import VideoQuality

if TYPE_CHECKING:
    from gateway.storage.influx_v2 import InfluxV2Sink

log = logging.getLogger(__name__)


class DriverRouter:
    """Picks the driver for a device: the first matching config route, else the family's own."""

    def __init__(self, settings: Settings) -> None:
        drivers.load_plugins()
        self._routes = settings.drivers.routes
        self._cache: dict[str, Driver] = {}
        for route in self._routes:
            try:
                drivers.get(route.driver)
            except KeyError as exc:
                raise ConfigError(f"drivers.routes: {exc.args[0]}") from None

    def __call__(self, topic: Topic) -> Driver:
        key = topic.device_key
        driver = self._cache.get(key)
        if driver is None:
            driver = self._pick(key, topic)
            self._cache[key] = driver
        return driver

    def _pick(self, key: str, topic: Topic) -> Driver:
        for route in self._routes:
            if route.matches(key):
                driver = drivers.get(route.driver)
                if driver.kind != topic.kind:
                    raise KeyError(f"driver {driver.name} decodes {driver.kind}, not {topic.kind}")
                return driver
        return drivers.default_for(topic.kind)


def bind_api_socket(settings: Settings) -> socket.socket:
    """Bind the API port before anything starts, so a taken port is a clear start-up error."""
    host, port = settings.api.host, settings.api.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off only then, and uvicorn writes headers and body
    # separately, so without it every small answer waits ~40 ms for a delayed ACK (measured).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"api.port: cannot listen on {host}:{port} ({exc.strerror}); the port is taken or "
            f"the address is wrong: set api.port / api.host or CAMPUSGW_API__PORT"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def run(settings: Settings) -> None:
    """Run the gateway until SIGTERM/SIGINT, then stop in order without losing anything."""
    router = DriverRouter(settings)
    api_socket = bind_api_socket(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with (
        SqliteAlarmStore(settings.store.path, settings.alarms.duplicate_window_s) as store,
        telemetry_sink(settings.influxdb) as sink,
        LinkageForwarder(settings.linkage) as forwarder,
    ):
        await _prepare_influx(sink)
        registry = await asyncio.to_thread(RegistryStore, settings.store.registry_path)
        parts = _Parts.wire(settings, router, store, sink, forwarder)
        parts.registry_store = registry
        # Before any message: the offline troubles' cooldown holds across restarts.
        parts.fleet.troubles.remember(await store.last_troubles("offline"))
        parts.video.resume(await store.open_troubles(Kind.CAMERA, "video_"))
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(parts.api_context()), log_level="warning", lifespan="off",
                access_log=False,
            )
        )  # fmt: skip
        freeze_long_lived()
        log.info("gateway started; API on http://%s:%d", settings.api.host, settings.api.port)
        background = [
            asyncio.create_task(parts.writer.run(), name="telemetry"),
            asyncio.create_task(parts.dispatcher.run(), name="dispatcher"),
            asyncio.create_task(parts.fleet.watch(store, parts.connected), name="availability"),
            asyncio.create_task(parts.fleet.follow_registry(registry), name="registry"),
            asyncio.create_task(parts.fleet.keep_coverage(store), name="coverage"),
            asyncio.create_task(parts.video.run(), name="video-quality"),
            asyncio.create_task(server.serve(sockets=[api_socket]), name="api"),
        ]
        try:
            await asyncio.gather(*(link.run(parts.handle, stop) for link in parts.links))
        finally:
            await _shutdown(parts.writer, server, background)
            registry.close()


@dataclass
class _Parts:
    """The wired core and adapters of one running gateway."""

    store: SqliteAlarmStore
    sink: TelemetrySink
    stats: Stats
    writer: TelemetryWriter
    dispatcher: Dispatcher
    fleet: Fleet
    ingest: Ingest
    links: tuple[MqttLink, ...]
    settings: Settings
    video: VideoQuality
    registry_store: RegistryStore | None = None

    @classmethod
    def wire(
        cls, settings: Settings, router: DriverRouter, store: SqliteAlarmStore,
        sink: TelemetrySink, forwarder: LinkageForwarder,
    ) -> _Parts:  # fmt: skip
        stats, i = Stats(), settings.influxdb

        def reject(lines: bytes, reason: str) -> None:
            letter = NewDeadLetter("influxdb:/write", lines, reason, datetime.now(UTC))
            task = asyncio.create_task(store.commit([], [letter]))
            task.add_done_callback(lambda t: t.exception())

        spool = settings.spool
        try:
            spooled = Spool(spool_dir(settings), spool.max_bytes, spool.segment_bytes, spool.fsync)
        except SpoolError as exc:
            raise ConfigError(f"spool.path: {exc}") from None
        writer = TelemetryWriter(
            sink, stats, spooled,
            i.batch_size, i.flush_interval_s, i.max_buffer, reject,
            high_water_bytes=int(spool.max_bytes * spool.backpressure_at),
            max_hold_s=spool.max_hold_s, linger_s=i.linger_s,
        )  # fmt: skip
        dispatcher = Dispatcher(store, forwarder, stats, settings.linkage)
        links = tuple(MqttLink(settings.mqtt, role, stats) for role in roles(settings.mqtt))
        announcer = next(link for link in links if link.role.announce)
        fleet = Fleet(
            settings, lambda topic, payload: announcer.publish(topic, payload, retain=True),
            writer.add,
        )  # fmt: skip
        for link in links:
            link.on_connected = lambda: fleet.tracker.resume(datetime.now(UTC))
        fleet.tracker.resume(datetime.now(UTC))
        video = VideoQuality(settings.video_quality, stats, writer.add, store.commit)
        ingest = Ingest(
            settings, router, faults.wrap_store(store), writer.add_batch, fleet.tracker, stats,
            on_alarms=lambda ids: dispatcher.wake(), troubles=fleet.troubles,
            on_changes=fleet.apply,
            on_snapshot=video.submit if settings.video_quality.enabled else None,
            nvr=NvrTroubles(fleet.retention_days),
        )  # fmt: skip
        return cls(store, sink, stats, writer, dispatcher, fleet, ingest, links, settings, video)

    def connected(self) -> bool:
        """Every MQTT session is up."""
        return all(link.connected for link in self.links)

    async def handle(self, batch: list[Inbound]) -> None:
        """MQTT batch -> ingest (returns once its alarms and dead letters are durable)."""
        await self.ingest.handle([(m.topic, m.payload) for m in batch])

    async def health(self) -> dict[str, Any]:
        """/healthz: ok only when the broker is connected and InfluxDB takes writes."""
        influx_ok = self.writer.healthy and await self.sink.ping()
        mqtt_ok = all(link.connected for link in self.links)
        stalled = [link.stalled for link in self.links if link.stalled]
        endpoints = self.dispatcher.endpoint_states()
        ok = mqtt_ok and influx_ok and not stalled and "down" not in endpoints.values()
        return {
            "status": "ok" if ok else "degraded",
            "mqtt": {
                link.role.name: {"connected": link.connected, "error": link.last_error}
                for link in self.links
            },
            "influxdb": {"reachable": influx_ok, "error": self.writer.last_error},
            "store": {"ok": not stalled, "error": stalled[0] if stalled else None},
            "endpoints": endpoints,
            "telemetry_pending": self.writer.pending,
        }

    def api_context(self) -> ApiContext:
        """What the API reads."""
        return ApiContext(
            self.store, self.fleet, self.stats, self.health,
            extra_stats=self._gauges, linkage=self.settings.linkage,
            on_alarms=self.dispatcher.wake, registry_writer=self.registry_store,
            cameras=self.video.cameras, evidence_dir=self.settings.video_quality.evidence_dir,
            sessions=lambda: {link.role.name: link.connected for link in self.links},
            endpoints=self.dispatcher.endpoint_states, flooding=self.ingest.flooding,
        )  # fmt: skip

    def _gauges(self) -> dict[str, float]:
        counts = self.fleet.tracker.counts()
        return {
            "points_pending": self.writer.pending,
            "devices": len(self.fleet.tracker),
            "devices_online": counts["online"],
            "devices_offline": counts["offline"],
            "devices_unknown": counts["unknown"],
            "devices_registered": len(self.fleet.registry.devices),
            "coverage_ms": round(self.fleet.coverage_ms, 1),
            "registry_version": self.fleet.registry.version,
        }


def telemetry_sink(settings: InfluxSettings) -> InfluxV1Sink | InfluxV2Sink:
    """The sink influxdb.api selects: v1 (/write) or v2 (/api/v2/write, influxdb-client)."""
    if settings.api == "v2":
        from gateway.storage.influx_v2 import InfluxV2Sink  # 0.4 s of imports only v2 needs

        return InfluxV2Sink(settings)
    return InfluxV1Sink(settings)


def spool_dir(settings: Settings) -> Path:
    """spool.path, or `spool` next to the alarm store."""
    return settings.spool.path or settings.store.path.parent / "spool"


async def _prepare_influx(sink: TelemetrySink) -> None:
    # InfluxDB being down must not stop alarms: warn and let the writer retry.
    try:
        await sink.prepare()
    except Exception as exc:
        log.warning("InfluxDB not ready (%s); telemetry is buffered until it is", exc)


async def _shutdown(
    writer: TelemetryWriter, server: uvicorn.Server, background: list[asyncio.Task[None]]
) -> None:
    log.info("stopping: flushing %d telemetry points", writer.pending)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.flush(), timeout=10)
    if writer.pending:
        log.warning(
            "stopping with %d telemetry points in the spool; they are written after the next start",
            writer.pending,
        )
    server.should_exit = True
    for task in background:
        if task.get_name() != "api":
            task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    log.info("stopped")
