"""API routes over a real SQLite store, through FastAPI's in-process test client."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.app import ApiContext, create_app
from gateway.config import Settings
from gateway.fleet import Fleet
from gateway.models import ButtonStatus, Channel, DeviceMessage, Kind, Topic
from gateway.ports import NewDeadLetter
from gateway.stats import Stats
from gateway.storage.sqlite import SqliteAlarmStore
from tests.unit.test_sqlite_store import alarm

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


async def healthy() -> dict[str, Any]:
    return {"status": "ok"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with SqliteAlarmStore(tmp_path / "s.db") as store:
        await store.commit(
            [alarm(n) for n in range(1, 4)],
            [NewDeadLetter("campus/s1/button/b1/event", b"\xff", "not UTF-8", T0)],
        )
        fleet = Fleet(Settings(), publish=lambda topic, payload: True, add_point=lambda line: None)
        body = ButtonStatus(seq=1, ts=T0, battery=50)
        fleet.tracker.seen(DeviceMessage(Topic("s1", Kind.BUTTON, "b1", Channel.STATUS), body, T0))
        ctx = ApiContext(store, fleet, Stats(), healthy, extra_stats=lambda: {"devices": 1})
        transport = httpx.ASGITransport(app=create_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c


async def test_alarms_page_and_one(client: httpx.AsyncClient) -> None:
    page = (await client.get("/api/alarms", params={"limit": 2, "offset": 1})).json()
    assert (page["total"], [a["seq"] for a in page["items"]]) == (3, [2, 3])
    first = page["items"][0]
    assert first["deliveries"][0] == {
        "endpoint": "police", "status": "pending", "attempts": 0, "last_error": None,
        "last_attempt_at": None, "delivered_at": None,
    }  # fmt: skip
    one = await client.get(f"/api/alarms/{first['id']}")
    assert one.json()["id"] == first["id"]
    assert (await client.get("/api/alarms/nope")).status_code == 404


async def test_bad_query_is_a_clear_422(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/alarms", params={"state": "maybe", "limit": 0})
    assert answer.status_code == 422
    assert {e["loc"][-1] for e in answer.json()["detail"]} == {"state", "limit"}


async def test_dead_letters_devices_stats_health(client: httpx.AsyncClient) -> None:
    letters = (await client.get("/api/dead-letters")).json()
    item = letters["items"][0]
    assert (item["payload_text"], item["payload_base64"], item["reason"]) == (
        None, "/w==", "not UTF-8",
    )  # fmt: skip
    devices = (await client.get("/api/devices")).json()
    assert devices["items"][0]["last_status"]["battery"] == 50
    stats = (await client.get("/api/stats")).json()
    assert (stats["alarms_total"], stats["dead_letters"], stats["devices"]) == (3, 1, 1)
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_console_is_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/console/")
    assert page.status_code == 200 and "Open alarms" in page.text


async def test_ack_then_reset_with_operator_and_note(client: httpx.AsyncClient) -> None:
    first = (await client.get("/api/alarms", params={"limit": 1})).json()["items"][0]
    url = f"/api/alarms/{first['id']}"
    early = await client.post(f"{url}/reset", json={"operator": "li", "note": "x"})
    assert (early.status_code, early.json()["detail"]) == (
        409, "cannot reset an alarm that is new; acknowledge it first",
    )  # fmt: skip
    assert (await client.post(f"{url}/ack", json={"note": "no operator"})).status_code == 422
    acked = (await client.post(f"{url}/ack", json={"operator": "li", "note": "seen"})).json()
    assert (acked["state"], acked["acknowledged_by"]) == ("acknowledged", "li")
    done = (await client.post(f"{url}/reset", json={"operator": "li"})).json()
    assert done["state"] == "reset" and done["reset_at"] is not None
    open_now = (await client.get("/api/alarms", params={"open": True})).json()
    assert open_now["total"] == 2 and first["id"] not in {a["id"] for a in open_now["items"]}
    assert (await client.post("/api/alarms/nope/ack", json={"operator": "li"})).status_code == 404
