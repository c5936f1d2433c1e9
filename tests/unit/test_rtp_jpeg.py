"""RFC 2435 packetizing: a JPEG split into RTP packets and rebuilt as the RFC says (headers from
type, Q, size and tables, standard Huffman tables) decodes to exactly the pixels of the original."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from simulators.camera_scenes import Scene
from simulators.rtp_jpeg import (
    MTU,
    STANDARD_HUFFMAN,
    JpegError,
    RtpJpeg,
    parse,
    payloads,
    prepare,
    rtp_packet,
)


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    return Scene(3, 640, 360, "gate").frame(12 * 3600.0, label="s1/c1")


def encode(frame: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85, *params])
    assert ok
    return data.tobytes()


def decode(jpeg: bytes) -> np.ndarray:
    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None
    return frame


def packets(jpeg: bytes, seq: int = 65530, timestamp: int = 123456) -> list[bytes]:
    frame = payloads(parse(jpeg))
    return [rtp_packet(p, seq=seq + i, timestamp=timestamp, ssrc=0xCAFE, marker=i == len(frame) - 1)
            for i, p in enumerate(frame)]  # fmt: skip


def segment(marker: int, body: bytes) -> bytes:
    return struct.pack("!BBH", 0xFF, marker, len(body) + 2) + body


def reassemble(rtp: list[bytes]) -> bytes:
    """A JPEG from RTP packets, the receiver's side of RFC 2435 (sections 3.1 and 4, appendix A),
    written from the RFC: nothing of the sender's but the standard Huffman tables."""
    scan, header = bytearray(), None
    for packet in rtp:
        payload = packet[12:]
        offset = int.from_bytes(payload[1:4], "big")
        kind, q, width, height = payload[4:8]
        data = payload[8:]
        if offset == 0:
            assert q == 255 and data[0] == 0 and data[1] == 0  # MBZ, 8-bit precision
            length = int.from_bytes(data[2:4], "big")
            tables, data = data[4 : 4 + length], data[4 + length :]
            header = (kind, width * 8, height * 8, tables)
        assert offset == len(scan)
        scan += data
    assert header is not None
    kind, width, height, tables = header
    luma = 0x21 if kind == 0 else 0x22
    dqt = b"".join(bytes([i]) + tables[64 * i : 64 * i + 64] for i in range(len(tables) // 64))
    sof = struct.pack("!BHHB", 8, height, width, 3) + bytes([1, luma, 0, 2, 0x11, 1, 3, 0x11, 1])
    dht = b"".join(bytes([key]) + table for key, table in STANDARD_HUFFMAN.items())
    sos = bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0])
    return (b"\xff\xd8" + segment(0xDB, dqt) + segment(0xC0, sof) + segment(0xC4, dht)
            + segment(0xDA, sos) + bytes(scan) + b"\xff\xd9")  # fmt: skip


def test_parse_reads_size_type_tables_and_the_scan(picture: np.ndarray) -> None:
    jpeg = encode(picture)
    frame = parse(jpeg)
    assert (frame.width, frame.height, frame.type) == (640, 360, 1)  # cv2: 4:2:0
    tables = [
        jpeg[i + 5 : i + 69] for i in range(len(jpeg)) if jpeg[i : i + 4] == b"\xff\xdb\x00\x43"
    ]
    assert frame.qtables == b"".join(tables) and len(frame.qtables) == 128
    assert jpeg.endswith(frame.scan + b"\xff\xd9")
    assert jpeg[: -len(frame.scan) - 2].endswith(b"\x00\x3f\x00")  # the end of the SOS header
    assert b"\xff\x00" in frame.scan  # byte stuffing is scan data, not a marker


