"""The police/fire endpoint simulator: what it answers in each mode and what it records."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from simulators.linkage import Endpoint, make_app

ALARM = {"id": "a1", "school": "s1", "category": "police"}


@pytest.fixture
def endpoint(tmp_path: Path) -> Endpoint:
    return Endpoint("police", record_dir=tmp_path)


@pytest.fixture
async def client(endpoint: Endpoint) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_app(endpoint))) as test_client:
        yield test_client


async def post(client: TestClient[Any, Any], key: str | None = "k1", **kwargs: Any) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return await client.post("/alarms", json=ALARM, headers=headers, **kwargs)


async def control(client: TestClient[Any, Any], **change: Any) -> Any:
    resp = await client.post("/_control", json=change)
    return resp.status, await resp.json()


async def received(client: TestClient[Any, Any], since: int = 0) -> Any:
    return await (await client.get(f"/received?since={since}")).json()


async def test_ok_confirms_and_records(client: TestClient[Any, Any], tmp_path: Path) -> None:
    resp = await post(client)
    assert resp.status == 200
    assert await resp.json() == {"ok": True, "received_id": "police-000001", "duplicate": False}
    got = await received(client)
    assert (got["count"], got["unique_keys"]) == (1, 1)
    assert got["alarms"][0]["alarm"] == ALARM and got["alarms"][0]["idempotency_key"] == "k1"
    lines = (tmp_path / "police.jsonl").read_text().splitlines()
    assert [json.loads(line)["received_id"] for line in lines] == ["police-000001"]


async def test_repeated_key_gets_the_same_id(client: TestClient[Any, Any]) -> None:
    first = await (await post(client, "k1")).json()
    again = await (await post(client, "k1")).json()
    await post(client, "k2")
    assert again == {**first, "duplicate": True}
    got = await received(client)
    assert (got["count"], got["unique_keys"]) == (3, 2)
    assert [a["idempotency_key"] for a in (await received(client, since=1))["alarms"]] == [
        "k1",
        "k2",
    ]


async def test_missing_key_is_recorded_and_refused(client: TestClient[Any, Any]) -> None:
    resp = await post(client, key=None)
    assert resp.status == 400 and "Idempotency-Key" in (await resp.json())["error"]
    attempts = await (await client.get("/attempts")).json()
    assert attempts["count"] == 1 and attempts["attempts"][0]["answer"] == 400
    assert (await received(client))["count"] == 0


async def test_body_that_is_not_json_gets_400(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/alarms", data=b"{", headers={"Idempotency-Key": "k"})
    assert resp.status == 400


async def test_error_mode_answers_503_and_confirms_nothing(
    client: TestClient[Any, Any], endpoint: Endpoint, tmp_path: Path
) -> None:
    assert (await control(client, mode="error"))[0] == 200
    assert (await post(client)).status == 503
    assert (await received(client))["count"] == 0
    assert [a["answer"] for a in endpoint.attempts] == [503]
    assert not (tmp_path / "police.jsonl").exists()
    attempt = json.loads((tmp_path / "police.attempts.jsonl").read_text())
    assert attempt["answer"] == 503


async def test_fail_next_fails_that_many_then_recovers(client: TestClient[Any, Any]) -> None:
    await control(client, fail_next=2)
    await control(client, slow_ms=10)  # other changes keep the pending failures
    statuses = [(await post(client, f"k{n}")).status for n in range(3)]
    assert statuses == [503, 503, 200]
    assert (await received(client))["count"] == 1


async def test_slow_mode_waits_then_confirms(client: TestClient[Any, Any]) -> None:
    await control(client, mode="slow", slow_ms=200)
    started = time.monotonic()
    assert (await post(client)).status == 200
    assert time.monotonic() - started >= 0.2


async def test_timeout_mode_never_answers(client: TestClient[Any, Any], endpoint: Endpoint) -> None:
    await control(client, mode="timeout")
    with pytest.raises(TimeoutError):
        await post(client, timeout=aiohttp.ClientTimeout(total=0.3))
    assert [a["answer"] for a in endpoint.attempts] == ["timeout"]
    assert (await received(client))["count"] == 0


async def test_drop_mode_closes_the_connection_unanswered(
    client: TestClient[Any, Any], endpoint: Endpoint
) -> None:
    await control(client, mode="drop")
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(client)
    assert [a["answer"] for a in endpoint.attempts] == ["dropped"]
    assert (await received(client))["count"] == 0


async def test_refuse_drops_a_request_on_a_connection_opened_before(
    client: TestClient[Any, Any], endpoint: Endpoint
) -> None:
    # Without serve() nothing closes the listening socket; the request itself is still dropped.
    await control(client, mode="refuse")
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(client)
    assert [a["answer"] for a in endpoint.attempts] == ["refused"]


@pytest.mark.parametrize(
    "change",
    [
        {"mode": "sometimes"},
        {"slow_ms": -1},
        {"fail_next": "2"},
        {"slow_ms": True},
        {"x": 1},
        {"secret": ""},
        {"secret": 5},
        {"mode": "error", "schedule": [{"start": 1, "end": 0, "mode": "error"}]},
        {"mode": "error", "schedule_origin": "now"},
    ],
)
async def test_control_rejects_bad_settings(client: TestClient[Any, Any], change: Any) -> None:
    status, body = await control(client, **change)
    assert status == 400 and body["ok"] is False
    health = await (await client.get("/healthz")).json()
    assert (health["mode"], health["signed"], health["schedule"]) == ("ok", False, [])


async def test_clear_forgets_what_was_received(client: TestClient[Any, Any]) -> None:
    await post(client)
    await control(client, clear=True)
    assert (await received(client))["count"] == 0
    assert (await (await client.get("/attempts")).json())["count"] == 0


async def test_healthz_answers_in_every_mode(client: TestClient[Any, Any]) -> None:
    await control(client, mode="error")
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["mode"] == "error"


async def test_received_keeps_its_fields_and_microsecond_arrival(
    client: TestClient[Any, Any],
) -> None:
    before = time.time()
    await post(client)
    got = await received(client)
    assert set(got) == {"count", "unique_keys", "alarms"}
    (record,) = got["alarms"]
    assert set(record) == {"index", "received_id", "idempotency_key", "duplicate", "at", "alarm"}
    assert record["idempotency_key"] == "k1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record["at"])
    arrived = datetime.fromisoformat(record["at"].replace("Z", "+00:00")).timestamp()
    assert before - 0.001 <= arrived <= time.time()


async def test_attempts_give_the_reason_of_a_failure(client: TestClient[Any, Any]) -> None:
    await control(client, fail_next=1)
    await post(client, "k1")
    await post(client, "k2")
    attempts = await (await client.get("/attempts")).json()
    assert attempts["rejected"] == {}
    assert [(a["answer"], a["reason"]) for a in attempts["attempts"]] == [
        (503, "fail_next"),
        (200, None),
    ]
