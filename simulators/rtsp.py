"""RTSP for the camera simulator: each camera as a live Motion-JPEG stream (RFC 2326, RFC 2435).

`campusgw simulate cameras --rtsp-port PORT` serves rtsp://HOST:PORT/{school}/{device}, one
video track (`m=video 0 RTP/AVP 26`, control `track1`) per camera. RTP goes interleaved in the
RTSP connection (RTP/AVP/TCP, RFC 2326 section 10.12); a SETUP asking for UDP only is answered
461 Unsupported Transport, on which FFmpeg (and so cv2.VideoCapture) asks again for TCP.
Methods: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN and GET_PARAMETER (a keepalive); one session
per connection, which ends with it.

While at least one session plays a camera, its frames are rendered --rtsp-fps times a second
(simulators/rtp_jpeg.py sends each JPEG) with the camera's current fault from the same fault
board as MQTT and HTTP: `freeze` repeats the last streamed frame byte for byte, `drop` sends
nothing (the connection stays open), `stop` closes the camera's connections and answers DESCRIBE
503. Each session has its own SSRC, sequence numbers and 90 kHz timestamps (from the sending
time); a client that does not read is skipped frames (at most MAX_BUFFERED bytes wait for it).
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from simulators.rtp_jpeg import CLOCK_RATE, PAYLOAD_TYPE, payloads, prepare, rtp_packet

if TYPE_CHECKING:
    from simulators.cameras import CameraSim

TRACK = "track1"
PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"
MAX_BUFFERED = 4 * 2**20  # bytes waiting for a slow client, beyond which its frames are skipped
SESSION_TIMEOUT_S = 60
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 454: "Session Not Found",
           455: "Method Not Valid in This State", 461: "Unsupported Transport",
           501: "Not Implemented", 503: "Service Unavailable"}  # fmt: skip


class Feed(Protocol):
    """Where the streams' frames come from (CameraFeed for the camera simulator)."""

    def knows(self, path: str) -> bool:
        """There is a camera at this path ("school/device")."""

    def available(self, path: str) -> bool:
        """It is sending (not stopped)."""

    async def frame(self, path: str) -> bytes | None:
        """Its next JPEG, or None to send nothing this time (a dropped frame)."""


class CameraFeed:
    """The camera simulator's cameras as a Feed, faults included (see the module docstring)."""

    def __init__(self, sim: CameraSim) -> None:
        self.sim = sim
        self.last: dict[str, bytes] = {}  # the last frame streamed per camera, for freeze

    def knows(self, path: str) -> bool:
        return path in self.sim.by_key

    def available(self, path: str) -> bool:
        fault = self.sim.fault(self.sim.by_key[path])
        return fault is None or fault.fault != "stop"

    async def frame(self, path: str) -> bytes | None:
        camera = self.sim.by_key[path]
        fault = self.sim.fault(camera)
        name = None if fault is None else fault.fault
        if name == "drop":
            return None
        if name == "freeze" and path in self.last:
            return self.last[path]
        async with self.sim.workers:
            jpeg = await asyncio.to_thread(self.sim.render, camera, fault, time.time())
        self.last[path] = jpeg
        return jpeg


@dataclass(eq=False)
class Session:
    """One client's RTP session, interleaved on its RTSP connection."""

    id: str
    path: str
    url: str  # the track's URL, as the client named it in SETUP
    writer: asyncio.StreamWriter
    channel: int  # the interleaved channel of RTP (RTCP would be channel + 1)
    ssrc: int = field(default_factory=lambda: secrets.randbits(32))
    seq: int = field(default_factory=lambda: secrets.randbits(16))
    base: int = field(default_factory=lambda: secrets.randbits(32))
    started: float = 0.0
    playing: bool = False

    def send(self, frame: list[bytes], stats: Counter[str]) -> None:
        """Write one frame's packets, unless the client has too much unread already."""
        transport = self.writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() > MAX_BUFFERED:
            stats["skipped"] += 1
            return
        timestamp = self.base + round((time.monotonic() - self.started) * CLOCK_RATE)
        packets = []
        for i, payload in enumerate(frame):
            packet = rtp_packet(payload, seq=self.seq, timestamp=timestamp, ssrc=self.ssrc,
                                marker=i == len(frame) - 1)  # fmt: skip
            packets.append(struct.pack("!BBH", 0x24, self.channel, len(packet)) + packet)
            self.seq = (self.seq + 1) & 0xFFFF
        self.writer.write(b"".join(packets))
        stats["frames"] += 1


