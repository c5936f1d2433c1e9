"""BulkClient: what its bulk inbound path delivers equals what paho's own path delivers, however
the bytes are cut into reads; other packets still reach paho; PUBACKs of a batch are paho's."""

from __future__ import annotations

import itertools
import select
import socket
from typing import Any

import paho.mqtt.client as paho
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gateway.mqtt_client import BulkClient

Delivered = tuple[str, bytes, int, int, bool]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: bytes, payload: bytes, qos: int, mid: int, retain: bool) -> bytes:
    head = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"")
    body = head + payload
    return bytes((0x30 | qos << 1 | retain,)) + varint(len(body)) + body


def connected(client: paho.Client) -> socket.socket:
    """Give the client one end of a socketpair as its broker connection; return the other."""
    ours, broker = socket.socketpair()
    for sock in (ours, broker):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    ours.setblocking(False)
    client._sock = ours
    return broker


def bulk(got: list[Delivered]) -> BulkClient:
    client = BulkClient(
        CallbackAPIVersion.VERSION2, client_id="t", protocol=paho.MQTTv311, manual_ack=True,
        deliver=lambda *message: got.append(message),
    )  # fmt: skip
    return client


def plain(got: list[Delivered]) -> paho.Client:
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id="t", protocol=paho.MQTTv311, manual_ack=True
    )

    def on_message(c: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        got.append((msg.topic, bytes(msg.payload), msg.qos, msg.mid, bool(msg.retain)))

    client.on_message = on_message
    return client


def feed(client: paho.Client, data: bytes, cuts: list[int]) -> list[MQTTErrorCode]:
    """Send `data` in pieces cut at `cuts`, letting the client read after each piece."""
    broker = connected(client)
    codes = []
    try:
        bounds = [0, *sorted(set(cuts)), len(data)]
        for start, stop in itertools.pairwise(bounds):
            broker.sendall(data[start:stop])
            while (sock := client.socket()) is not None and select.select([sock], [], [], 0)[0]:
                codes.append(client.loop_read())  # (paho reads a packet or less per call)
            if client.socket() is None:
                return codes
    finally:
        broker.close()
    return codes


messages = st.tuples(
    st.text(min_size=1, max_size=70).map(str.encode),
    # 1-, 2- and 3-byte remaining lengths
    st.binary(max_size=300) | st.integers(16_370, 16_400).map(lambda n: b"x" * n),
    st.integers(0, 1),
    st.integers(1, 65535),
    st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(messages, min_size=1, max_size=12), data=st.data())
def test_delivers_what_paho_delivers_however_the_reads_are_cut(
    batch: list[tuple[bytes, bytes, int, int, bool]], data: st.DataObject
) -> None:
    wire = b"".join(publish(*message) for message in batch)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=6))
    ours: list[Delivered] = []
    theirs: list[Delivered] = []
    feed(bulk(ours), wire, cuts)
    feed(plain(theirs), wire, [])
    assert ours == theirs
    assert len(ours) == len(batch)


def test_other_packets_go_to_paho() -> None:
    got: list[Delivered] = []
    subscribed: list[Any] = []
    client = bulk(got)
    client.on_subscribe = lambda c, u, mid, codes, props: subscribed.append((mid, codes[0].value))
    client._ping_t = 1.0  # a PINGREQ is out
    suback = b"\x90\x03\x00\x07\x01"  # packet 7, granted QoS 1
    pingresp = b"\xd0\x00"
    wire = suback + publish(b"campus/s1/button/b1/status", b"{}", 1, 9, False) + pingresp
    assert feed(client, wire, [3])[-1] == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert subscribed == [(7, 1)]
    assert client._ping_t == 0  # paho took the PINGRESP
    assert got == [("campus/s1/button/b1/status", b"{}", 1, 9, False)]


def test_a_topic_that_is_not_utf8_is_left_to_paho() -> None:
    got: list[Delivered] = []
    raw: list[bytes] = []
    client = bulk(got)
    client.on_message = lambda c, u, msg: raw.append(msg._topic)
    feed(client, publish(b"campus/\xff/x", b"p", 0, 1, False), [])
    assert got == [] and raw == [b"campus/\xff/x"]


def test_a_malformed_publish_drops_the_connection_as_paho_does() -> None:
    lost: list[Any] = []
    for client in (bulk([]), plain([])):
        client.on_disconnect = lambda c, u, flags, rc, props: lost.append(rc)
        bad = b"\x30\x04\x00\x09ab"  # topic length 9 in a 4-byte packet
        feed(client, bad, [])
        assert client.socket() is None
    assert len(lost) == 2 and lost[0] == lost[1]


def test_puback_of_a_batch_is_one_write_of_paho_s_packets() -> None:
    mids = [1, 2, 300, 65535]
    sent: dict[str, bytes] = {}
    for name, client in (("bulk", bulk([])), ("plain", plain([]))):
        broker = connected(client)
        client.on_socket_register_write = lambda c, u, s: None  # the event loop's part
        if isinstance(client, BulkClient):
            client.ack_many(mids)
            assert len(client._out_packet) == 1
        else:
            for mid in mids:
                client.ack(mid, 1)
        client.loop_write()
        sent[name] = broker.recv(1024)
        broker.close()
    pubacks = b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in mids)
    assert sent["bulk"] == sent["plain"] == pubacks


def test_over_tcp_each_read_asks_the_kernel_to_ack_at_once() -> None:
    got: list[Delivered] = []
    client = bulk(got)
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        broker, _ = server.accept()
    try:
        ours.setblocking(False)
        client._sock = ours
        ours.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
        broker.sendall(publish(b"campus/s1/button/b1/status", b"{}", 0, 1, False))
        select.select([ours], [], [], 5)
        client.loop_read()
        assert got and ours.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
    finally:
        ours.close()
        broker.close()
