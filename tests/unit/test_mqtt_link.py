"""MqttLink without a broker: reading pauses when too many messages wait, and resumes."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from gateway.config import MqttSettings
from gateway.mqtt import Inbound, MqttLink, roles
from gateway.stats import Stats


class Loop:
    """Records the reader registrations MqttLink makes (the real loop would watch the socket)."""

    def __init__(self) -> None:
        self.readers: dict[Any, Any] = {}

    def add_reader(self, sock: Any, callback: Any, *args: Any) -> None:
        self.readers[sock] = callback

    def remove_reader(self, sock: Any) -> None:
        self.readers.pop(sock, None)


async def test_reading_pauses_past_max_queued_and_resumes_at_half() -> None:
    settings = MqttSettings()
    stats = Stats()
    link = MqttLink(settings, roles(settings)[1], stats, batch_max=10, max_queued=40)
    loop = Loop()
    link._loop = loop  # type: ignore[assignment]
    a, b = socket.socketpair()
    try:
        loop.add_reader(a, link._read_ready, a)
        for mid in range(40):
            link._queue.put_nowait(Inbound("campus/s1/button/b1/status", b"{}", 0, mid, False, 1))
        link._read_ready(a)  # 40 waiting: stop reading the socket
        assert a not in loop.readers and stats.mqtt_read_pauses == 1
        stop = asyncio.Event()
        sizes = []
        while a not in loop.readers:
            sizes.append(len(await link._next_batch(stop)))
        assert sizes == [10, 10] and link._queue.qsize() == 20  # resumed at half
    finally:
        a.close()
        b.close()
