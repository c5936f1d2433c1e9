"""JPEG frames as RTP payloads (RFC 2435, payload type 26) for the camera simulator's RTSP server.

RFC 2435 does not carry a JPEG file: it carries the entropy-coded scan of a baseline JPEG with
a few header fields (type, Q, width and height in 8-pixel blocks), and the receiver rebuilds the
headers from them with the standard Huffman tables (JPEG Annex K.3). A frame can therefore be
sent only if it is a baseline, single-scan YCbCr JPEG with those Huffman tables, luma sampled 2x1
(type 0, 4:2:2) or 2x2 (type 1, 4:2:0) and chroma 1x1, quantization tables 0 (luma) and 1
(chroma) of 8-bit precision, no restart markers, and a size that is a multiple of 8 up to 2040
pixels. cv2.imencode's JPEGs are (4:2:0, standard tables); `prepare` re-encodes any other.

Tables travel in-band (Q = 255): every frame's first packet has the quantization table header,
so each frame is decoded with exactly the tables it was encoded with.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import cv2
import numpy as np

PAYLOAD_TYPE = 26  # JPEG, a static RTP/AVP payload type (RFC 3551)
CLOCK_RATE = 90_000  # Hz, the RTP clock of video
MAX_SIZE = 2040  # pixels: 255 blocks of 8
MTU = 1400  # bytes of an RTP packet (header included) at most
Q_IN_BAND = 255  # quantization tables in each frame's first packet (RFC 2435 section 4.2)

# JPEG Annex K.3, as a DHT segment lists them: class << 4 | id -> 16 counts of codes by length,
# then the symbols.
STANDARD_HUFFMAN = {
    0x00: bytes.fromhex("00010501010101010100000000000000 000102030405060708090a0b"),
    0x01: bytes.fromhex("00030101010101010101010000000000 000102030405060708090a0b"),
    0x10: bytes.fromhex(
        "0002010303020403050504040000017d "
        "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a16"
        "1718191a25262728292a3435363738393a434445464748494a535455565758595a63646566676869"
        "6a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6"
        "b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8"
        "f9fa"
    ),
    0x11: bytes.fromhex(
        "00020102040403040705040400010277 "
        "000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a162434"
        "e125f11718191a262728292a35363738393a434445464748494a535455565758595a636465666768"
        "696a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4"
        "b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8"
        "f9fa"
    ),
}
_TYPES = {0x21: 0, 0x22: 1}  # luma sampling (h << 4 | v) -> RFC 2435 type
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")  # a marker: neither stuffing nor a restart
_SOI, _EOI, _SOS, _DQT, _DHT, _DRI, _SOF0 = 0xD8, 0xD9, 0xDA, 0xDB, 0xC4, 0xDD, 0xC0


class JpegError(ValueError):
    """The JPEG cannot be sent as RFC 2435 payload as it is; the message says why."""


@dataclass(frozen=True)
class RtpJpeg:
    """What RFC 2435 carries of a baseline JPEG."""

    type: int  # 0: 4:2:2, 1: 4:2:0
    width: int  # pixels, a multiple of 8
    height: int
    qtables: bytes  # table 0 (luma) then table 1 (chroma), 64 bytes each in zigzag order
    scan: bytes  # the entropy-coded data between the SOS header and EOI


@dataclass
class _Headers:
    qtables: dict[int, bytes]
    frame: RtpJpeg | None = None  # from SOF0, with no tables or scan yet


def parse(data: bytes) -> RtpJpeg:
    """The RFC 2435 parts of a JPEG; JpegError if it cannot be sent as it is."""
    if data[:2] != b"\xff\xd8":
        raise JpegError("not a JPEG")
    headers, at = _Headers({}), 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise JpegError(f"no marker at byte {at}")
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        body = data[at + 4 : at + 2 + length]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker == _SOS:
            return _scan(data, at + 2 + length, body, headers)
        _segment(marker, body, headers)
        at += 2 + length
    raise JpegError("no scan (SOS) in the JPEG")


def _segment(marker: int, body: bytes, headers: _Headers) -> None:
    if marker == _DQT:
        while body:
            precision, table_id = body[0] >> 4, body[0] & 15
            if precision:
                raise JpegError("16-bit quantization tables")
            headers.qtables[table_id], body = body[1:65], body[65:]
    elif marker == _DHT:
        while body:
            size = 17 + sum(body[1:17])
            if STANDARD_HUFFMAN.get(body[0]) != body[1:size]:
                raise JpegError(f"Huffman table {body[0]:#04x} is not the standard one")
            body = body[size:]
    elif marker == _DRI and int.from_bytes(body[:2], "big"):
        raise JpegError("restart markers")
    elif marker == _SOF0:
        headers.frame = _frame(body)
    elif 0xC1 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
        raise JpegError(f"not baseline (SOF{marker - 0xC0})")


def _frame(body: bytes) -> RtpJpeg:
    bits, height, width, count = struct.unpack_from("!BHHB", body)
    components = [body[6 + 3 * i : 9 + 3 * i] for i in range(count)]
    if bits != 8:
        raise JpegError(f"{bits}-bit samples")
    if count != 3:
        raise JpegError(f"{count} components, not YCbCr")
    sampling, tables = [c[1] for c in components], [c[2] for c in components]
    if sampling[0] not in _TYPES or sampling[1:] != [0x11, 0x11] or tables != [0, 1, 1]:
        raise JpegError(f"sampling {bytes(sampling).hex()}, tables {tables}: not RFC 2435's")
    for name, size in (("width", width), ("height", height)):
        if size % 8 or not 0 < size <= MAX_SIZE:
            raise JpegError(f"{name} {size} is not a multiple of 8 up to {MAX_SIZE}")
    return RtpJpeg(_TYPES[sampling[0]], width, height, b"", b"")


def _scan(data: bytes, start: int, sos: bytes, headers: _Headers) -> RtpJpeg:
    if headers.frame is None:
        raise JpegError("no baseline frame header (SOF0) before the scan")
    if sos[0] != 3 or sos[2:7:2] != b"\x00\x11\x11" or sos[7:10] != b"\x00\x3f\x00":
        raise JpegError("the scan is not one sequential scan of Y, Cb, Cr")
    if set(headers.qtables) < {0, 1}:
        raise JpegError("quantization tables 0 and 1 are not both defined")
    end = _SCAN_END.search(data, start)
    if end is None or data[end.start() + 1] != _EOI:
        raise JpegError("the scan does not end with EOI (several scans?)")
    qtables = headers.qtables[0] + headers.qtables[1]
    return RtpJpeg(headers.frame.type, headers.frame.width, headers.frame.height, qtables,
                   data[start : end.start()])  # fmt: skip


def prepare(data: bytes, quality: int = 85) -> RtpJpeg:
    """`parse(data)`, or, if the JPEG cannot be sent as it is, the parts of it re-encoded by cv2
    (4:2:0, standard tables), cropped to a multiple of 8 and shrunk to fit 2040x2040."""
    try:
        return parse(data)
    except JpegError:
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if frame is None:
            raise
    height, width = frame.shape[:2]
    scale = min(1.0, MAX_SIZE / max(width, height))
    if scale < 1:
        width, height = int(width * scale), int(height * scale)
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    frame = frame[: height - height % 8, : width - width % 8]
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_PROGRESSIVE, 0,
              cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_RST_INTERVAL, 0,
              cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]  # fmt: skip
    ok, encoded = cv2.imencode(".jpg", frame, params)
    if not ok:
        raise JpegError("cv2 could not re-encode the frame")
    return parse(encoded.tobytes())


def payloads(frame: RtpJpeg, mtu: int = MTU) -> list[bytes]:
    """The RTP payloads of one frame, each at most mtu - 12 bytes (room for the RTP header):
    the 8-byte JPEG header, in the first also the quantization table header, then scan data."""
    room = mtu - 12 - 8
    tables = struct.pack("!BBH", 0, 0, len(frame.qtables)) + frame.qtables
    if room <= len(tables):
        raise ValueError(f"an MTU of {mtu} bytes leaves no room for scan data")
    out: list[bytes] = []
    offset = 0
    while offset < len(frame.scan) or not out:
        first = b"" if out else tables
        chunk = frame.scan[offset : offset + room - len(first)]
        header = struct.pack("!I4B", offset, frame.type, Q_IN_BAND, frame.width // 8,
                             frame.height // 8)  # fmt: skip
        out.append(header + first + chunk)  # the offset's top byte is the type-specific 0
        offset += len(chunk)
    return out


def rtp_packet(payload: bytes, *, seq: int, timestamp: int, ssrc: int, marker: bool) -> bytes:
    """An RTP packet (RFC 3550, version 2, no padding, extension or CSRC) of payload type 26."""
    second = (0x80 if marker else 0) | PAYLOAD_TYPE
    return struct.pack("!BBHII", 0x80, second, seq & 0xFFFF, timestamp & 0xFFFFFFFF,
                       ssrc) + payload  # fmt: skip
