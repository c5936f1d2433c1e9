"""The one place that wires everything from Settings and runs it in a TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from datetime import UTC, datetime
from typing import Any

import uvicorn

import drivers
from drivers.base import Driver
from gateway.api.app import ApiContext, create_app
from gateway.config import ConfigError, Settings
from gateway.devices import DeviceTracker
from gateway.forwarding import Dispatcher
from gateway.ingest import Ingest
from gateway.linkage.http import HttpForwarder
from gateway.models import Topic
from gateway.mqtt import Inbound, MqttLink
from gateway.ports import NewDeadLetter
from gateway.stats import Stats
from gateway.storage.influx import InfluxV1Sink
from gateway.storage.sqlite import SqliteAlarmStore
from gateway.telemetry import TelemetryWriter

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
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
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
    stats = Stats()
    async with (
        SqliteAlarmStore(settings.store.path) as store,
        InfluxV1Sink(settings.influxdb) as sink,
        HttpForwarder(settings.linkage.endpoints) as forwarder,
    ):
        await _prepare_influx(sink)

        def reject(lines: bytes, reason: str) -> None:
            letter = NewDeadLetter("influxdb:/write", lines, reason, datetime.now(UTC))
            task = asyncio.create_task(store.commit([], [letter]))
            task.add_done_callback(lambda t: t.exception())

        i = settings.influxdb
        writer = TelemetryWriter(
            sink, stats, i.batch_size, i.flush_interval_s, i.max_buffer, on_rejected=reject
        )
        dispatcher = Dispatcher(
            store, forwarder, stats, settings.linkage.retry_initial_s, settings.linkage.retry_max_s
        )
        devices = DeviceTracker()
        ingest = Ingest(
            settings, router, store, writer.add, devices, stats,
            on_alarms=lambda ids: dispatcher.wake(),
        )  # fmt: skip
        link = MqttLink(settings.mqtt, stats)

        async def health() -> dict[str, Any]:
            influx_ok = writer.healthy and await sink.ping()
            return {
                "status": "ok" if link.connected and influx_ok else "degraded",
                "mqtt": {"connected": link.connected, "error": link.last_error},
                "influxdb": {"reachable": influx_ok, "error": writer.last_error},
                "telemetry_pending": writer.pending,
            }

        ctx = ApiContext(
            store, devices, stats, health,
            extra_stats=lambda: {"points_pending": writer.pending, "devices": len(devices)},
        )  # fmt: skip
        server = uvicorn.Server(
            uvicorn.Config(create_app(ctx), log_level="warning", lifespan="off", access_log=False)
        )

        async def handle(batch: list[Inbound]) -> None:
            await ingest.handle([(m.topic, m.payload) for m in batch])

        log.info("gateway started; API on http://%s:%d", settings.api.host, settings.api.port)
        background = [
            asyncio.create_task(writer.run(), name="telemetry"),
            asyncio.create_task(dispatcher.run(), name="dispatcher"),
            asyncio.create_task(server.serve(sockets=[api_socket]), name="api"),
        ]
        try:
            await link.run(handle, stop)
        finally:
            await _shutdown(writer, server, background)


async def _prepare_influx(sink: InfluxV1Sink) -> None:
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
        log.error("stopping with %d telemetry points unwritten", writer.pending)
    server.should_exit = True
    for task in background:
        if task.get_name() != "api":
            task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    log.info("stopped")
