"""Dc09Forwarder against a receiver we did not write: pysiaalarm's asyncio server (the one
Home Assistant's SIA integration runs), over TCP and UDP, plain and AES.

pysiaalarm takes the AES key as text and uses its ASCII bytes, so the gateway's hex key is the
hex of those bytes. Its UDP server asserts isinstance(transport, asyncio.DatagramTransport) in
connection_made, which CPython 3.11's selector transport fails, so it would never answer: the
fixture hands it the transport itself.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.config import Dc09EndpointSettings
from gateway.linkage.dc09 import Dc09Forwarder
from gateway.linkage.dc09_frame import zone_number
from gateway.models import Alarm, Kind
from simulators.servers import free_port
from tests.integration.conftest import eventually

pysia = pytest.importorskip("pysiaalarm")
pysia_aio = pytest.importorskip("pysiaalarm.aio")

pytestmark = pytest.mark.integration
PLAIN, AES = "1234", "5678"
KEY_TEXT = "0123456789ABCDEF"  # pysiaalarm's form: 16 characters, used as bytes
KEY = KEY_TEXT.encode()


@dataclass
class Sia:
    """A running pysiaalarm receiver and the events its callback got."""

    port: int
    protocol: str
    events: list[Any] = field(default_factory=list)

    def codes(self, account: str) -> list[str]:
        return [e.code for e in self.events if e.account == account]


def alarm(alarm_id: str, category: str = "police", kind: Kind = Kind.BUTTON) -> Alarm:
    now = datetime.now(UTC)
    return Alarm(
        id=alarm_id, school="s1", kind=kind, device="d-9", event="press", category=category,
        seq=1, device_ts=now, received_at=now,
    )  # fmt: skip


def endpoint(
    sia: Sia,
    account: str,
    key: bytes | None = None,
    *,
    ports: list[int] | None = None,
    **extra: Any,
) -> Dc09EndpointSettings:
    receivers = [f"127.0.0.1:{p}" for p in [*(ports or []), sia.port]]
    return Dc09EndpointSettings.model_validate(
        {"type": "dc09", "receivers": receivers, "account": account, "protocol": sia.protocol,
         "key": key.hex() if key else None, "timeout_s": 1.5, **extra}
    )  # fmt: skip


async def _start(protocol: str, events: list[Any]) -> tuple[Any, int]:
    async def on_event(event: Any) -> None:
        events.append(event)

    accounts = [pysia.SIAAccount(PLAIN), pysia.SIAAccount(AES, KEY_TEXT)]
    proto = pysia.CommunicationsProtocol[protocol.upper()]
    client = pysia_aio.SIAClient("127.0.0.1", 0, accounts, on_event, protocol=proto)
    await client.async_start()
    if protocol == "udp":
        client.sia_server.transport = client.transport  # see the module docstring
        return client, client.transport.get_extra_info("sockname")[1]
    return client, client.server.sockets[0].getsockname()[1]


@pytest.fixture(params=["tcp", "udp"])
async def sia(request: pytest.FixtureRequest) -> AsyncIterator[Sia]:
    events: list[Any] = []
    client, port = await _start(request.param, events)
    yield Sia(port, request.param, events)
    await client.async_stop()


@pytest.mark.parametrize(("account", "key"), [(PLAIN, None), (AES, KEY)], ids=["plain", "aes"])
async def test_alarms_reach_pysiaalarm(sia: Sia, account: str, key: bytes | None) -> None:
    sent = [("police", "PA"), ("fire", "FA"), ("medical", "MA"), ("intrusion", "BA")]
    async with Dc09Forwarder({"arc": endpoint(sia, account, key)}) as fwd:
        for i, (category, _) in enumerate(sent):
            result = await fwd.send("arc", alarm(f"a{i}", category, Kind.BUTTON))
            assert result.ok and result.detail.endswith(": ACK"), result
    await eventually(lambda: len(sia.events) >= len(sent), f"{len(sent)} events")
    await asyncio.sleep(0.1)  # nothing more may arrive
    assert sia.codes(account) == [code for _, code in sent] and len(sia.events) == len(sent)
    first = sia.events[0]
    assert first.encrypted == (key is not None)
    assert (first.ri, first.message) == ("1", f"{zone_number(alarm('a0')):04d}")
    assert {x.identifier: x.value for x in first.extended_data}["L"] == "button/d-9"


async def test_null_supervision_is_accepted(sia: Sia) -> None:
    async with Dc09Forwarder({"p": endpoint(sia, PLAIN), "e": endpoint(sia, AES, KEY)}) as fwd:
        for name in ("p", "e"):
            result = await fwd.supervise(name)
            assert result.ok and result.detail.startswith("NULL 0001 "), result
    await eventually(lambda: len(sia.events) >= 2, "two NULL events")
    assert [(e.message_type.value, e.code) for e in sia.events] == [("NULL", "RP")] * 2


async def test_supervision_loop(sia: Sia) -> None:
    async with Dc09Forwarder({"arc": endpoint(sia, AES, KEY, supervision_s=0.1)}):
        await eventually(lambda: len(sia.events) >= 3, "three NULL events")
    assert set(sia.codes(AES)) == {"RP"}


async def test_wrong_account_is_not_acknowledged(sia: Sia) -> None:
    settings = {"plain": endpoint(sia, "9999"), "aes": endpoint(sia, "9999", KEY)}
    async with Dc09Forwarder(settings) as fwd:
        plain, encrypted = await fwd.send("plain", alarm("a1")), await fwd.send("aes", alarm("a2"))
    # pysiaalarm answers an unknown plain-text account with a bare "NAK" (no frame), an
    # unknown encrypted one with a framed NAK carrying its clock.
    assert (
        not plain.ok and "bare NAK (no frame): receiver does not know the account" in plain.detail
    )
    assert not encrypted.ok and "NAK again: receiver rejects the message" in encrypted.detail
    await asyncio.sleep(0.1)
    assert sia.events == []


async def test_wrong_key_is_not_acknowledged(sia: Sia) -> None:
    async with Dc09Forwarder({"arc": endpoint(sia, AES, b"FEDCBA9876543210")}) as fwd:
        result = await fwd.send("arc", alarm("a1"))
    assert not result.ok and "NAK again: receiver rejects the message" in result.detail, result
    await asyncio.sleep(0.1)
    assert sia.events == []


@pytest.mark.parametrize(("account", "key"), [(PLAIN, None), (AES, KEY)], ids=["plain", "aes"])
async def test_nak_clock_correction(sia: Sia, account: str, key: bytes | None) -> None:
    def slow_clock() -> datetime:  # five minutes behind: outside pysiaalarm's -40 s window
        return datetime.now(UTC) - timedelta(minutes=5)

    async with Dc09Forwarder({"arc": endpoint(sia, account, key)}, clock=slow_clock) as fwd:
        result = await fwd.send("arc", alarm("a1"))
        assert result.ok, result
        assert re.search(r"NAK \(receiver clock \+(299|300|301) s\), resent with that time: ACK$",
                         result.detail)  # fmt: skip
        again = await fwd.send("arc", alarm("a2"))
        assert again.ok and "NAK" not in again.detail, again
    await eventually(lambda: len(sia.events) >= 2, "two events")
    assert sia.codes(account) == ["PA", "PA"]


async def test_failover_to_the_backup_receiver(sia: Sia) -> None:
    closed = free_port()
    async with Dc09Forwarder({"arc": endpoint(sia, AES, KEY, ports=[closed])}) as fwd:
        result = await fwd.send("arc", alarm("a1", "fire"))
        assert result.ok, result
        assert fwd.status("arc").receiver == f"127.0.0.1:{sia.port}"
    assert f"127.0.0.1:{closed}: connection refused; 127.0.0.1:{sia.port}: ACK" in result.detail
    await eventually(lambda: sia.codes(AES) == ["FA"], "the fire alarm")
