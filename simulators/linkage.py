"""Police/fire linkage endpoints (`campusgw linkage-sim`) that record every alarm they are sent.

Each endpoint is an HTTP server on its own port:

- `POST /alarms`   an alarm as JSON with an `Idempotency-Key` header. What it answers depends on
                   the mode: ok 200 `{"ok": true, "received_id": ...}`; error 503; timeout never
                   answers (holds the request until the client gives up); slow waits `slow_ms`
                   then answers 200; refuse closes the connection without any HTTP answer, as a
                   crashing receiver would. A body that is not JSON or lacks the key gets 400.
- `GET /received`  what the endpoint confirmed (answered 2xx): count, unique keys, alarms;
                   `?since=N` returns alarms from index N on.
- `GET /attempts`  every request, whatever it was answered, with the answer.
- `POST /_control` `{"mode": ..., "slow_ms": ..., "fail_next": N, "clear": true}` changes
                   behaviour at run time; fail_next answers 503 to the next N alarms.
- `GET /healthz`   always 200 with the current mode.

With `--record DIR`, each confirmed alarm is appended as one JSON line to DIR/NAME.jsonl and
each attempt to DIR/NAME.attempts.jsonl, flushed at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

MODES = ("ok", "error", "timeout", "slow", "refuse")
HANG_S = 3600.0  # "timeout" mode: far past any client timeout
log = logging.getLogger("campusgw.linkage_sim")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Endpoint:
    """One simulated receiver: its behaviour and everything it was sent."""

    name: str
    mode: str = "ok"
    slow_ms: int = 1000
    fail_next: int = 0
    record_dir: Path | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    ids_by_key: dict[str, str] = field(default_factory=dict)

    def control(self, change: dict[str, Any]) -> dict[str, Any]:
        """Apply a /_control body; raise ValueError on a bad one. Returns the new settings."""
        unknown = set(change) - {"mode", "slow_ms", "fail_next", "clear"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        mode = change.get("mode", self.mode)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        slow_ms = change.get("slow_ms", self.slow_ms)
        fail_next = change.get("fail_next", self.fail_next)
        if type(slow_ms) is not int or type(fail_next) is not int or min(slow_ms, fail_next) < 0:
            raise ValueError("slow_ms and fail_next must be integers >= 0")
        self.mode, self.slow_ms, self.fail_next = mode, slow_ms, fail_next
        if change.get("clear"):
            self.attempts.clear()
            self.received.clear()
            self.ids_by_key.clear()
        return self.settings()

    def settings(self) -> dict[str, Any]:
        """The current behaviour."""
        return {
            "name": self.name,
            "mode": self.mode,
            "slow_ms": self.slow_ms,
            "fail_next": self.fail_next,
        }

    def attempt(self, key: str | None, alarm: Any) -> dict[str, Any]:
        """Record a request as it arrives; its `answer` is filled in when it is known."""
        entry = {
            "index": len(self.attempts),
            "at": _now(),
            "idempotency_key": key,
            "answer": None,
            "alarm": alarm,
        }
        self.attempts.append(entry)
        return entry

    def settle(self, entry: dict[str, Any]) -> None:
        """Write an attempt to the record once its answer is known (or it was dropped)."""
        self._append("attempts.jsonl", entry)

    def confirm(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Record an alarm answered 2xx; a repeated key gets the id it got the first time."""
        key = str(entry["idempotency_key"])
        duplicate = key in self.ids_by_key
        received_id = self.ids_by_key.setdefault(key, f"{self.name}-{len(self.ids_by_key) + 1:06d}")
        record = {
            "index": len(self.received),
            "received_id": received_id,
            "idempotency_key": key,
            "duplicate": duplicate,
            "at": entry["at"],
            "alarm": entry["alarm"],
        }
        self.received.append(record)
        self._append("jsonl", record)
        log.info("%s received %s key=%s%s", self.name, received_id, key, " (duplicate)" * duplicate)
        return record

    def _append(self, suffix: str, record: dict[str, Any]) -> None:
        if self.record_dir is None:
            return
        with (self.record_dir / f"{self.name}.{suffix}").open("ab") as out:
            out.write(orjson.dumps(record) + b"\n")
            out.flush()


ENDPOINT = web.AppKey("endpoint", Endpoint)


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def _post_alarm(request: web.Request) -> web.StreamResponse:
    ep = request.app[ENDPOINT]
    raw = await request.read()
    try:
        alarm: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        alarm = None
    entry = ep.attempt(request.headers.get("Idempotency-Key"), alarm)
    try:
        status, body = await _decide(ep, entry, alarm is None, request)
        entry["answer"] = status
        if status == 200:
            record = ep.confirm(entry)
            body = {
                "ok": True,
                "received_id": record["received_id"],
                "duplicate": record["duplicate"],
            }
        return _json(body, status)
    finally:
        ep.settle(entry)


