"""SIA DC-09 framing, pure: build and parse DC-09 messages and map alarms to SIA DC-03 events.

A frame is `<LF><crc><0LLL>"<id>"<seq>[R<rcvr>]L<pref>#<acct>[<data>]...<timestamp><CR>`; crc and
length cover everything from the opening quote of the id to the timestamp. Encrypted frames
(`"*SIA-DCS"`) carry, after the `[`, the hex of AES-CBC (zero IV) over pad + data + timestamp.
"""

from __future__ import annotations

import re
import secrets
import string
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.models import Alarm, Kind

SIA_DCS = "SIA-DCS"
NULL = "NULL"
MAX_BODY = 0xFFF  # the length field is 0LLL: three hex digits
TIMESTAMP_FORMAT = "%H:%M:%S,%m-%d-%Y"
PAD_ALPHABET = string.ascii_letters + string.digits  # DC-09: anything but '|', '[' and ']'

_BODY = re.compile(
    r'"(?P<enc>\*)?(?P<id>[A-Z-]{3,7})"(?P<seq>\d{4})(?P<route>[^\[]*)\[(?P<rest>.*)'
)
_TIMESTAMP = re.compile(r"_(\d\d:\d\d:\d\d,\d\d-\d\d-\d{4})$")
_ROUTE_R = re.compile(r"R([0-9A-F]{1,6})")
_ROUTE_L = re.compile(r"L([0-9A-F]{1,6})")
_ROUTE_ACCT = re.compile(r"#([0-9A-F]{3,16})")
_BARE = re.compile(rb'\s*"\*?(ACK|NAK|DUH)"\s*$')
_UNSAFE = re.compile(r"[^ -~]|[\[\]|^]")


class FrameError(ValueError):
    """Bytes that are not a valid DC-09 frame (bad CRC, length, syntax or encryption)."""


# --- primitives --------------------------------------------------------------------------------


