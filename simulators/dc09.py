"""A SIA DC-09 alarm receiver (`campusgw dc09-sim`) that answers as told and records messages.

It listens on TCP and UDP at the same port, accepts one account (plain or with an AES key) and
answers each valid frame by its mode:

- ok             ACK (encrypted for an encrypted message); NAK with its clock when the message
                 timestamp is outside -40 s / +20 s of the receiver clock (DC-09), so a sender
                 can correct its clock; NAK when the account or key does not match
- nak            NAK with the receiver clock, whatever was sent
- duh            DUH (cannot process)
- silent         no answer at all
- wrong_account  answers as if the account were unknown: NAK with the receiver clock, as
                 pysiaalarm does (DC-09 leaves NAK or DUH to the receiver)

`--schedule 0-20=silent,40-60=wrong_account` switches modes in windows of seconds after the
start (outside them `--mode` applies), as the HTTP linkage simulator's `--schedule` does.

Frames with a bad CRC or length are ignored, as DC-09 requires. Simulators never import the
gateway, so CRC, framing and AES are written again here (a second implementation of
gateway/linkage/dc09_frame.py, checked against it and pysiaalarm by the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import secrets
import signal
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from simulators.linkage_schedule import Window, mode_at, parse_spec

MODES = ("ok", "nak", "duh", "silent", "wrong_account")
WINDOW_S = (-40.0, 20.0)  # message time minus receiver time that DC-09 accepts
STAMP = "%H:%M:%S,%m-%d-%Y"
log = logging.getLogger("campusgw.dc09_sim")

_BODY = re.compile(
    r'"(?P<enc>\*)?(?P<id>SIA-DCS|ADM-CID|NULL)"(?P<seq>\d{4})(?:R(?P<rcvr>[0-9A-F]{1,6}))?'
    r"L(?P<line>[0-9A-F]{1,6})#(?P<acct>[0-9A-F]{3,16})\[(?P<rest>.*)",
    re.DOTALL,
)
_SIA = re.compile(
    r"(?:#[0-9A-F]{3,16}\|)?N?(?:ri(?P<area>\d+)/)?(?P<code>[A-Z]{2})(?P<zone>\d*)[^\]]*\]"
    r"(?P<xdata>(?:\[[^\]]*\])*)$"
)
_STAMP = re.compile(r"_(\d\d:\d\d:\d\d,\d\d-\d\d-\d{4})$")


def crc16(data: bytes) -> int:
    """CRC-16/ARC as DC-09 uses it (duplicate of the gateway's; simulators stand alone)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def frame(body: str) -> bytes:
    """`<LF><crc><0LLL><body><CR>`."""
    raw = body.encode("ascii")
    return b"\n" + f"{crc16(raw):04X}{len(raw):04X}".encode() + raw + b"\r"


def _aes(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(bytes(16)))


def encrypt(key: bytes, text: str) -> str:
    """Hex of AES-CBC (zero IV) over random pad + text (text starts with '|' or ']')."""
    pad = "".join(secrets.choice("ABCDEFGHJKMNPQRSTUVWXYZ") for _ in range(16 - len(text) % 16))
    enc = _aes(key).encryptor()
    return (enc.update((pad + text).encode()) + enc.finalize()).hex().upper()


def decrypt(key: bytes, hex_text: str) -> str | None:
    """Plaintext after the pad, or None when it does not decrypt to DC-09 text."""
    try:
        data = bytes.fromhex(hex_text)
        dec = _aes(key).decryptor()
        plain = (dec.update(data) + dec.finalize()).decode("ascii")
    except ValueError:  # not hex, not whole blocks, not ASCII
        return None
    cuts = [i for i in (plain.find("|"), plain.find("]")) if i >= 0]
    if not cuts or not plain.isprintable():
        return None
    cut = min(cuts)
    return plain[cut + 1 :] if plain[cut] == "|" else plain[cut:]


@dataclass
class Message:
    """One frame that passed CRC and length checks, decoded, with the answer it got."""

    at: str  # arrival, receiver clock, RFC 3339
    protocol: str
    msg_id: str
    encrypted: bool
    seq: int
    account: str
    receiver: str | None
    line: str
    data: str | None  # decrypted, without timestamp; None if it could not be decrypted
    timestamp: str | None
    code: str | None = None
    area: str | None = None
    zone: str | None = None
    xdata: dict[str, str] = field(default_factory=dict)
    answer: str = "none"


def decode(raw: bytes, key: bytes | None, protocol: str, now: datetime) -> Message | str:
    """A frame as a Message, or the reason it is ignored (bad CRC, length or header)."""
    raw = raw.strip(b"\r\n")
    head, body = raw[:8], raw[8:]
    try:
        crc, length = int(head[:4], 16), int(head[4:], 16)
    except ValueError:
        return f"bad CRC/length field {head!r}"
    if crc != crc16(body) or length != len(body):
        return "CRC or length mismatch"
    found = _BODY.fullmatch(body.decode("ascii", "replace"))
    if found is None:
        return f"bad header {body[:40]!r}"
    rest: str | None = found["rest"]
    if found["enc"]:
        rest = decrypt(key, found["rest"]) if key else None
    msg = Message(
        now.isoformat(), protocol, found["id"], bool(found["enc"]), int(found["seq"]),
        found["acct"], found["rcvr"], found["line"], rest, None,
    )  # fmt: skip
    if rest is not None:
        _parse_data(msg, rest)
    return msg


def _parse_data(msg: Message, rest: str) -> None:
    stamp = _STAMP.search(rest)
    if stamp:
        msg.timestamp = datetime.strptime(stamp.group(1), STAMP).replace(tzinfo=UTC).isoformat()
        rest = rest[: stamp.start()]
    msg.data = rest
    sia = _SIA.match(rest) if msg.msg_id == "SIA-DCS" else None
    if sia:
        msg.code, msg.area, msg.zone = sia["code"], sia["area"], sia["zone"] or None
        items = sia["xdata"][1:-1].split("][") if sia["xdata"] else []
        msg.xdata = {item[0]: item[1:] for item in items if item}


class Dc09Receiver:
    """A DC-09 receiver on TCP and UDP at one port, for one account."""

    def __init__(
        self,
        account: str,
        key: bytes | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        mode: str = "ok",
        clock_offset_s: float = 0.0,
        record: Path | None = None,
        schedule: tuple[Window, ...] = (),
    ) -> None:
        self.account, self.key, self.host, self.port = account.upper(), key, host, port
        self.clock_offset_s, self.record = clock_offset_s, record
        self.mode = "ok"
        self.set_mode(mode)
        self.schedule, self._origin = schedule, time.monotonic()
        self.received: list[Message] = []
        self.ignored: list[str] = []
        self.connections = 0  # TCP connections accepted
        self._server: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    def set_mode(self, mode: str) -> None:
        """Change how the receiver answers from the next message on."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode

    def mode_now(self) -> str:
        """The mode of the schedule window we are in, else the base mode."""
        return mode_at(self.schedule, time.monotonic() - self._origin) or self.mode

    def now(self) -> datetime:
        """The receiver clock (UTC, shifted by clock_offset_s)."""
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)

    async def start(self) -> Dc09Receiver:
        """Listen on TCP, then UDP on the same port number (port 0 picks a free one)."""
        self._server = await asyncio.start_server(self._serve_tcp, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpServer(self), local_addr=(self.host, self.port)
        )
        return self

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()  # the handlers then read EOF and end
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=2.0)
            await self._server.wait_closed()
        self._server, self._udp = None, None

    def handle(self, raw: bytes, protocol: str = "tcp") -> bytes | None:
        """Decode one frame, record it and return the answer frame (None: no answer)."""
        now = self.now()
        msg = decode(raw, self.key, protocol, now)
        if isinstance(msg, str):
            self.ignored.append(msg)
            log.info("dc09-sim: ignored frame: %s", msg)
            return None
        answer = self._answer(msg, now)
        msg.answer = answer.split(b'"')[1].decode().lstrip("*") if answer else "none"
        self.received.append(msg)
        self._append(msg)
        return answer

    def _answer(self, msg: Message, now: datetime) -> bytes | None:
        mode = self.mode_now()
        if mode == "silent":
            return None
        route = f"R{msg.receiver or '0'}L{msg.line}"
        if mode in ("nak", "wrong_account") or not self._acceptable(msg, now):
            return frame(f'"NAK"0000{route}A0[]_{now:{STAMP}}')
        if mode == "duh":
            return frame(f'"DUH"{msg.seq:04d}{route}#{msg.account}[]')
        head = f'"{"*" if msg.encrypted else ""}ACK"{msg.seq:04d}{route}#{msg.account}['
        if msg.encrypted and self.key is not None:
            return frame(head + encrypt(self.key, f"]_{now:{STAMP}}"))
        return frame(head + "]")

    def _acceptable(self, msg: Message, now: datetime) -> bool:
        if msg.account != self.account or msg.data is None:
            return False
        if msg.encrypted != (self.key is not None):
            return False
        if msg.timestamp is None:
            return not msg.encrypted  # DC-09: encrypted messages must carry a timestamp
        skew = (datetime.fromisoformat(msg.timestamp) - now).total_seconds()
        return WINDOW_S[0] <= skew <= WINDOW_S[1]

    def _append(self, msg: Message) -> None:
        if self.record is not None:
            with self.record.open("a", encoding="utf-8") as out:
                out.write(json.dumps(asdict(msg)) + "\n")

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None  # start_server runs every handler as a task
        self._handlers.add(task)
        self.connections += 1
        buffer = b""
        try:
            while chunk := await reader.read(4096):
                buffer += chunk
                while (end := buffer.find(b"\r")) >= 0:
                    raw, buffer = buffer[: end + 1], buffer[end + 1 :]
                    start = raw.find(b"\n")
                    answer = self.handle(raw[start:]) if start >= 0 else None
                    if answer is not None:
                        writer.write(answer)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, receiver: Dc09Receiver) -> None:
        self.receiver = receiver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython 3.11's selector datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        answer = self.receiver.handle(data, "udp")
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)


def _schedule(text: str) -> tuple[Window, ...]:
    try:
        return parse_spec(text, MODES)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad schedule {text!r}: {exc}") from None


def build_parser(p: argparse.ArgumentParser) -> None:
    """Add the dc09-sim options to p."""
    p.description = "Run a SIA DC-09 receiver (TCP and UDP) that records what it is sent."
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    p.add_argument(
        "--port", type=int, default=12128, help="TCP and UDP port (default: %(default)s)"
    )
    p.add_argument("--account", default="1234", help="the account it knows (default: %(default)s)")
    p.add_argument(
        "--key", help="AES key as 32, 48 or 64 hex digits; the account is then encrypted"
    )
    p.add_argument(
        "--mode", choices=MODES, default="ok",
        help="ok acknowledges, nak rejects with the receiver clock, duh cannot process, silent "
        "never answers, wrong_account answers as for an unknown account (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--schedule", type=_schedule, default=(), metavar="SPEC",
        help="fault windows START-END=MODE,... in seconds after start, e.g. "
        "0-20=silent,40-60=wrong_account; outside them --mode applies (default: none)",
    )  # fmt: skip
    p.add_argument(
        "--clock-offset", type=float, default=0.0, metavar="S",
        help="receiver clock minus real time, seconds, to exercise NAK clock correction",
    )  # fmt: skip
    p.add_argument("--record", type=Path, metavar="FILE", help="append messages as JSON lines")
    p.add_argument("--verbose", action="store_true", help="log ignored frames")


async def _main(args: argparse.Namespace) -> int:
    key = bytes.fromhex(args.key) if args.key else None
    receiver = Dc09Receiver(
        args.account, key, args.port, args.host, mode=args.mode,
        clock_offset_s=args.clock_offset, record=args.record, schedule=args.schedule,
    )  # fmt: skip
    try:
        await receiver.start()
    except OSError as exc:
        print(f"dc09-sim: cannot listen: {exc}", flush=True)
        return 2
    print(f"dc09-sim: {args.host}:{receiver.port} tcp+udp account={receiver.account} "
          f"{'AES' if key else 'plain'} mode={receiver.mode}", flush=True)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await receiver.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the receiver until SIGINT or SIGTERM; exit code 2 when the port cannot be opened."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    if args.key is not None and len(args.key) not in (32, 48, 64):
        print("dc09-sim: --key must be 32, 48 or 64 hex digits", flush=True)
        return 2
    return asyncio.run(_main(args))