async def _decide(
    ep: Endpoint, entry: dict[str, Any], bad_json: bool, request: web.Request
) -> tuple[int, dict[str, Any]]:
    """The status to answer, after any waiting the mode asks for."""
    if bad_json:
        return 400, {"ok": False, "error": "body is not JSON"}
    if not entry["idempotency_key"]:
        return 400, {"ok": False, "error": "missing Idempotency-Key header"}
    if ep.fail_next > 0:
        ep.fail_next -= 1
        return 503, {"ok": False, "error": "fail_next"}
    if ep.mode == "error":
        return 503, {"ok": False, "error": "mode error"}
    if ep.mode == "timeout":
        entry["answer"] = "timeout"
        await asyncio.sleep(HANG_S)  # cancelled when the client disconnects
    elif ep.mode == "slow":
        await asyncio.sleep(ep.slow_ms / 1000)
    elif ep.mode == "refuse":
        entry["answer"] = "refused"
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
    ep = request.app[ENDPOINT]
    since = _since(request)
    keys = {r["idempotency_key"] for r in ep.received}
    return _json(
        {"count": len(ep.received), "unique_keys": len(keys), "alarms": ep.received[since:]}
    )


async def _attempts(request: web.Request) -> web.Response:
    ep = request.app[ENDPOINT]
    since = _since(request)
    return _json({"count": len(ep.attempts), "attempts": ep.attempts[since:]})


async def _control(request: web.Request) -> web.Response:
    try:
        change = orjson.loads(await request.read())
        if not isinstance(change, dict):
            raise ValueError("body must be a JSON object")
        return _json(request.app[ENDPOINT].control(change))
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        return _json({"ok": False, "error": str(exc)}, 400)


async def _healthz(request: web.Request) -> web.Response:
    return _json({"ok": True, **request.app[ENDPOINT].settings()})


def make_app(endpoint: Endpoint) -> web.Application:
    """The aiohttp application of one endpoint."""
    app = web.Application()
    app[ENDPOINT] = endpoint
    app.router.add_post("/alarms", _post_alarm)
    app.router.add_get("/received", _received)
    app.router.add_get("/attempts", _attempts)
    app.router.add_post("/_control", _control)
    app.router.add_get("/healthz", _healthz)
    return app


def _endpoint_arg(text: str) -> tuple[str, int]:
    name, sep, port = text.partition(":")
    if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected NAME:PORT such as police:8110, got {text!r}")
    return name, int(port)


def build_parser(p: argparse.ArgumentParser) -> None:
    """Add the linkage-sim options to p."""
    p.description = "Run police/fire HTTP endpoints that record the alarms the gateway forwards."
    p.add_argument(
        "--endpoint", action="append", type=_endpoint_arg, metavar="NAME:PORT",
        help="an endpoint to serve, repeatable (default: police:8110 and fire:8119)",
    )  # fmt: skip
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--record", type=Path, metavar="DIR",
        help="append confirmed alarms to DIR/NAME.jsonl and attempts to DIR/NAME.attempts.jsonl "
        "(default: keep them in memory only)",
    )  # fmt: skip
    p.add_argument(
        "--mode", choices=MODES, default="ok",
        help="initial behaviour of every endpoint: ok answers 200, error 503, timeout never "
        "answers, slow answers 200 after --slow-ms, refuse drops the connection "
        "(default: %(default)s; change it at run time with POST /_control)",
    )  # fmt: skip
    p.add_argument(
        "--slow-ms", type=int, default=1000,
        help="delay of the slow mode, milliseconds (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--verbose", action="store_true", help="log one line per confirmed alarm (default: off)"
    )


async def serve(
    endpoints: list[Endpoint], host: str, ports: list[int], stop: asyncio.Event
) -> None:
    """Serve each endpoint on its port until stop is set."""
    runners = []
    try:
        for ep, port in zip(endpoints, ports, strict=True):
            runner = web.AppRunner(
                make_app(ep), handler_cancellation=True, shutdown_timeout=1.0, access_log=None
            )
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, host, port).start()
            print(f"{ep.name}: http://{host}:{port}/alarms mode={ep.mode}", flush=True)
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


async def _main(args: argparse.Namespace) -> int:
    pairs: list[tuple[str, int]] = args.endpoint or [("police", 8110), ("fire", 8119)]
    if args.record is not None:
        args.record.mkdir(parents=True, exist_ok=True)
    endpoints = [Endpoint(n, args.mode, args.slow_ms, record_dir=args.record) for n, _ in pairs]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(endpoints, args.host, [port for _, port in pairs], stop)
    except OSError as exc:
        print(f"linkage-sim: cannot listen: {exc}", flush=True)
        return 2
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the endpoints until SIGINT or SIGTERM; exit code 2 when a port cannot be opened."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    return asyncio.run(_main(args))
