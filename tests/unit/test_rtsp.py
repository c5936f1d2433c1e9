"""The camera simulator's RTSP server without sockets: requests in, responses and interleaved RTP
out, through a writer that keeps what was written and a feed of fixed frames; and the feed of
the simulator's cameras, faults included."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import struct
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest

from simulators.camera_control import FaultBoard
from simulators.camera_scenes import decode_jpeg
from simulators.cameras import CameraSim, build_parser, make_cameras
from simulators.rtp_jpeg import parse
from simulators.rtsp import CameraFeed, Connection, RtspServer, interleaved_channel, read_request

URL = "rtsp://127.0.0.1:8554/s1/c1"


class Transport:
    def __init__(self) -> None:
        self.closing, self.buffered = False, 0

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered


class Writer:
    """What a connection wrote: responses and interleaved packets, in order."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.transport = Transport()

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.transport.closing = True

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 8554) if name == "sockname" else None

    def take(self) -> bytes:
        data, self.data = bytes(self.data), bytearray()
        return data


class Feed:
    def __init__(self, jpeg: bytes) -> None:
        self.jpeg, self.sending, self.frames = jpeg, True, 0

    def knows(self, path: str) -> bool:
        return path == "s1/c1"

    def available(self, path: str) -> bool:
        return self.sending

    async def frame(self, path: str) -> bytes | None:
        self.frames += 1
        return self.jpeg


@pytest.fixture
def jpeg() -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((64, 96, 3), 90, np.uint8))
    assert ok
    return data.tobytes()


@pytest.fixture
def feed(jpeg: bytes) -> Feed:
    return Feed(jpeg)


@pytest.fixture
def client(feed: Feed) -> tuple[Connection, Writer]:
    writer = Writer()
    return Connection(RtspServer(feed, fps=50), writer), writer  # type: ignore[arg-type]


async def ask(client: tuple[Connection, Writer], text: str) -> tuple[int, dict[str, str], str]:
    """Send one request (lines of text); the status, headers and body of the response."""
    connection, writer = client
    request = await read_request(reader_of(text.replace("\n", "\r\n").encode() + b"\r\n\r\n"))
    assert request is not None
    connection.handle(request)
    head, _, body = writer.take().partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body.decode()