def crc16(data: bytes) -> int:
    """CRC-16/ARC (polynomial 0x8005 reflected as 0xA001, initial value 0), as DC-09 specifies."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def format_timestamp(at: datetime) -> str:
    """`_HH:MM:SS,MM-DD-YYYY` in UTC, the DC-09 message timestamp."""
    return "_" + at.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """The UTC datetime of `HH:MM:SS,MM-DD-YYYY` (without the leading underscore)."""
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise FrameError(f"bad timestamp {text!r}") from exc


def next_seq(seq: int) -> int:
    """The sequence number after seq: 0001 ... 9999, then 0001 again."""
    return seq % 9999 + 1


def random_pad(length: int) -> str:
    """length random pad characters (letters and digits, never '|', '[' or ']')."""
    return "".join(secrets.choice(PAD_ALPHABET) for _ in range(length))


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    if len(key) not in (16, 24, 32):
        raise ValueError("AES key must be 16, 24 or 32 bytes")
    return Cipher(algorithms.AES(key), modes.CBC(bytes(16)))


def encrypt(key: bytes, text: str, pad: Callable[[int], str] = random_pad) -> str:
    """Upper-case hex of AES-CBC(zero IV) over pad + text, padded at the front to 16 bytes.

    text starts with '|' (SIA data) or ']' (NULL, acknowledgements); 1 to 16 pad characters
    go before it, so a receiver drops everything up to that first '|' or ']'.
    """
    plain = (pad(16 - len(text) % 16) + text).encode("ascii")
    encryptor = _cipher(key).encryptor()
    return (encryptor.update(plain) + encryptor.finalize()).hex().upper()


def decrypt(key: bytes, hex_text: str) -> str:
    """The plaintext of an encrypted block with its pad removed; FrameError if it is not one."""
    try:
        data = bytes.fromhex(hex_text)
    except ValueError as exc:
        raise FrameError("encrypted block is not hex") from exc
    if not data or len(data) % 16:
        raise FrameError("encrypted block is not a multiple of 16 bytes")
    decryptor = _cipher(key).decryptor()
    try:
        plain = (decryptor.update(data) + decryptor.finalize()).decode("ascii")
    except UnicodeDecodeError as exc:
        raise FrameError("cannot decrypt (wrong key?)") from exc
    cut = min((i for i in (plain.find("|"), plain.find("]")) if i >= 0), default=-1)
    if cut < 0 or not plain.isprintable():
        raise FrameError("cannot decrypt (wrong key?)")
    return plain[cut + 1 :] if plain[cut] == "|" else plain[cut:]


# --- frames ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """Who a message is from: receiver number, line prefix and account (header fields)."""

    account: str
    line: str = "0"
    receiver: str | None = None

    def header(self) -> str:
        """`R<rcvr>L<pref>#<acct>` as it follows the sequence number."""
        receiver = f"R{self.receiver}" if self.receiver is not None else ""
        return f"{receiver}L{self.line}#{self.account}"


def wrap(body: str) -> bytes:
    """`<LF><crc><0LLL><body><CR>`: frame a message body."""
    raw = body.encode("ascii")
    if len(raw) > MAX_BODY:
        raise ValueError(f"DC-09 message of {len(raw)} bytes exceeds {MAX_BODY}")
    return b"\n" + f"{crc16(raw):04X}{len(raw):04X}".encode() + raw + b"\r"


def build_frame(
    msg_id: str,
    seq: int,
    route: Route,
    data: str,
    at: datetime,
    key: bytes | None = None,
    pad: Callable[[int], str] = random_pad,
) -> bytes:
    """One DC-09 frame. data is what follows '[' (`#acct|N...]` + extended data, or `]`).

    With a key the id becomes `*id` and data + timestamp are encrypted; SIA data then gets
    the DC-09 '|' separator after the pad.
    """
    if not 1 <= seq <= 9999:
        raise ValueError(f"sequence number {seq} is not 1..9999")
    tail = data + format_timestamp(at)
    if key is None:
        return wrap(f'"{msg_id}"{seq:04d}{route.header()}[{tail}')
    text = tail if tail.startswith("]") else "|" + tail
    return wrap(f'"*{msg_id}"{seq:04d}{route.header()}[{encrypt(key, text, pad)}')


@dataclass(frozen=True, slots=True)
class Frame:
    """A parsed DC-09 frame; data is decrypted, without pad and timestamp."""

    msg_id: str
    encrypted: bool
    seq: int
    route: str
    data: str
    timestamp: datetime | None

    @property
    def account(self) -> str | None:
        """The `#acct` of the header, if any."""
        found = _ROUTE_ACCT.search(self.route)
        return found.group(1) if found else None

    @property
    def receiver(self) -> str | None:
        """The receiver number of the header, if any."""
        found = _ROUTE_R.search(self.route)
        return found.group(1) if found else None

    @property
    def line(self) -> str | None:
        """The line prefix of the header, if any."""
        found = _ROUTE_L.search(self.route)
        return found.group(1) if found else None


def parse_frame(raw: bytes, key: bytes | None = None) -> Frame:
    """Check CRC and length of `<LF>...<CR>` and parse it; FrameError says what is wrong."""
    raw = raw.strip(b"\n\r")
    if len(raw) < 9 or raw[8:9] != b'"':
        raise FrameError(f"not a DC-09 frame: {raw[:40]!r}")
    head, body = raw[:8], raw[8:]
    try:
        crc, length = int(head[:4], 16), int(head[4:], 16)
    except ValueError as exc:
        raise FrameError(f"bad CRC/length field {head!r}") from exc
    if crc != crc16(body):
        raise FrameError(f"CRC mismatch: frame says {crc:04X}, computed {crc16(body):04X}")
    if length != len(body):
        raise FrameError(f"length mismatch: frame says {length}, body has {len(body)}")
    found = _BODY.fullmatch(body.decode("ascii", "replace"))
    if found is None:
        raise FrameError(f"bad DC-09 header: {body[:40]!r}")
    rest, encrypted = found["rest"], found["enc"] is not None
    if encrypted:
        if key is None:
            raise FrameError("encrypted frame but no key")
        rest = decrypt(key, rest)
    stamp = _TIMESTAMP.search(rest)
    timestamp = parse_timestamp(stamp.group(1)) if stamp else None
    data = rest[: stamp.start()] if stamp else rest
    return Frame(found["id"], encrypted, int(found["seq"]), found["route"], data, timestamp)


def take_frame(buffer: bytes) -> tuple[bytes | None, bytes]:
    """Split one `<LF>...<CR>` frame off the front of buffer: (frame or None, the rest).

    Bytes before the LF are dropped. A bare `"NAK"` (no frame; pysiaalarm answers an unknown
    plain-text account so) is returned as it is.
    """
    if _BARE.match(buffer):
        return buffer.strip(), b""
    start = buffer.find(b"\n")
    if start < 0:
        return None, b"" if len(buffer) > 2 * MAX_BODY else buffer
    end = buffer.find(b"\r", start)
    if end < 0:
        return None, buffer[start:]
    return buffer[start : end + 1], buffer[end + 1 :]


def bare_reply(raw: bytes) -> str | None:
    """ACK, NAK or DUH if raw is an unframed reply like `"NAK"`, else None."""
    found = _BARE.match(raw)
    return found.group(1).decode() if found else None


REPLY_IDS = ("ACK", "NAK", "DUH", "RSP")


@dataclass(frozen=True, slots=True)
class Reply:
    """A receiver's answer to one message: ACK, NAK, DUH or RSP."""

    kind: str
    timestamp: datetime | None = None
    bare: bool = False


