"""Refuse mode for real: the endpoint's port stops listening and comes back; the control port."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from simulators.linkage import Endpoint, serve
from simulators.servers import free_port

HOST = "127.0.0.1"


@dataclass
class Sim:
    """serve() running in this loop: police on `port`, the control API on `control_port`."""

    police: Endpoint
    port: int
    control_port: int
    session: aiohttp.ClientSession

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def control_url(self, path: str) -> str:
        return f"http://{HOST}:{self.control_port}{path}"

    async def get(self, url: str) -> Any:
        async with self.session.get(url) as resp:
            return await resp.json()

    async def post(self, url: str, body: Any, key: str | None = None) -> tuple[int, Any]:
        headers = {"Idempotency-Key": key} if key else {}
        async with self.session.post(url, json=body, headers=headers) as resp:
            return resp.status, await resp.json()


async def until(predicate: Callable[[], Awaitable[bool]], what: str, within_s: float = 5) -> None:
    """Poll predicate until it holds; fail naming what we waited for."""
    deadline = time.monotonic() + within_s
    while not await predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within_s} s waiting for {what}")
        await asyncio.sleep(0.01)


async def connects(port: int) -> bool:
    """True when a TCP connection to the port is accepted, False when it is refused."""
    try:
        _, writer = await asyncio.open_connection(HOST, port)
    except ConnectionRefusedError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def refused(port: int) -> bool:
    return not await connects(port)


async def start(police: Endpoint, stop: asyncio.Event) -> tuple[asyncio.Task[None], int, int]:
    port, control_port = free_port(), free_port()
    task = asyncio.create_task(serve([(police, port)], HOST, stop, control_port))
    await until(lambda: connects(control_port), "the control port")
    return task, port, control_port


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    stop = asyncio.Event()
    police = Endpoint("police")
    task, port, control_port = await start(police, stop)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield Sim(police, port, control_port, session)
    stop.set()
    await task


async def test_refuse_set_on_its_own_port_closes_it_until_the_control_port_reverts(
    sim: Sim,
) -> None:
    assert (await sim.post(sim.url("/_control"), {"mode": "refuse"}))[0] == 200
    await until(lambda: refused(sim.port), "police to refuse connections")
    with pytest.raises(aiohttp.ClientConnectorError) as error:
        await sim.post(sim.url("/alarms"), {"id": "a1"}, key="k1")
    assert isinstance(error.value.os_error, ConnectionRefusedError)
    assert (await sim.get(sim.control_url("/healthz/police")))["listening"] is False

    status, settings = await sim.post(sim.control_url("/_control/police"), {"mode": "ok"})
    assert (status, settings["mode"]) == (200, "ok")
    await until(lambda: connects(sim.port), "police to listen again")
    assert (await sim.post(sim.url("/alarms"), {"id": "a1"}, key="k1"))[0] == 200
    received = await sim.get(sim.control_url("/received/police"))
    assert [a["idempotency_key"] for a in received["alarms"]] == ["k1"]
    assert (await sim.get(sim.control_url("/attempts/police")))["count"] == 1


async def test_a_scheduled_refusal_ends_by_itself(sim: Sim) -> None:
    window = {"start": 0, "end": 0.3, "mode": "refuse"}
    body = {"schedule": [window], "schedule_origin": "now"}
    assert (await sim.post(sim.url("/_control"), body))[0] == 200
    await until(lambda: refused(sim.port), "police to refuse connections")
    await until(lambda: connects(sim.port), "police to listen again")
    assert (await sim.get(sim.url("/healthz")))["mode"] == "ok"


async def test_refuse_closes_idle_keep_alive_connections(sim: Sim) -> None:
    await sim.get(sim.url("/healthz"))  # leaves a pooled keep-alive connection to police
    await sim.post(sim.control_url("/_control/police"), {"mode": "refuse"})
    await until(lambda: refused(sim.port), "police to refuse connections")
    with pytest.raises(aiohttp.ClientConnectorError):
        await sim.get(sim.url("/healthz"))


async def test_an_endpoint_started_in_refuse_mode_refuses() -> None:
    stop = asyncio.Event()
    task, port, _ = await start(Endpoint("police", mode="refuse"), stop)
    await until(lambda: refused(port), "police to refuse connections")
    stop.set()
    await task


async def test_the_control_port_names_unknown_endpoints_and_lists_all(sim: Sim) -> None:
    async with sim.session.get(sim.control_url("/received/ambulance")) as resp:
        assert resp.status == 404 and "ambulance" in (await resp.json())["error"]
    health = await sim.get(sim.control_url("/healthz"))
    assert [ep["name"] for ep in health["endpoints"]] == ["police"]


async def test_a_port_in_use_fails_at_startup() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            await serve([(Endpoint("police"), port)], HOST, asyncio.Event())


async def test_refuse_cuts_off_a_request_held_by_timeout_mode(
    sim: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("simulators.linkage.CLOSE_S", 0.05)
    await sim.post(sim.control_url("/_control/police"), {"mode": "timeout"})
    held = asyncio.create_task(sim.post(sim.url("/alarms"), {"id": "a1"}, key="k1"))

    async def arrived() -> bool:
        return len(sim.police.attempts) == 1

    await until(arrived, "the alarm to arrive")
    await sim.post(sim.control_url("/_control/police"), {"mode": "refuse"})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await asyncio.wait_for(held, 5)
    assert sim.police.attempts[0]["answer"] == "timeout"
