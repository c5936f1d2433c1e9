"""MQTT adapter: one paho-mqtt 2.x client driven by the asyncio loop, acknowledging manually.

Why paho: with `manual_ack=True` a QoS 1 PUBACK is sent only when we call `ack`, i.e. after the
message's alarm or dead letter is committed (docs/decisions.md). The socket is watched with
`add_reader`/`add_writer` (paho's own asyncio pattern), so no thread of ours touches it.
The session is persistent (fixed client id, clean_session=False): what the broker queued while the
gateway was down arrives after restart; unacknowledged messages are redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import MqttSettings
from gateway.mqtt_client import BulkClient
from gateway.stats import Stats

log = logging.getLogger(__name__)


class Inbound(NamedTuple):
    """A received message; `generation` ties its mid to the connection it arrived on.

    (A NamedTuple: one is made per message, in a third of a frozen dataclass's time.)"""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    generation: int


Handler = Callable[[list[Inbound]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LinkRole:
    """What one of the gateway's MQTT sessions is for.

    Alarms must never wait behind telemetry, so events have a session (and so a broker queue)
    of their own: a backlog of status messages cannot delay a press.
    """

    name: str
    client_id: str
    topics: tuple[str, ...]
    ignore: Callable[[str], bool]
    announce: bool


def roles(settings: MqttSettings) -> tuple[LinkRole, LinkRole]:
    """The events session (`<id>-ev`) and the telemetry session (`<id>`, everything else)."""
    root = settings.topic_root
    gateway_prefix = f"{root}/_gateway/"

    def is_event(topic: str) -> bool:
        return topic.count("/") == 4 and topic.endswith("/event")

    events = LinkRole("events", f"{settings.client_id}-ev", (f"{root}/+/+/+/event",),
                      ignore=lambda t: not is_event(t), announce=False)  # fmt: skip
    telemetry = LinkRole(
        "telemetry", settings.client_id, (f"{root}/#",),
        ignore=lambda t: t.startswith(gateway_prefix) or is_event(t), announce=True,
    )  # fmt: skip
    return events, telemetry


class MqttLink:
    """Owns the connection: reconnects, subscribes, hands batches to a handler, acks them."""

    def __init__(
        self, settings: MqttSettings, role: LinkRole, stats: Stats, batch_max: int = 500,
        max_queued: int = 50_000,
    ) -> None:  # fmt: skip
        self._settings = settings
        # Read but unhandled messages at most (QoS 0 has no in-flight window to stop the broker):
        # past it the socket is not read until half have been handled, and the broker queues.
        self._max_queued = max_queued
        self._paused: socket.socket | None = None
        self.role = role
        self._stats = stats
        self._batch_max = batch_max
        self._queue: asyncio.Queue[Inbound] = asyncio.Queue()
        self._generation = 0
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.last_error: str | None = None
        self._closing = False
        self.stalled: str | None = None
        self.on_connected: Callable[[], None] | None = None
        self.status_topic = f"{settings.topic_root}/_gateway/{settings.client_id}/availability"
        self._client = self._make_client()

    @property
    def connected(self) -> bool:
        """True while the broker accepted our CONNECT and the socket is up."""
        return self._connected.is_set()

    def _make_client(self) -> BulkClient:
        s = self._settings
        client = BulkClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.role.client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
            manual_ack=True,
            deliver=self._deliver,
        )
        if s.username:
            client.username_pw_set(
                s.username, s.password.get_secret_value() if s.password else None
            )
        if self.role.announce:
            client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        return client

    # --- paho callbacks (run inside loop_read/loop_write on the event loop) ----------------

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_reader(sock, self._read_ready, sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2048 * 1024)

    def _read_ready(self, sock: socket.socket) -> None:
        # One read of up to 64 KiB per loop turn (gateway/mqtt_client.py): the consumer gets a
        # batch (one commit, one wake-up), and the loop is never held for long.
        if self._queue.qsize() >= self._max_queued:
            assert self._loop is not None
            self._loop.remove_reader(sock)
            self._paused = sock
            self._stats.mqtt_read_pauses += 1
            return
        self._client.loop_read()

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._paused = None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused connection: {reason}"
            log.error("%s", self.last_error)
            return
        self._generation += 1
        self._stats.mqtt_connects += 1
        client.subscribe([(topic, 1) for topic in self.role.topics])
        if self.role.announce:
            client.publish(self.status_topic, b"online", qos=1, retain=True)
        self.last_error = None
        self._connected.set()
        if self.on_connected is not None:
            self.on_connected()
        log.info(
            "MQTT connected to %s:%d as %s (session present: %s)",
            self._settings.host, self._settings.port, self.role.client_id,
            flags.session_present,
        )  # fmt: skip

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if self._connected.is_set() and not self._closing:
            log.warning("MQTT connection lost: %s", reason)
        self._connected.clear()
        self._lost.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        # What paho reads itself (QoS 2); the rest comes through _deliver.
        self._deliver(msg.topic, bytes(msg.payload), msg.qos, msg.mid, msg.retain)

    def _deliver(self, topic: str, payload: bytes, qos: int, mid: int, retain: bool) -> None:
        if self.role.ignore(topic):  # another session's, or the gateways' own status
            if qos > 0:
                self._client.ack(mid, qos)
            return
        self._stats.messages_in += 1
        self._queue.put_nowait(Inbound(topic, payload, qos, mid, retain, self._generation))

    # --- our side -------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> bool:
        """Queue a QoS 1 publication; False when not connected (the caller decides)."""
        if not self.connected:
            return False
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        return bool(info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS)

    def ack(self, items: list[Inbound]) -> None:
        """Acknowledge processed messages; ones from an earlier connection are left for the
        broker to redeliver (their mids mean nothing on this connection)."""
        if not self.connected:
            return
        generation, mids = self._generation, []
        for item in items:
            if item.qos == 1 and item.generation == generation:
                mids.append(item.mid)
            elif item.qos == 2 and item.generation == generation:
                self._client.ack(item.mid, item.qos)
                self._stats.messages_acked += 1
        self._client.ack_many(mids)  # one write for the batch, not one per message
        self._stats.messages_acked += len(mids)

    async def run(self, handler: Handler, stop: asyncio.Event) -> None:
        """Connect (and reconnect) until `stop`, passing batches of messages to `handler`."""
        self._loop = asyncio.get_running_loop()
        consumer = asyncio.create_task(self._consume(handler, stop), name="mqtt-consume")
        try:
            await self._connection_loop(stop)
        finally:
            await consumer
            await self._disconnect()

    async def _connection_loop(self, stop: asyncio.Event) -> None:
        delay = 0.1
        while not stop.is_set():
            if await self._connect_once():
                delay = 0.1
                await self._serve_until_lost(stop)
            else:
                await _wait(stop, delay)
                delay = min(delay * 2, self._settings.reconnect_max_s)

    async def _connect_once(self) -> bool:
        s = self._settings
        self._lost.clear()
        try:
            rc = self._client.connect(s.host, s.port, keepalive=s.keepalive_s)
        except OSError as exc:
            self.last_error = f"cannot reach broker {s.host}:{s.port}: {exc}"
            log.warning("%s", self.last_error)
            return False
        return bool(rc == MQTTErrorCode.MQTT_ERR_SUCCESS)

    async def _serve_until_lost(self, stop: asyncio.Event) -> None:
        lost = asyncio.create_task(self._lost.wait())
        stopped = asyncio.create_task(stop.wait())
        try:
            while not (lost.done() or stopped.done()):
                await asyncio.wait({lost, stopped}, timeout=1.0)
                self._client.loop_misc()  # keepalive pings
        finally:
            lost.cancel()
            stopped.cancel()

    async def _consume(self, handler: Handler, stop: asyncio.Event) -> None:
        while not (stop.is_set() and self._queue.empty()):
            batch = await self._next_batch(stop)
            if batch and await self._handle(handler, batch, stop):
                self.ack(batch)

    async def _handle(self, handler: Handler, batch: list[Inbound], stop: asyncio.Event) -> bool:
        """Hand a batch over until it is stored; never acknowledge what could not be stored."""
        delay = 0.5
        while True:
            try:
                await handler(batch)
            except Exception as exc:
                self._stats.store_errors += 1
                self.stalled = f"{type(exc).__name__}: {exc}"
                log.error(
                    "CANNOT STORE %d %s messages, NOT acknowledging them (the broker keeps "
                    "them); retrying in %.1f s: %s",
                    len(batch), self.role.name, delay, self.stalled,
                )  # fmt: skip
                if stop.is_set():
                    return False
                await _wait(stop, delay)
                delay = min(delay * 2, 5.0)
                continue
            if self.stalled is not None:
                log.warning("%s messages are stored again", self.role.name)
            self.stalled = None
            return True

    async def _next_batch(self, stop: asyncio.Event) -> list[Inbound]:
        if self._queue.empty():
            getter = asyncio.ensure_future(self._queue.get())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({getter, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not getter.done():
                getter.cancel()
                return []
            batch = [getter.result()]
        else:
            batch = []
        while len(batch) < self._batch_max and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if self._paused is not None and self._queue.qsize() <= self._max_queued // 2:
            assert self._loop is not None
            self._loop.add_reader(self._paused, self._read_ready, self._paused)
            self._paused = None
        return batch

    async def _disconnect(self) -> None:
        self._closing = True
        if not self.connected:
            return
        if not self.role.announce:
            self._client.disconnect()
            return
        info = self._client.publish(self.status_topic, b"offline", qos=1, retain=True)
        deadline = time.monotonic() + 2.0
        # paho offers no awaitable for a PUBACK; poll briefly so the retained offline lands.
        while not info.is_published() and time.monotonic() < deadline and self.connected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        self._client.disconnect()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