class Stream:
    """One camera's frames while sessions play it: fetched at fps, sent to each of them."""

    def __init__(self, server: RtspServer, path: str) -> None:
        self.server, self.path = server, path
        self.sessions: set[Session] = set()
        self.jpeg, self.frame = b"", [b""]  # the latest, and its payloads
        self.task: asyncio.Task[None] | None = None

    def join(self, session: Session) -> None:
        self.sessions.add(session)
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name=f"rtsp {self.path}")

    async def _run(self) -> None:
        server, due = self.server, time.monotonic()
        try:
            while self.sessions:
                if not server.feed.available(self.path):
                    self._end()
                    break
                jpeg = await server.feed.frame(self.path)
                if jpeg is not None and jpeg is not self.jpeg:
                    self.jpeg, self.frame = jpeg, await asyncio.to_thread(_packetize, jpeg)
                if jpeg is not None:
                    for session in list(self.sessions):
                        session.send(self.frame, server.stats)
                due = max(due + 1 / server.fps, time.monotonic() - 1 / server.fps)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
        except Exception as exc:  # a frame that cannot be made or sent: end, do not hang clients
            print(f"rtsp {self.path}: stream ended: {exc!r}", file=sys.stderr, flush=True)
            self._end()
        finally:
            del server.streams[self.path]

    def _end(self) -> None:
        """Close the connections of the sessions playing this stream."""
        for session in self.sessions:
            session.writer.close()
        self.sessions.clear()


