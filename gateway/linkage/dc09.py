"""Forwarder adapter: SIA DC-09 to alarm receiving centres over TCP or UDP, main then backups.

One attempt tries the current receiver, then the others in configured order, each for at
most timeout_s. ACK (or RSP) confirms; NAK carries the receiver's clock, so the message is
rebuilt with a corrected timestamp and resent once; DUH and a second NAK are final answers
(no failover: the receiver is up and said no). Supervision sends NULL messages, main first.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from gateway.config import Dc09EndpointSettings, EndpointSettings
from gateway.linkage.dc09_frame import (
    NULL,
    SIA_DCS,
    Reply,
    Route,
    alarm_data,
    build_frame,
    match_reply,
    next_seq,
)
from gateway.models import Alarm
from gateway.ports import SendResult

log = logging.getLogger("campusgw.dc09")
UDP_SENDS = 3  # one datagram and two retransmissions, sharing timeout_s
SEQ_MEMORY = 256  # alarms whose retries reuse their sequence number (receivers drop repeats)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def parse_receiver(text: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class _NoAnswer(Exception):
    """The receiver gave no usable answer: refused, closed, timed out."""


class _Closed(Exception):
    """The receiver closed the TCP connection."""


def _os_error(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _ignored(notes: list[str]) -> str:
    return f" (ignored: {'; '.join(notes[:3])})" if notes else ""


@dataclass
class _Tcp:
    """An open connection to one receiver and what was read but not used yet."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    buffer: bytes = b""


@dataclass(frozen=True, slots=True)
class Dc09LinkStatus:
    """Where one DC-09 endpoint stands."""

    receiver: str  # host:port of the receiver tried first
    clock_offset_s: float = 0.0
    last_supervision: SendResult | None = None


@dataclass
class _Link:
    """One endpoint: its settings, sequence numbers, current receiver, clocks, connections."""

    name: str
    settings: Dc09EndpointSettings
    key: bytes | None
    route: Route
    receivers: list[tuple[str, int]]
    offsets: list[float]
    conns: list[_Tcp | None]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    seq: int = 0
    current: int = 0
    last_main_ok: float = -math.inf
    last_probe: float = -math.inf
    last_supervision: SendResult | None = None
    seq_by_alarm: OrderedDict[str, int] = field(default_factory=OrderedDict)

    @classmethod
    def of(cls, name: str, settings: Dc09EndpointSettings) -> _Link:
        key = bytes.fromhex(settings.key.get_secret_value()) if settings.key else None
        receiver = settings.receiver_number.upper() if settings.receiver_number else None
        route = Route(settings.account.upper(), settings.line_prefix[1:].upper(), receiver)
        receivers = [parse_receiver(r) for r in settings.receivers]
        n = len(receivers)
        return cls(name, settings, key, route, receivers, [0.0] * n, [None] * n)

    def seq_for(self, alarm_id: str | None) -> int:
        """A new sequence number, or the one an earlier attempt of this alarm used."""
        if alarm_id is not None and alarm_id in self.seq_by_alarm:
            self.seq_by_alarm.move_to_end(alarm_id)
            return self.seq_by_alarm[alarm_id]
        self.seq = next_seq(self.seq)
        if alarm_id is not None:
            self.seq_by_alarm[alarm_id] = self.seq
            if len(self.seq_by_alarm) > SEQ_MEMORY:
                self.seq_by_alarm.popitem(last=False)
        return self.seq

    def order(self, main_first: bool) -> list[int]:
        """Receiver indexes to try: the current one first, or the main one first."""
        first = 0 if main_first else self.current
        return [first, *(i for i in range(len(self.receivers)) if i != first)]

    def where(self, idx: int) -> str:
        return self.settings.receivers[idx]

    def answered(self, idx: int) -> None:
        self.current = idx
        if idx == 0:
            self.last_main_ok = time.monotonic()

    def drop(self, idx: int) -> None:
        conn, self.conns[idx] = self.conns[idx], None
        if conn is not None:
            conn.writer.close()