def test_packets_follow_rfc_2435(picture: np.ndarray) -> None:
    jpeg = encode(picture)
    rtp = packets(jpeg)
    assert len(rtp) > 10 and all(len(p) <= MTU for p in rtp)
    assert len(rtp[0]) == MTU
    seqs, offsets = [], []
    for i, p in enumerate(rtp):
        first, second, seq, timestamp, ssrc = struct.unpack("!BBHII", p[:12])
        assert (first, second & 0x7F, timestamp, ssrc) == (0x80, 26, 123456, 0xCAFE)
        assert bool(second & 0x80) == (i == len(rtp) - 1)  # the marker ends the frame
        assert p[12] == 0 and p[16:20] == bytes([1, 255, 640 // 8, 360 // 8])
        seqs.append(seq)
        offsets.append(int.from_bytes(p[13:16], "big"))
    assert seqs[:7] == [65530, 65531, 65532, 65533, 65534, 65535, 0]  # wraps
    assert rtp[0][20:24] == b"\x00\x00\x00\x80"  # quantization table header, first packet only
    sizes = [len(p) - 20 for p in rtp]
    sizes[0] -= 4 + 128
    assert offsets == [sum(sizes[:i]) for i in range(len(rtp))]
    assert sum(sizes) == len(parse(jpeg).scan)


@pytest.mark.parametrize(
    ("sampling", "kind"),
    [(cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, 1), (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422, 0)],
)
def test_a_reassembled_frame_decodes_to_the_same_pixels(
    picture: np.ndarray, sampling: int, kind: int
) -> None:
    jpeg = encode(picture, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling)
    assert parse(jpeg).type == kind
    rebuilt = reassemble(packets(jpeg))
    assert np.array_equal(decode(rebuilt), decode(jpeg))


def test_noise_and_black_frames_round_trip() -> None:
    noise = np.random.default_rng(1).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    for frame in (noise, np.zeros((72, 96, 3), np.uint8)):
        jpeg = encode(frame)
        assert np.array_equal(decode(reassemble(packets(jpeg))), decode(jpeg))


def test_one_packet_frame() -> None:
    jpeg = encode(np.full((16, 16, 3), 128, np.uint8))
    rtp = packets(jpeg)
    assert len(rtp) == 1 and rtp[0][1] & 0x80
    assert np.array_equal(decode(reassemble(rtp)), decode(jpeg))


@pytest.mark.parametrize(
    ("params", "shape", "reason"),
    [
        ((cv2.IMWRITE_JPEG_PROGRESSIVE, 1), (360, 640, 3), "not baseline"),
        ((cv2.IMWRITE_JPEG_OPTIMIZE, 1), (360, 640, 3), "not the standard one"),
        ((cv2.IMWRITE_JPEG_RST_INTERVAL, 4), (360, 640, 3), "restart markers"),
        ((cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444), (360, 640, 3),
         "sampling"),
        ((), (360, 640), "1 components"),
        ((), (362, 642, 3), "not a multiple of 8"),
        ((), (200, 2048, 3), "up to 2040"),
    ],
)  # fmt: skip
def test_what_cannot_be_sent_is_named_and_prepare_re_encodes_it(
    picture: np.ndarray, params: tuple[int, ...], shape: tuple[int, ...], reason: str
) -> None:
    frame = cv2.resize(picture, (shape[1], shape[0]))
    if len(shape) == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    jpeg = encode(frame, *params)
    with pytest.raises(JpegError, match=reason):
        parse(jpeg)
    sendable = prepare(jpeg)
    scale = min(1.0, 2040 / shape[1])  # shrunk to fit, then cropped to a multiple of 8
    width, height = (int(shape[1] * scale) // 8 * 8, int(shape[0] * scale) // 8 * 8)
    assert (sendable.width, sendable.height) == (width, height)
    rebuilt = decode(reassemble([rtp_packet(p, seq=0, timestamp=0, ssrc=0, marker=False)
                                 for p in payloads(sendable)]))  # fmt: skip
    assert rebuilt.shape == (height, width, 3)
    if scale == 1:
        original = decode(jpeg)[:height, :width]
        assert np.abs(rebuilt.astype(int) - original).mean() < 3  # re-encoded: close, not equal


def test_prepare_keeps_what_can_be_sent(picture: np.ndarray) -> None:
    jpeg = encode(picture)
    assert prepare(jpeg) == parse(jpeg)


@pytest.mark.parametrize("data", [b"", b"GIF89a", b"\xff\xd8\xff\xe0\x00\x10JFIF"])
def test_not_a_jpeg(data: bytes) -> None:
    with pytest.raises(JpegError):
        parse(data)
    with pytest.raises(JpegError):
        prepare(data)


def test_an_mtu_without_room_for_data_is_refused() -> None:
    frame = RtpJpeg(1, 16, 16, bytes(128), b"\x00" * 10)
    with pytest.raises(ValueError, match="no room"):
        payloads(frame, mtu=150)
    assert len(payloads(frame, mtu=200)) == 1
