"""Dc09Forwarder against the DC-09 receiver simulator: NAK clock correction, DUH, silence,
failover, connection reuse, UDP retransmission, supervision and the standalone command."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Dc09EndpointSettings
from gateway.linkage.dc09 import Dc09Forwarder
from gateway.models import Alarm, Kind
from simulators.dc09 import Dc09Receiver
from simulators.servers import free_port, log_tail, spawn, stop_process
from tests.integration.conftest import eventually

pytestmark = pytest.mark.integration
KEY = bytes(range(32))


def alarm(alarm_id: str = "a-1", category: str = "police") -> Alarm:
    now = datetime.now(UTC)
    return Alarm(
        id=alarm_id, school="s1", kind=Kind.BUTTON, device="b-17", event="press",
        category=category, seq=1, device_ts=now, received_at=now,
    )  # fmt: skip


def endpoint(*ports: int, key: bytes | None = None, **extra: Any) -> Dc09EndpointSettings:
    return Dc09EndpointSettings.model_validate(
        {"type": "dc09", "receivers": [f"127.0.0.1:{p}" for p in ports], "account": "1234",
         "key": key.hex() if key else None, "timeout_s": 2.0, **extra}
    )  # fmt: skip


@pytest.fixture
async def receiver() -> AsyncIterator[Dc09Receiver]:
    server = await Dc09Receiver("1234").start()
    yield server
    await server.stop()


@pytest.fixture
async def backup() -> AsyncIterator[Dc09Receiver]:
    server = await Dc09Receiver("1234").start()
    yield server
    await server.stop()


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "aes256"])
async def test_alarms_are_acknowledged(protocol: str, key: bytes | None) -> None:
    server = await Dc09Receiver("1234", key).start()
    try:
        async with Dc09Forwarder({"arc": endpoint(server.port, key=key, protocol=protocol)}) as fwd:
            for i, category in enumerate(["police", "fire", "intrusion"]):
                result = await fwd.send("arc", alarm(f"a{i}", category))
                assert result.ok and result.detail.endswith(": ACK"), result
        got = [(m.code, m.seq, m.protocol, m.encrypted, m.answer) for m in server.received]
        enc = key is not None
        assert got == [(c, s, protocol, enc, "ACK") for s, c in enumerate(["PA", "FA", "BA"], 1)]
    finally:
        await server.stop()


async def test_one_tcp_connection_serves_many_messages(receiver: Dc09Receiver) -> None:
    async with Dc09Forwarder({"arc": endpoint(receiver.port)}) as fwd:
        for i in range(3):
            assert (await fwd.send("arc", alarm(f"a{i}"))).ok
        assert (await fwd.supervise("arc")).ok
    assert receiver.connections == 1 and len(receiver.received) == 4


async def test_reconnects_when_the_receiver_dropped_the_connection() -> None:
    first = await Dc09Receiver("1234").start()
    async with Dc09Forwarder({"arc": endpoint(first.port)}) as fwd:
        assert (await fwd.send("arc", alarm("a1"))).ok
        await first.stop()
        second = await Dc09Receiver("1234", port=first.port).start()
        try:
            result = await fwd.send("arc", alarm("a2"))
            assert result.ok, result
            assert [m.seq for m in second.received] == [2] and second.connections == 1
        finally:
            await second.stop()


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
async def test_nak_clock_correction(protocol: str) -> None:
    server = await Dc09Receiver("1234", KEY, clock_offset_s=300).start()
    try:
        async with Dc09Forwarder({"arc": endpoint(server.port, key=KEY, protocol=protocol)}) as fwd:
            result = await fwd.send("arc", alarm("a1"))
            assert result.ok, result
            assert re.search(r"NAK \(receiver clock \+(299|300|301) s\), resent", result.detail)
            assert 298 < fwd.status("arc").clock_offset_s < 302
            assert (await fwd.send("arc", alarm("a2"))).ok
        assert [(m.seq, m.answer) for m in server.received] == [(1, "NAK"), (1, "ACK"), (2, "ACK")]
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("mode", "detail"),
    [
        ("nak", "NAK again: receiver rejects the message"),
        ("wrong_account", "NAK again: receiver rejects the message"),
        ("duh", "DUH: receiver cannot process"),
    ],
)
async def test_rejections_are_final(
    receiver: Dc09Receiver, backup: Dc09Receiver, mode: str, detail: str
) -> None:
    receiver.set_mode(mode)
    async with Dc09Forwarder({"arc": endpoint(receiver.port, backup.port)}) as fwd:
        result = await fwd.send("arc", alarm())
    assert not result.ok and detail in result.detail, result
    assert backup.received == []  # the main receiver answered: no failover


async def test_silent_main_fails_over_and_supervision_returns(
    receiver: Dc09Receiver, backup: Dc09Receiver
) -> None:
    receiver.set_mode("silent")
    settings = endpoint(receiver.port, backup.port, timeout_s=0.3)
    async with Dc09Forwarder({"arc": settings}) as fwd:
        result = await fwd.send("arc", alarm("a1"))
        main, standby = settings.receivers
        assert result.ok and result.detail == (
            f"SIA-DCS 0001 {main}: no answer within 0.3 s; {standby}: ACK"
        )
        assert fwd.status("arc").receiver == standby
        assert (await fwd.send("arc", alarm("a2"))).ok  # straight to the backup now
        assert len(receiver.received) == 1
        receiver.set_mode("ok")
        assert (await fwd.supervise("arc")).detail == f"NULL 0003 {main}: ACK"
        assert fwd.status("arc").receiver == main


async def test_refused_main_fails_over(backup: Dc09Receiver) -> None:
    closed = free_port()
    async with Dc09Forwarder({"arc": endpoint(closed, backup.port)}) as fwd:
        result = await fwd.send("arc", alarm())
    assert result.ok and "connection refused" in result.detail, result


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
async def test_no_receiver_answers(protocol: str) -> None:
    settings = endpoint(free_port(), free_port(), protocol=protocol, timeout_s=0.3)
    async with Dc09Forwarder({"arc": settings}) as fwd:
        result = await fwd.send("arc", alarm())
    assert not result.ok and "no receiver answered" in result.detail, result
    assert result.detail.count("connection refused") == 2  # UDP too: ICMP port unreachable


async def test_udp_retransmits_with_the_same_sequence(receiver: Dc09Receiver) -> None:
    receiver.set_mode("silent")
    async with Dc09Forwarder({"arc": endpoint(receiver.port, protocol="udp", timeout_s=0.6)}) as f:
        result = await f.send("arc", alarm())
        assert not result.ok and "no answer to 3 datagrams within 0.6 s" in result.detail
    assert [(m.seq, m.protocol) for m in receiver.received] == [(1, "udp")] * 3


async def test_a_retry_reuses_the_sequence_number(receiver: Dc09Receiver) -> None:
    receiver.set_mode("duh")
    async with Dc09Forwarder({"arc": endpoint(receiver.port)}) as fwd:
        assert not (await fwd.send("arc", alarm("a1"))).ok
        receiver.set_mode("ok")
        assert (await fwd.send("arc", alarm("a1"))).ok
        assert (await fwd.send("arc", alarm("a2"))).ok
    assert [(m.seq, m.answer) for m in receiver.received] == [(1, "DUH"), (1, "ACK"), (2, "ACK")]


async def test_supervision_loop_sends_null_messages(receiver: Dc09Receiver) -> None:
    async with Dc09Forwarder({"arc": endpoint(receiver.port, supervision_s=0.1)}) as fwd:
        await eventually(lambda: len(receiver.received) >= 3, "three NULL messages")
        last = fwd.status("arc").last_supervision
        assert last is not None and last.ok
    count = len(receiver.received)
    await asyncio.sleep(0.3)
    assert len(receiver.received) == count  # stopped with the forwarder
    assert {m.msg_id for m in receiver.received} == {"NULL"}


async def test_unknown_endpoint() -> None:
    async with Dc09Forwarder({}) as fwd:
        result = await fwd.send("nowhere", alarm())
    assert not result.ok and "not a configured dc09 endpoint" in result.detail


async def test_standalone_receiver(tmp_path: Path) -> None:
    port, record = free_port(), tmp_path / "arc.jsonl"
    code = (
        "import argparse, sys; from simulators import dc09; p = argparse.ArgumentParser(); "
        "dc09.build_parser(p); sys.exit(dc09.run(p.parse_args(sys.argv[1:])))"
    )
    argv = [sys.executable, "-c", code, "--port", str(port), "--key", KEY.hex()]
    proc = spawn([*argv, "--record", str(record)], tmp_path / "sim.log")
    try:
        log = tmp_path / "sim.log"
        await eventually(lambda: "dc09-sim: 127.0.0.1" in log.read_text(), "dc09-sim to listen")
        async with Dc09Forwarder({"arc": endpoint(port, key=KEY)}) as fwd:
            result = await fwd.send("arc", alarm())
        assert result.ok, (result, log_tail(log))
        assert '"code": "PA"' in record.read_text()
    finally:
        assert stop_process(proc) == 0, log_tail(tmp_path / "sim.log")