class Dc09Forwarder:
    """Forwarder speaking SIA DC-09; endpoints of other types are not its business."""

    def __init__(
        self,
        endpoints: Mapping[str, EndpointSettings],
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._links = {
            name: _Link.of(name, s)
            for name, s in endpoints.items()
            if isinstance(s, Dc09EndpointSettings)
        }
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Dc09Forwarder:
        for link in self._links.values():
            if link.settings.supervision_s > 0:
                task = asyncio.create_task(self._supervise(link), name=f"dc09-{link.name}")
                self._tasks.append(task)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for link in self._links.values():
            for idx in range(len(link.conns)):
                link.drop(idx)

    async def send(self, endpoint: str, alarm: Alarm) -> SendResult:
        """One attempt: the alarm as a SIA-DCS message, current receiver first, then the rest."""
        link = self._links.get(endpoint)
        if link is None:
            return SendResult(False, f"endpoint {endpoint!r} is not a configured dc09 endpoint")
        data = alarm_data(alarm, link.route.account)
        async with link.lock:
            seq = link.seq_for(alarm.id)
            return await self._deliver(link, SIA_DCS, seq, data, link.order(main_first=False))

    async def supervise(self, endpoint: str) -> SendResult:
        """Send one NULL (link test) message now, main receiver first; the loop calls this."""
        link = self._links.get(endpoint)
        if link is None:
            return SendResult(False, f"endpoint {endpoint!r} is not a configured dc09 endpoint")
        async with link.lock:
            link.last_probe = time.monotonic()
            result = await self._deliver(link, NULL, link.seq_for(None), "]", link.order(True))
        link.last_supervision = result
        return result

    def status(self, endpoint: str) -> Dc09LinkStatus:
        """The receiver tried first, its clock offset and the last supervision result.

        Raises KeyError for a name that is not a dc09 endpoint.
        """
        link = self._links[endpoint]
        return Dc09LinkStatus(
            link.where(link.current), link.offsets[link.current], link.last_supervision
        )

    async def _supervise(self, link: _Link) -> None:
        try:
            await self._supervision_loop(link)
        except Exception:
            log.exception("dc09 %s: supervision stopped", link.name)
            raise

    async def _supervision_loop(self, link: _Link) -> None:
        interval = link.settings.supervision_s
        while True:
            # Traffic acknowledged by the main receiver proves the path as well as a NULL does.
            main_ok = link.last_main_ok if link.current == 0 else -math.inf
            delay = max(main_ok, link.last_probe) + interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            result = await self.supervise(link.name)
            if not result.ok:
                log.warning("dc09 %s: supervision failed: %s", link.name, result.detail)

    async def _deliver(
        self, link: _Link, msg_id: str, seq: int, data: str, order: list[int]
    ) -> SendResult:
        notes: list[str] = []
        for idx in order:
            try:
                ok, text = await self._try(link, idx, msg_id, seq, data)
            except _NoAnswer as exc:
                notes.append(f"{link.where(idx)}: {exc}")
                continue
            notes.append(f"{link.where(idx)}: {text}")
            if ok:
                link.answered(idx)
            return SendResult(ok, f"{msg_id} {seq:04d} " + "; ".join(notes))
        return SendResult(False, f"{msg_id} {seq:04d} no receiver answered: " + "; ".join(notes))

    async def _try(
        self, link: _Link, idx: int, msg_id: str, seq: int, data: str
    ) -> tuple[bool, str]:
        reply = await self._exchange(link, idx, msg_id, seq, data)
        if reply.kind != "NAK" or reply.timestamp is None:
            return _verdict(reply, corrected=False)
        offset = (reply.timestamp - self._clock()).total_seconds()
        link.offsets[idx] = offset
        log.info("dc09 %s: %s clock offset %+.0f s", link.name, link.where(idx), offset)
        reply = await self._exchange(link, idx, msg_id, seq, data)
        ok, text = _verdict(reply, corrected=True)
        return ok, f"NAK (receiver clock {round(offset):+d} s), resent with that time: {text}"

    async def _exchange(self, link: _Link, idx: int, msg_id: str, seq: int, data: str) -> Reply:
        at = self._clock() + timedelta(seconds=link.offsets[idx])
        frame = build_frame(msg_id, seq, link.route, data, at, link.key)
        if link.settings.protocol == "udp":
            return await _udp_exchange(link.receivers[idx], frame, seq, link.key, link.settings)
        return await _tcp_exchange(link, idx, frame, seq)


def _verdict(reply: Reply, corrected: bool) -> tuple[bool, str]:
    if reply.kind in ("ACK", "RSP"):
        return True, reply.kind
    if reply.kind == "DUH":
        return False, "DUH: receiver cannot process the message (unknown account or event?)"
    if reply.bare:
        return False, "bare NAK (no frame): receiver does not know the account"
    if corrected:
        return False, "NAK again: receiver rejects the message (account or key?)"
    return False, "NAK without receiver time: message rejected"


async def _tcp_exchange(link: _Link, idx: int, frame: bytes, seq: int) -> Reply:
    timeout, ignored = link.settings.timeout_s, list[str]()
    try:
        async with asyncio.timeout(timeout):
            conn = link.conns[idx]
            if conn is not None and not conn.reader.at_eof():
                try:
                    return await _roundtrip(conn, frame, seq, link.key, ignored)
                except (_Closed, ConnectionError):
                    pass  # the receiver closed the idle connection: reconnect once
            link.drop(idx)
            host, port = link.receivers[idx]
            conn = link.conns[idx] = _Tcp(*await asyncio.open_connection(host, port))
            return await _roundtrip(conn, frame, seq, link.key, ignored)
    except TimeoutError:
        link.drop(idx)
        raise _NoAnswer(f"no answer within {timeout:g} s{_ignored(ignored)}") from None
    except _Closed:
        link.drop(idx)
        raise _NoAnswer(f"connection closed by the receiver{_ignored(ignored)}") from None
    except OSError as exc:
        link.drop(idx)
        raise _NoAnswer(_os_error(exc)) from None


async def _roundtrip(
    conn: _Tcp, frame: bytes, seq: int, key: bytes | None, ignored: list[str]
) -> Reply:
    conn.buffer = b""  # anything unread belongs to an earlier message
    conn.writer.write(frame)
    await conn.writer.drain()
    while True:
        reply, conn.buffer, skipped = match_reply(conn.buffer, seq, key)
        ignored.extend(skipped)
        if reply is not None:
            return reply
        chunk = await conn.reader.read(4096)
        if not chunk:
            raise _Closed
        conn.buffer += chunk


class _UdpReplies(asyncio.DatagramProtocol):
    """Queues every datagram and socket error (ICMP port unreachable) of one exchange."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | OSError] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.queue.put_nowait(exc if isinstance(exc, OSError) else OSError(str(exc)))


async def _udp_exchange(
    address: tuple[str, int],
    frame: bytes,
    seq: int,
    key: bytes | None,
    settings: Dc09EndpointSettings,
) -> Reply:
    loop, ignored = asyncio.get_running_loop(), list[str]()
    try:
        transport, replies = await loop.create_datagram_endpoint(_UdpReplies, remote_addr=address)
    except OSError as exc:
        raise _NoAnswer(_os_error(exc)) from None
    try:
        for _ in range(UDP_SENDS):
            transport.sendto(frame)
            reply = await _udp_wait(replies, seq, key, settings.timeout_s / UDP_SENDS, ignored)
            if reply is not None:
                return reply
    finally:
        transport.close()
    raise _NoAnswer(
        f"no answer to {UDP_SENDS} datagrams within {settings.timeout_s:g} s{_ignored(ignored)}"
    )


async def _udp_wait(
    replies: _UdpReplies, seq: int, key: bytes | None, wait: float, ignored: list[str]
) -> Reply | None:
    try:
        async with asyncio.timeout(wait):
            while True:
                item = await replies.queue.get()
                if isinstance(item, OSError):
                    raise _NoAnswer(_os_error(item))
                reply, _, skipped = match_reply(item, seq, key)
                ignored.extend(skipped)
                if reply is not None:
                    return reply
    except TimeoutError:
        return None
