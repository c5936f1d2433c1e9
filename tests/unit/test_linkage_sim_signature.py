"""Signed webhooks at the linkage simulator: good ones pass, others get 401 and are counted."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from simulators.linkage import Endpoint, make_app
from simulators.linkage_endpoint import verify_signature

SECRET = "s3cret"
BODY = orjson.dumps({"id": "a1", "school": "s1", "category": "police"})


def signed(body: bytes = BODY, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return {"X-Campusgw-Timestamp": timestamp, "X-Campusgw-Signature": f"sha256={mac.hexdigest()}"}


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_app(Endpoint("police", secret=SECRET)))) as test_client:
        yield test_client


async def post(client: TestClient[Any, Any], headers: dict[str, str], body: bytes = BODY) -> Any:
    resp = await client.post("/alarms", data=body, headers={"Idempotency-Key": "k1", **headers})
    return resp.status, await resp.json()


async def test_a_good_signature_is_accepted(client: TestClient[Any, Any]) -> None:
    status, body = await post(client, signed())
    assert (status, body["ok"]) == (200, True)
    assert (await (await client.get("/received")).json())["count"] == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="unsigned"),
        pytest.param(signed(secret="other"), id="wrong-secret"),
        pytest.param(signed(body=b"{}"), id="other-body"),
        pytest.param({"X-Campusgw-Signature": signed()["X-Campusgw-Signature"]}, id="no-ts"),
        pytest.param({"X-Campusgw-Timestamp": signed()["X-Campusgw-Timestamp"]}, id="no-sig"),
        pytest.param(
            {**signed(), "X-Campusgw-Signature": signed()["X-Campusgw-Signature"][7:]},
            id="no-prefix",
        ),
        pytest.param({**signed(), "X-Campusgw-Timestamp": "1.5"}, id="ts-not-int"),
        pytest.param({**signed(), "X-Campusgw-Signature": "sha256=é"}, id="non-ascii"),
    ],
)
async def test_a_bad_signature_gets_401_and_is_counted(
    client: TestClient[Any, Any], headers: dict[str, str]
) -> None:
    assert await post(client, headers) == (401, {"ok": False, "error": "bad signature"})
    attempts = await (await client.get("/attempts")).json()
    assert attempts["rejected"] == {"bad signature": 1}
    assert (attempts["attempts"][0]["answer"], attempts["attempts"][0]["reason"]) == (
        401,
        "bad signature",
    )
    assert (await (await client.get("/received")).json())["count"] == 0


@pytest.mark.parametrize("skew", [-400, 400])
async def test_a_stale_timestamp_gets_401(client: TestClient[Any, Any], skew: int) -> None:
    status, body = await post(client, signed(at=time.time() + skew))
    assert (status, body["error"]) == (401, "stale timestamp")
    assert (await post(client, signed()))[0] == 200
    attempts = await (await client.get("/attempts")).json()
    assert attempts["rejected"] == {"stale timestamp": 1}
    assert [a["reason"] for a in attempts["attempts"]] == ["stale timestamp", None]
    assert [a["index"] for a in (await (await client.get("/received")).json())["alarms"]] == [0]


def test_timestamps_up_to_300_s_away_are_fresh() -> None:
    headers = signed(at=1000)
    check = headers["X-Campusgw-Timestamp"], headers["X-Campusgw-Signature"], BODY
    assert verify_signature(SECRET, *check, now=1300.0) is None
    assert verify_signature(SECRET, *check, now=700.0) is None
    assert verify_signature(SECRET, *check, now=1300.5) == "stale timestamp"


async def test_rejections_neither_consume_fail_next_nor_reach_the_mode(
    client: TestClient[Any, Any],
) -> None:
    await client.post("/_control", json={"fail_next": 1, "mode": "timeout"})
    assert (await post(client, {}))[0] == 401
    assert (await (await client.get("/healthz")).json())["fail_next"] == 1


async def test_secret_is_set_and_removed_at_run_time() -> None:
    async with TestClient(TestServer(make_app(Endpoint("fire")))) as client:
        assert (await post(client, {}))[0] == 200
        settings = await (await client.post("/_control", json={"secret": SECRET})).json()
        assert settings["signed"] is True and SECRET not in orjson.dumps(settings).decode()
        assert (await post(client, {}))[0] == 401
        assert (await post(client, signed()))[0] == 200
        await client.post("/_control", json={"secret": None})
        assert (await post(client, {}))[0] == 200


async def test_clear_forgets_rejections(client: TestClient[Any, Any]) -> None:
    await post(client, {})
    await client.post("/_control", json={"clear": True})
    assert (await (await client.get("/attempts")).json())["rejected"] == {}