def _judge(raw: bytes, seq: int, key: bytes | None) -> Reply | str:
    bare = bare_reply(raw)
    if bare is not None:
        return Reply(bare, bare=True) if bare != "ACK" else "unframed ACK"
    try:
        frame = parse_frame(raw, key)
    except FrameError as exc:
        return str(exc)
    if frame.msg_id not in REPLY_IDS:
        return f"unexpected {frame.msg_id} message"
    if frame.msg_id == "NAK":  # sequence 0000: a NAK answers whatever was sent
        return Reply("NAK", frame.timestamp)
    if frame.seq != seq:
        return f"{frame.msg_id} for sequence {frame.seq:04d}, not {seq:04d}"
    if key is not None and frame.msg_id != "DUH" and not frame.encrypted:
        return f"plain-text {frame.msg_id} to an encrypted message"
    return Reply(frame.msg_id, frame.timestamp)


def match_reply(
    buffer: bytes, seq: int, key: bytes | None
) -> tuple[Reply | None, bytes, list[str]]:
    """Take frames off buffer until one answers message seq: (reply, rest, ignored frames).

    Frames with a bad CRC, length or key, stale sequence numbers and plain-text ACKs to
    encrypted messages are ignored (each with the reason), as DC-09 has a receiver ignore them.
    """
    ignored: list[str] = []
    while True:
        raw, buffer = take_frame(buffer)
        if raw is None:
            return None, buffer, ignored
        verdict = _judge(raw, seq, key)
        if isinstance(verdict, Reply):
            return verdict, buffer, ignored
        ignored.append(verdict)


# --- alarms as SIA DC-03 events ----------------------------------------------------------------

CATEGORY_CODES = {"police": "PA", "fire": "FA", "medical": "MA", "intrusion": "BA"}
TROUBLE_CODE = "YS"  # communications trouble: a linkage delivery is failing
TEST_CODE = "TX"  # test report; the category goes in the alarm text
UNKNOWN_CODE = "UA"  # untyped zone alarm
ZONE_CODES = frozenset({*CATEGORY_CODES.values(), UNKNOWN_CODE})  # codes followed by a zone
AREAS = {Kind.BUTTON: 1, Kind.GATE: 2, Kind.CAMERA: 3}
XDATA_MAX = 64


def sia_code(alarm: Alarm) -> str:
    """The two-letter SIA event code of an alarm (test alarms are TX whatever the category)."""
    if alarm.test:
        return TEST_CODE
    if alarm.category == "trouble":
        return TROUBLE_CODE
    return CATEGORY_CODES.get(alarm.category, UNKNOWN_CODE)


def zone_number(alarm: Alarm) -> int:
    """The device as a SIA zone 1..9999: CRC-32 of school/kind/device mod 9999, plus 1.

    Stable for a device but not unique across a campus; the extended data names the device.
    """
    key = f"{alarm.school}/{alarm.kind}/{alarm.device}".encode()
    return zlib.crc32(key) % 9999 + 1


def xdata_text(text: str) -> str:
    """text safe inside `[...]`: printable ASCII without `[ ] | ^`, at most 64 characters."""
    return _UNSAFE.sub("?", text)[:XDATA_MAX]


def alarm_data(alarm: Alarm, account: str) -> str:
    """The SIA DCS data block and extended data of an alarm, e.g.

    `#1234|Nri1/PA0042][Sschool-1][Lbutton/b-17][Ipolice press a-1][H08:00:00,11-23-2026]`:
    ri = device family (1 button, 2 gate, 3 camera), the code, the zone (zone codes only);
    S site = school, L location = kind/device, I alarm text, H time of occurrence (UTC).
    """
    code = sia_code(alarm)
    zone = f"{zone_number(alarm):04d}" if code in ZONE_CODES else ""
    text = f"{'TEST ' if alarm.test else ''}{alarm.category} {alarm.event} {alarm.id}"
    extended = [
        f"S{xdata_text(alarm.school)}",
        f"L{xdata_text(f'{alarm.kind}/{alarm.device}')}",
        f"I{xdata_text(text)}",
        f"H{format_timestamp(alarm.device_ts)[1:]}",
    ]
    area = AREAS.get(alarm.kind, 0)
    return f"#{account}|Nri{area}/{code}{zone}]" + "".join(f"[{x}]" for x in extended)