async def until(predicate: Callable[[], Any], within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def set_up(client: tuple[Connection, Writer]) -> str:
    """DESCRIBE and SETUP over TCP; the session id."""
    await ask(client, f"DESCRIBE {URL} RTSP/1.0\nCSeq: 1")
    status, headers, _ = await ask(
        client,
        f"SETUP {URL}/track1 RTSP/1.0\nCSeq: 2\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1",
    )
    assert status == 200
    return headers["Session"].split(";")[0]


def frames(data: bytes) -> list[list[bytes]]:
    """The RTP packets of interleaved data, grouped into frames by the marker bit."""
    out: list[list[bytes]] = [[]]
    while data:
        assert data[0] == 0x24, data[:16]
        channel, length = struct.unpack("!BH", data[1:4])
        packet, data = data[4 : 4 + length], data[4 + length :]
        assert channel == 0
        out[-1].append(packet)
        if packet[1] & 0x80:
            out.append([])
    return out[:-1]


async def test_requests_are_read_between_interleaved_client_packets() -> None:
    rtcp = b"$\x01\x00\x08" + bytes(8)
    text = b"GET_PARAMETER rtsp://h/s1/c1 RTSP/1.0\r\nCSeq: 7\r\nContent-Length: 4\r\n\r\nping"
    reader = reader_of(rtcp + text + rtcp)
    request = await read_request(reader)
    assert request is not None
    assert (request.method, request.path, request.headers["cseq"], request.body) == (
        "GET_PARAMETER", "s1/c1", "7", b"ping")  # fmt: skip
    assert await read_request(reader) is None
    with pytest.raises(ValueError):
        await read_request(reader_of(b"HELLO\r\n\r\n"))


def test_the_transport_header_picks_tcp_interleaving() -> None:
    assert interleaved_channel("RTP/AVP/TCP;unicast;interleaved=2-3") == 2
    assert interleaved_channel("RTP/AVP;unicast;client_port=5000-5001,RTP/AVP/TCP;unicast") == 0
    assert interleaved_channel("RTP/AVP/UDP;unicast;client_port=5000-5001") is None
    assert interleaved_channel("") is None


async def test_options_and_describe(client: tuple[Connection, Writer], feed: Feed) -> None:
    status, headers, _ = await ask(client, f"OPTIONS {URL} RTSP/1.0\nCSeq: 1")
    assert (status, headers["CSeq"]) == (200, "1")
    assert set(headers["Public"].split(", ")) >= {"DESCRIBE", "SETUP", "PLAY", "TEARDOWN"}
    status, headers, body = await ask(client, f"DESCRIBE {URL} RTSP/1.0\nCSeq: 2")
    assert (status, headers["Content-Type"], headers["Content-Base"]) == (
        200, "application/sdp", URL + "/")  # fmt: skip
    assert "m=video 0 RTP/AVP 26\r\n" in body and "a=control:track1\r\n" in body
    assert int(headers["Content-Length"]) == len(body)
    assert (await ask(client, "DESCRIBE rtsp://h/s1/c9 RTSP/1.0\nCSeq: 3"))[0] == 404
    feed.sending = False
    assert (await ask(client, f"DESCRIBE {URL} RTSP/1.0\nCSeq: 4"))[0] == 503


async def test_udp_is_refused_with_461_then_tcp_is_set_up(
    client: tuple[Connection, Writer],
) -> None:
    udp = "Transport: RTP/AVP/UDP;unicast;client_port=5000-5001"
    status, headers, _ = await ask(client, f"SETUP {URL}/track1 RTSP/1.0\nCSeq: 3\n{udp}")
    assert status == 461 and "Session" not in headers
    tcp = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1"
    status, headers, _ = await ask(client, f"SETUP {URL}/track1 RTSP/1.0\nCSeq: 4\n{tcp}")
    assert status == 200
    assert headers["Transport"].startswith("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=")
    assert headers["Session"].endswith(";timeout=60")
    assert (await ask(client, f"SETUP {URL}/track1 RTSP/1.0\nCSeq: 5\n{tcp}"))[0] == 455


async def test_play_streams_the_feed_as_rtp_until_teardown(
    client: tuple[Connection, Writer], feed: Feed, jpeg: bytes
) -> None:
    session = await set_up(client)
    assert (await ask(client, f"PLAY {URL}/ RTSP/1.0\nCSeq: 3\nSession: nobody"))[0] == 454
    status, headers, _ = await ask(client, f"PLAY {URL}/ RTSP/1.0\nCSeq: 4\nSession: {session}")
    assert status == 200
    info = dict(item.split("=", 1) for item in headers["RTP-Info"].split(";"))
    assert info["url"] == f"{URL}/track1"
    connection, writer = client
    await until(lambda: len(frames(bytes(writer.data))) >= 3)
    sent = frames(writer.take())
    first = sent[0][0]
    assert struct.unpack("!H", first[2:4])[0] == int(info["seq"])
    assert (struct.unpack("!I", first[4:8])[0] - int(info["rtptime"])) % 2**32 < 90_000  # < 1 s
    scan = b"".join(p[12 + 8 + (132 if i == 0 else 0) :] for i, p in enumerate(sent[1]))
    assert scan == parse(jpeg).scan
    stamps = [struct.unpack("!I", f[0][4:8])[0] for f in sent[:3]]
    gaps = [(b - a) % 2**32 for a, b in itertools.pairwise(stamps)]
    assert all(900 <= gap <= 45_000 for gap in gaps), gaps  # 90 kHz; frames 1/50 s apart
    status, _, _ = await ask(client, f"TEARDOWN {URL}/ RTSP/1.0\nCSeq: 5\nSession: {session}")
    assert status == 200 and connection.session is None
    before = feed.frames
    await asyncio.sleep(0.1)  # five frame times
    assert writer.take() == b"" and connection.server.streams == {}
    assert feed.frames == before  # nobody plays it: no frames are made


async def test_a_stopped_camera_closes_its_connections(
    client: tuple[Connection, Writer], feed: Feed
) -> None:
    session = await set_up(client)
    await ask(client, f"PLAY {URL}/ RTSP/1.0\nCSeq: 3\nSession: {session}")
    connection, writer = client
    feed.sending = False
    await until(lambda: writer.transport.closing)
    assert connection.server.streams == {}


async def test_a_client_that_does_not_read_is_skipped_frames(
    client: tuple[Connection, Writer],
) -> None:
    session = await set_up(client)
    connection, writer = client
    writer.transport.buffered = 10 * 2**20
    await ask(client, f"PLAY {URL}/ RTSP/1.0\nCSeq: 3\nSession: {session}")
    await until(lambda: connection.server.stats["skipped"] >= 3)
    assert writer.take() == b""
    connection.close_session()


async def test_unknown_methods_are_not_implemented(client: tuple[Connection, Writer]) -> None:
    status, headers, _ = await ask(client, f"RECORD {URL} RTSP/1.0\nCSeq: 9")
    assert status == 501 and "PLAY" in headers["Public"]


async def test_a_frame_that_cannot_be_sent_ends_the_stream(
    client: tuple[Connection, Writer], feed: Feed, capsys: pytest.CaptureFixture[str]
) -> None:
    feed.jpeg = b"not a JPEG"
    session = await set_up(client)
    await ask(client, f"PLAY {URL}/ RTSP/1.0\nCSeq: 3\nSession: {session}")
    connection, writer = client
    await until(lambda: writer.transport.closing)
    assert connection.server.streams == {}
    assert "rtsp s1/c1: stream ended: JpegError('not a JPEG')" in capsys.readouterr().err


async def test_the_camera_feed_renders_frames_with_the_cameras_fault() -> None:
    parser = argparse.ArgumentParser()
    build_parser(parser)
    args = parser.parse_args(["--port", "0", "--width", "160", "--height", "96", "--light", "1"])
    sim = CameraSim(args, make_cameras([("s1", "c1", "")], 160, 96, 1), FaultBoard({"s1/c1"}))
    feed = CameraFeed(sim)
    assert feed.knows("s1/c1") and not feed.knows("s1/c2") and feed.available("s1/c1")
    first = await feed.frame("s1/c1")
    assert first is not None and (parse(first).width, parse(first).height) == (160, 96)
    assert await feed.frame("s1/c1") != first  # people move, noise changes
    sim.board.inject("s1/c1", "freeze", None, 1.0, sim.elapsed())
    frozen = await feed.frame("s1/c1")
    assert frozen is not None and await feed.frame("s1/c1") == frozen  # byte for byte
    sim.board.inject("s1/c1", "black", None, 1.0, sim.elapsed())
    black = await feed.frame("s1/c1")
    assert black is not None and decode_jpeg(black).mean() < 10
    sim.board.inject("s1/c1", "drop", None, 1.0, sim.elapsed())
    assert await feed.frame("s1/c1") is None and feed.available("s1/c1")
    sim.board.inject("s1/c1", "stop", None, 1.0, sim.elapsed())
    assert not feed.available("s1/c1")