def _packetize(jpeg: bytes) -> list[bytes]:
    return payloads(prepare(jpeg))


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def path(self) -> str:
        """The camera ("school/device") the URL names, with or without the track."""
        return urlsplit(self.url).path.strip("/").removesuffix(f"/{TRACK}")


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request; interleaved data from the client (RTCP reports) is read and dropped.
    None at the end of the connection; ValueError if the request is malformed."""
    while True:
        first = await reader.read(1)
        if not first:
            return None
        if first != b"$":
            break
        head = await reader.readexactly(3)
        await reader.readexactly(int.from_bytes(head[1:], "big"))
    text = (first + await reader.readuntil(b"\r\n\r\n")).decode("utf-8", "replace")
    lines = text.split("\r\n")
    method, url, version = lines[0].split(" ")
    if not version.startswith("RTSP/"):
        raise ValueError(f"not an RTSP request: {lines[0]!r}")
    headers = {}
    for line in filter(None, lines[1:]):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    return Request(method, url, headers, await reader.readexactly(length) if length else b"")


def response(status: int, cseq: str, headers: dict[str, str] | None = None,
             body: bytes = b"") -> bytes:  # fmt: skip
    """An RTSP/1.0 response."""
    lines = [f"RTSP/1.0 {status} {REASONS[status]}", f"CSeq: {cseq}", "Server: campusgw-sim"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sdp(path: str, host: str, fps: float) -> bytes:
    """The session description of a camera: one Motion-JPEG track."""
    lines = ["v=0", f"o=- {secrets.randbits(31)} 1 IN IP4 {host}", f"s={path}",
             "c=IN IP4 0.0.0.0", "t=0 0", "a=control:*", "a=range:npt=0-",
             f"m=video 0 RTP/AVP {PAYLOAD_TYPE}", f"a=rtpmap:{PAYLOAD_TYPE} JPEG/{CLOCK_RATE}",
             f"a=framerate:{fps:g}", f"a=control:{TRACK}"]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n").encode()


def interleaved_channel(transport: str) -> int | None:
    """The RTP channel of the first RTP/AVP/TCP choice in a Transport header; None if none."""
    for spec in transport.split(","):
        params = spec.strip().split(";")
        if params[0].upper() != "RTP/AVP/TCP":
            continue
        for param in params[1:]:
            name, _, value = param.partition("=")
            if name.strip() == "interleaved":
                return int(value.split("-")[0])
        return 0
    return None


class Connection:
    """One client connection: its requests, answered in order, and its session."""

    def __init__(self, server: RtspServer, writer: asyncio.StreamWriter) -> None:
        self.server, self.writer = server, writer
        self.session: Session | None = None

    def handle(self, request: Request) -> None:
        """Answer a request (and start or stop the session's stream)."""
        cseq = request.headers.get("cseq", "0")
        handler = getattr(self, "_" + request.method.lower(), None)
        if request.method not in PUBLIC.split(", ") or handler is None:
            self.writer.write(response(501, cseq, {"Public": PUBLIC}))
            return
        if request.method in ("PLAY", "TEARDOWN") and not self._ours(request):
            self.writer.write(response(454, cseq))
            return
        handler(request, cseq)

    def _ours(self, request: Request) -> bool:
        given = request.headers.get("session", "").split(";")[0].strip()
        return self.session is not None and given == self.session.id

    def _session_header(self) -> dict[str, str]:
        return {} if self.session is None else {"Session": self.session.id}

    def _options(self, request: Request, cseq: str) -> None:
        self.writer.write(response(200, cseq, {"Public": PUBLIC, **self._session_header()}))

    def _get_parameter(self, request: Request, cseq: str) -> None:
        self.writer.write(response(200, cseq, self._session_header()))

    def _describe(self, request: Request, cseq: str) -> None:
        feed, path = self.server.feed, request.path
        if not feed.knows(path):
            self.writer.write(response(404, cseq))
        elif not feed.available(path):
            self.writer.write(response(503, cseq))
        else:
            host = self.writer.get_extra_info("sockname")[0]
            base = request.url.rstrip("/") + "/"
            headers = {"Content-Type": "application/sdp", "Content-Base": base}
            body = sdp(path, host, self.server.fps)
            self.writer.write(response(200, cseq, headers, body))

    def _setup(self, request: Request, cseq: str) -> None:
        path, channel = request.path, interleaved_channel(request.headers.get("transport", ""))
        if not self.server.feed.knows(path):
            self.writer.write(response(404, cseq))
        elif self.session is not None:
            self.writer.write(response(455, cseq, self._session_header()))
        elif channel is None:  # UDP: the client asks again for TCP
            self.writer.write(response(461, cseq))
        else:
            self.session = Session(secrets.token_hex(8), path, request.url, self.writer, channel)
            s = self.session
            transport = f"RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1};ssrc={s.ssrc:08X}"
            headers = {"Transport": transport, "Session": f"{s.id};timeout={SESSION_TIMEOUT_S}"}
            self.writer.write(response(200, cseq, headers))
            self.server.stats["sessions"] += 1

    def _play(self, request: Request, cseq: str) -> None:
        session = self.session
        assert session is not None  # handle() checked it
        info = f"url={session.url};seq={session.seq};rtptime={session.base}"
        headers = {"Session": session.id, "Range": "npt=0.000-", "RTP-Info": info}
        self.writer.write(response(200, cseq, headers))
        if not session.playing:
            session.playing, session.started = True, time.monotonic()
            self.server.stream(session.path).join(session)

    def _teardown(self, request: Request, cseq: str) -> None:
        self.close_session()
        self.writer.write(response(200, cseq))

    def close_session(self) -> None:
        """Stop sending the session's frames and forget it."""
        if self.session is not None:
            stream = self.server.streams.get(self.session.path)
            if stream is not None:
                stream.sessions.discard(self.session)
            self.session = None


class RtspServer:
    """The RTSP server: connections, and a Stream per camera being played."""

    def __init__(self, feed: Feed, fps: float = 5.0) -> None:
        self.feed, self.fps = feed, fps
        self.streams: dict[str, Stream] = {}
        self.stats: Counter[str] = Counter()  # sessions, frames (sent), skipped
        self.connections: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}  # and their handlers
        self.server: asyncio.Server | None = None

    def stream(self, path: str) -> Stream:
        """The camera's stream, created when the first session plays it."""
        if path not in self.streams:
            self.streams[path] = Stream(self, path)
        return self.streams[path]

    async def start(self, host: str, port: int) -> RtspServer:
        """Listen on host:port (OSError if it cannot)."""
        self.server = await asyncio.start_server(self._connection, host, port)
        return self

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self.server is not None:
            self.server.close()
        for writer in list(self.connections):
            writer.close()
        for stream in list(self.streams.values()):
            if stream.task is not None:
                stream.task.cancel()
        if self.connections:  # handlers end with their connection, not cancelled at exit
            await asyncio.wait(self.connections.values(), timeout=2)
        if self.server is not None:
            await self.server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(self, writer)
        handler = asyncio.current_task()
        assert handler is not None
        self.connections[writer] = handler
        try:
            while (request := await read_request(reader)) is not None:
                connection.handle(request)
                await writer.drain()
        except ValueError:
            writer.write(response(400, "0"))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            connection.close_session()
            del self.connections[writer]
            writer.close()
