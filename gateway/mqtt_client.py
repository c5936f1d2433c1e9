"""paho-mqtt's client with a bulk inbound path: the socket read in large chunks, PUBLISH packets
cut out and handed over here, PUBACKs of a batch sent as one write.

Why: profiled under 20,000 msg/s (docs/telemetry.md), paho's inbound side took a third of the
gateway's CPU. It reads a packet with three recv() calls (command byte, length, body) and
builds an MQTTMessage per packet, taking three locks and matching the topic against callbacks
on the way; it also sends each PUBACK with a write of its own. Here one recv() of up to
READ_BYTES is cut into packets in one loop; a QoS 0 or 1 PUBLISH goes straight to `deliver`
(topic, payload, qos, mid, retain), and every other packet (CONNACK, SUBACK, PUBACK, PINGRESP,
QoS 2, a topic that is not UTF-8) to paho's own handler, as if paho had read it. paho still
connects, subscribes, publishes, keeps alive and owns the session state (docs/decisions.md 1).

The private members used (_sock_recv, _in_packet, _packet_handle, _packet_queue,
_loop_rc_handle, _msgtime_mutex, _last_bytes_received) are paho 2.x's; pyproject pins
paho-mqtt < 3 and tests/unit/test_mqtt_client.py checks this path against paho's own.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

log = logging.getLogger(__name__)

READ_BYTES = 64 * 1024  # per recv: ~600 status messages, ~1.5 ms of the loop's time
Deliver = Callable[[str, bytes, int, int, bool], None]
_PUBACK = struct.Struct("!BBH")
_PUBLISH, _PUBACK_TYPE = paho.PUBLISH, paho.PUBACK  # 0x30, 0x40
_SUCCESS = MQTTErrorCode.MQTT_ERR_SUCCESS


class BulkClient(paho.Client):
    """A paho Client (MQTT 3.1.1) whose `loop_read` handles every whole packet one recv got."""

    def __init__(self, *args: Any, deliver: Deliver, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deliver = deliver
        self._rest = b""  # an incomplete packet at the end of the last read
        self._rest_of: object = None  # the socket `_rest` came from
        self._quickack = hasattr(socket, "TCP_QUICKACK")

    def _ack_at_once(self, sock: Any) -> None:
        # Linux delays a TCP ACK up to 40 ms when it has nothing to send back, and a broker
        # with Nagle on (mosquitto's default) holds its next small segment until that ACK: at
        # QoS 0 (no PUBACKs to carry the ACK) that was a 40 ms p99 on every message. The flag
        # does not stick, so it is set again after every read.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except (OSError, AttributeError):  # not TCP (a test's socketpair, a websocket)
            self._quickack = False

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read once (at most READ_BYTES) and handle the whole packets read; the caller is
        called again by the event loop while the socket has more."""
        sock = self._sock
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        if self._protocol == paho.MQTTv5:  # (the gateway speaks 3.1.1; v5 PUBLISH has more)
            return super().loop_read(max_packets)
        try:
            data = self._sock_recv(READ_BYTES)
        except BlockingIOError:
            return _SUCCESS
        except OSError as exc:
            log.debug("MQTT socket read failed: %s", exc)
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        if not data:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        if self._quickack:
            self._ack_at_once(sock)
        with self._msgtime_mutex:
            self._last_bytes_received = paho.time_func()
        if self._rest_of is not sock:
            self._rest, self._rest_of = b"", sock
        rc = self._packets(self._rest + data if self._rest else data)
        return self._loop_rc_handle(rc) if rc else _SUCCESS

    def _packets(self, buf: bytes) -> MQTTErrorCode:
        pos, end, deliver = 0, len(buf), self.deliver
        while pos + 1 < end:
            start, length, shift = pos + 1, 0, 0
            while True:  # the remaining length: 1 to 4 bytes, 7 bits each
                if start >= end:
                    self._rest = buf[pos:]
                    return _SUCCESS
                digit = buf[start]
                length |= (digit & 0x7F) << shift
                start += 1
                if not digit & 0x80:
                    break
                shift += 7
                if shift > 21:
                    return MQTTErrorCode.MQTT_ERR_PROTOCOL
            stop = start + length
            if stop > end:
                break
            command = buf[pos]
            qos = (command >> 1) & 3
            if command & 0xF0 == _PUBLISH and qos < 2 and length >= 2:
                size = buf[start] << 8 | buf[start + 1]
                body = start + 2 + size + (2 if qos else 0)
                if body > stop:
                    return MQTTErrorCode.MQTT_ERR_PROTOCOL
                try:
                    topic = buf[start + 2 : start + 2 + size].decode()
                except UnicodeDecodeError:
                    topic = None
                if topic is not None:
                    mid = buf[body - 2] << 8 | buf[body - 1] if qos else 0
                    deliver(topic, buf[body:stop], qos, mid, bool(command & 1))
                    pos = stop
                    continue
            rc = self._paho_handles(command, buf[start:stop], length)
            if rc:
                return rc
            pos = stop
        self._rest = buf[pos:]
        return _SUCCESS

    def _paho_handles(self, command: int, body: bytes, length: int) -> MQTTErrorCode:
        """A packet for paho's own handler, set up as its _packet_read leaves one."""
        self._in_packet = {
            "command": command, "have_remaining": 1, "remaining_count": [],
            "remaining_mult": 1, "remaining_length": length, "packet": bytearray(body),
            "to_process": 0, "pos": 0,
        }  # fmt: skip
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            log.debug("malformed MQTT packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {
            "command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
            "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0,
        }  # fmt: skip
        return rc

    def ack_many(self, mids: list[int]) -> None:
        """PUBACK QoS 1 messages by packet id, all in one packet write (in this order)."""
        if mids:
            packet = b"".join([_PUBACK.pack(_PUBACK_TYPE, 2, mid) for mid in mids])
            self._packet_queue(_PUBACK_TYPE, packet, 0, 1)
