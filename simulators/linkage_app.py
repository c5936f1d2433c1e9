"""HTTP side of the linkage simulator: each endpoint's application and the control application."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from simulators.linkage_endpoint import Endpoint, now_iso, verify_signature

HANG_S = 3600.0  # "timeout" mode: far past any client timeout
ENDPOINT = web.AppKey("endpoint", Endpoint)
ENDPOINTS = web.AppKey("endpoints", dict[str, Endpoint])


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _endpoint(request: web.Request) -> Endpoint:
    """The endpoint of an endpoint's own app, or the one named in a control-port path."""
    name = request.match_info.get("name")
    if name is None:
        return request.app[ENDPOINT]
    endpoint = request.app[ENDPOINTS].get(name)
    if endpoint is None:
        error = {"ok": False, "error": f"no endpoint {name!r}"}
        raise web.HTTPNotFound(text=orjson.dumps(error).decode(), content_type="application/json")
    return endpoint


async def _post_alarm(request: web.Request) -> web.StreamResponse:
    at = now_iso()  # first thing: the arrival clock
    ep = request.app[ENDPOINT]
    raw = await request.read()
    try:
        alarm: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        alarm = None
    entry = ep.attempt(at, request.headers.get("Idempotency-Key"), alarm)
    try:
        status, body = await _decide(ep, entry, raw, alarm is None, request)
        entry["answer"] = status
        if status == 200:
            record = ep.confirm(entry)
            body = {
                "ok": True,
                "received_id": record["received_id"],
                "duplicate": record["duplicate"],
            }
        else:
            entry["reason"] = body.get("error")
        return _json(body, status)
    finally:
        ep.settle(entry)


async def _decide(
    ep: Endpoint, entry: dict[str, Any], raw: bytes, bad_json: bool, request: web.Request
) -> tuple[int, dict[str, Any]]:
    """The status to answer, after any waiting the mode asks for."""
    if ep.secret is not None:
        headers = request.headers
        reason = verify_signature(
            ep.secret,
            headers.get("X-Campusgw-Timestamp"),
            headers.get("X-Campusgw-Signature"),
            raw,
            time.time(),
        )
        if reason is not None:
            ep.reject(entry, reason)
            return 401, {"ok": False, "error": reason}
    if bad_json:
        return 400, {"ok": False, "error": "body is not JSON"}
    if not entry["idempotency_key"]:
        return 400, {"ok": False, "error": "missing Idempotency-Key header"}
    if ep.fail_next > 0:
        ep.fail_next -= 1
        return 503, {"ok": False, "error": "fail_next"}
    return await _act(ep, entry, request)


async def _act(
    ep: Endpoint, entry: dict[str, Any], request: web.Request
) -> tuple[int, dict[str, Any]]:
    """What the mode does to a valid alarm."""
    mode = ep.mode_now()
    if mode == "error":
        return 503, {"ok": False, "error": "mode error"}
    if mode == "timeout":
        entry["answer"] = "timeout"
        await asyncio.sleep(HANG_S)  # cancelled when the client disconnects
    elif mode == "slow":
        await asyncio.sleep(ep.slow_ms / 1000)
    elif mode in ("drop", "refuse"):
        # refuse: a connection opened before the endpoint stopped listening
        entry["answer"] = "dropped" if mode == "drop" else "refused"
        _abort(request)
    return 200, {}


def _abort(request: web.Request) -> None:
    """Drop the connection without an HTTP answer (the client sees it closed or reset)."""
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError  # nothing to answer on a dropped connection


def _since(request: web.Request) -> int:
    since = request.query.get("since", "0")
    if not since.isdigit():
        raise web.HTTPBadRequest(text="since must be an integer >= 0")
    return int(since)


async def _received(request: web.Request) -> web.Response:
    ep = _endpoint(request)
    since = _since(request)
    keys = {r["idempotency_key"] for r in ep.received}
    return _json(
        {"count": len(ep.received), "unique_keys": len(keys), "alarms": ep.received[since:]}
    )


async def _attempts(request: web.Request) -> web.Response:
    ep = _endpoint(request)
    since = _since(request)
    return _json(
        {"count": len(ep.attempts), "rejected": dict(ep.rejected), "attempts": ep.attempts[since:]}
    )


async def _control(request: web.Request) -> web.Response:
    ep = _endpoint(request)
    try:
        change = orjson.loads(await request.read())
        if not isinstance(change, dict):
            raise ValueError("body must be a JSON object")
        return _json(ep.control(change))
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        return _json({"ok": False, "error": str(exc)}, 400)


async def _healthz(request: web.Request) -> web.Response:
    return _json({"ok": True, **_endpoint(request).settings()})


async def _healthz_all(request: web.Request) -> web.Response:
    endpoints = request.app[ENDPOINTS].values()
    return _json({"ok": True, "endpoints": [ep.settings() for ep in endpoints]})


def make_app(endpoint: Endpoint) -> web.Application:
    """The aiohttp application of one endpoint."""
    app = web.Application()
    app[ENDPOINT] = endpoint
    app.router.add_post("/alarms", _post_alarm)
    # The test channel: end-to-end test alarms (body "test": true), never a real call-out.
    app.router.add_post("/tests", _post_alarm)
    app.router.add_get("/received", _received)
    app.router.add_get("/attempts", _attempts)
    app.router.add_post("/_control", _control)
    app.router.add_get("/healthz", _healthz)
    return app


def make_control_app(endpoints: list[Endpoint]) -> web.Application:
    """The control port's application: every endpoint's control and records, by name."""
    app = web.Application()
    app[ENDPOINTS] = {ep.name: ep for ep in endpoints}
    app.router.add_post("/_control/{name}", _control)
    app.router.add_get("/received/{name}", _received)
    app.router.add_get("/attempts/{name}", _attempts)
    app.router.add_get("/healthz/{name}", _healthz)
    app.router.add_get("/healthz", _healthz_all)
    return app
