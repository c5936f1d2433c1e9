"""The bench's police endpoint: answers every alarm 200 and records time.time() at its arrival.

The linkage simulator (`campusgw linkage-sim`) records arrival truncated to the millisecond;
with alarm latencies of one or two milliseconds and presses paced at a fixed period, that
truncation biased every sample the same way, so the bench receives the alarms itself. It runs
as its own process so that the bench's publisher threads cannot delay the arrival clock.

    python bench/endpoint.py --port 8110   # POST /alarms, GET /received, /count, /healthz
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson
from aiohttp import web

RECEIVED = web.AppKey("received", list)


def _json(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _alarm(request: web.Request) -> web.Response:
    at = time.time()  # first thing: the arrival clock
    record = {
        "at": at,
        "idempotency_key": request.headers.get("Idempotency-Key"),
        "alarm": orjson.loads(await request.read()),
    }
    request.app[RECEIVED].append(record)
    return _json({"ok": True})


async def _received(request: web.Request) -> web.Response:
    return _json({"alarms": request.app[RECEIVED]})


async def _count(request: web.Request) -> web.Response:
    received = request.app[RECEIVED]
    keys = {r["idempotency_key"] for r in received}
    return _json({"count": len(received), "unique_keys": len(keys)})


async def _healthz(request: web.Request) -> web.Response:
    return _json({"ok": True})


def make_app() -> web.Application:
    """POST /alarms records; GET /received lists; GET /count counts; GET /healthz is 200."""
    app = web.Application()
    app[RECEIVED] = []
    app.router.add_post("/alarms", _alarm)
    app.router.add_get("/received", _received)
    app.router.add_get("/count", _count)
    app.router.add_get("/healthz", _healthz)
    return app


def main() -> None:
    """Serve on 127.0.0.1:--port until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args()
    web.run_app(make_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
