"""Police/fire linkage endpoints (`campusgw linkage-sim`) that record every alarm they are sent.

Each endpoint is an HTTP server on its own port:

- `POST /alarms`   an alarm as JSON with an `Idempotency-Key` header. An endpoint with a secret
                   first checks the signature (below) and answers 401 to a bad one. A body that
                   is not JSON or lacks the key gets 400. Otherwise the answer depends on the
                   mode: ok 200 `{"ok": true, "received_id": ...}`; error 503; timeout never
                   answers (holds the request until the client gives up); slow waits `slow_ms`
                   then answers 200; drop closes the connection without any HTTP answer, as a
                   crashing receiver would; refuse closes the port, so connecting fails
                   ("connection refused") until the mode changes again; open connections are
                   closed too (a request being answered first; one held by timeout mode after
                   1 s), and a request that still arrives on one is dropped.
- `GET /received`  what the endpoint confirmed (answered 2xx): count, unique_keys, alarms, each
                   with index, received_id, idempotency_key, duplicate, `at` (arrival, UTC, to
                   the microsecond) and the alarm; `?since=N` returns alarms from index N on.
- `GET /attempts`  every request, whatever it was answered, with its answer and reason;
                   `rejected` counts the 401s by reason ("bad signature", "stale timestamp").
- `POST /_control` `{"mode": ..., "slow_ms": ..., "fail_next": N, "clear": true,
                   "secret": "..." | null, "schedule": [{"start": 0, "end": 20, "mode": "error"}]
                   | null, "schedule_origin": "start" | "now"}` changes behaviour at run time;
                   fail_next answers 503 to the next N alarms, clear forgets all records.
- `GET /healthz`   always 200 with the current settings (`mode` is the one that applies now).

Signed webhooks: with a secret (`--secret NAME=SECRET` or /_control), a request must carry
`X-Campusgw-Timestamp` (unix seconds) and `X-Campusgw-Signature: sha256=<hex HMAC-SHA256(secret,
timestamp + "." + body)>`; a missing or wrong signature gets 401 "bad signature", a timestamp more
than 300 s from our clock 401 "stale timestamp".

Fault schedules: `--schedule police:0-20=error,20-40=timeout` puts police in error mode for the
first 20 s after the simulator started, then in timeout mode for 20 s, then back in its base mode
(`mode` of /_control). A schedule set by /_control counts from the simulator's start, or from the
request with `"schedule_origin": "now"`.

Control port: refuse closes the endpoint's own port, and its /_control with it; to end a refusal
not ended by a schedule, `--control-port PORT` serves `POST /_control/NAME`, `GET /received/NAME`,
`GET /attempts/NAME`, `GET /healthz/NAME` and `GET /healthz` (all endpoints) on one more port.

With `--record DIR`, each confirmed alarm is appended as one JSON line to DIR/NAME.jsonl and
each attempt to DIR/NAME.attempts.jsonl, flushed at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.linkage_app import make_app, make_control_app
from simulators.linkage_endpoint import Endpoint
from simulators.linkage_schedule import MODES, Window, parse_spec

__all__ = ["MODES", "Endpoint", "Listener", "build_parser", "make_app", "run", "serve"]

RETRY_S = 0.5  # reopening a refusing endpoint's port failed: try again this soon
CLOSE_S = 1.0  # refuse: a request still being handled gets this long before it is cut off
log = logging.getLogger("campusgw.linkage_sim")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port 1-65535, got {text!r}")
    return int(text)


def _endpoint_arg(text: str) -> tuple[str, int]:
    name, sep, port = text.partition(":")
    if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected NAME:PORT such as police:8110, got {text!r}")
    return name, int(port)


def _secret_arg(text: str) -> tuple[str, str]:
    name, sep, secret = text.partition("=")
    if not sep or not name or not secret:
        raise argparse.ArgumentTypeError(
            f"expected NAME=SECRET such as police=s3cret, got {text!r}"
        )
    return name, secret


def _schedule_arg(text: str) -> tuple[str, tuple[Window, ...]]:
    name, sep, spec = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            f"expected NAME:START-END=MODE,... such as police:0-20=error,20-40=timeout, "
            f"got {text!r}"
        )
    try:
        return name, parse_spec(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad schedule {text!r}: {exc}") from None


def build_parser(p: argparse.ArgumentParser) -> None:
    """Add the linkage-sim options to p."""
    p.description = "Run police/fire HTTP endpoints that record the alarms the gateway forwards."
    _add_serving_options(p)
    _add_behaviour_options(p)


def _add_serving_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--endpoint", action="append", type=_endpoint_arg, metavar="NAME:PORT",
        help="an endpoint to serve, repeatable (default: police:8110 and fire:8119)",
    )  # fmt: skip
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--control-port", type=_port, metavar="PORT",
        help="also serve POST /_control/NAME, GET /received/NAME, /attempts/NAME and /healthz "
        "for every endpoint on this port, which stays open when an endpoint refuses "
        "(default: none)",
    )  # fmt: skip
    p.add_argument(
        "--record", type=Path, metavar="DIR",
        help="append confirmed alarms to DIR/NAME.jsonl and attempts to DIR/NAME.attempts.jsonl "
        "(default: keep them in memory only)",
    )  # fmt: skip
    p.add_argument(
        "--verbose", action="store_true",
        help="log one line per confirmed or rejected alarm and per port closed or reopened "
        "(default: off)",
    )  # fmt: skip


def _add_behaviour_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mode", choices=MODES, default="ok",
        help="base behaviour of every endpoint: ok answers 200, error 503, timeout never "
        "answers, slow answers 200 after --slow-ms, drop closes the connection unanswered, "
        "refuse stops listening (default: %(default)s; change it at run time with POST /_control)",
    )  # fmt: skip
    p.add_argument(
        "--slow-ms", type=int, default=1000,
        help="delay of the slow mode, milliseconds (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--secret", action="append", type=_secret_arg, default=[], metavar="NAME=SECRET",
        help="endpoint NAME answers 401 unless a request carries X-Campusgw-Timestamp (unix "
        "seconds, within 300 s of now) and X-Campusgw-Signature: sha256=hex(HMAC-SHA256(SECRET, "
        "timestamp + '.' + body)); repeatable; visible to `ps`, so for test secrets only "
        "(default: no signature required; set or remove at run time with POST /_control)",
    )  # fmt: skip
    p.add_argument(
        "--schedule", action="append", type=_schedule_arg, default=[], metavar="NAME:SPEC",
        help="fault schedule of endpoint NAME, repeatable: SPEC is START-END=MODE,... in "
        "seconds since the simulator started, e.g. police:0-20=error,20-40=timeout; outside "
        "its windows the base mode applies (default: no schedule)",
    )  # fmt: skip


def endpoints_from_args(args: argparse.Namespace) -> list[tuple[Endpoint, int]]:
    """The endpoints the options describe, with their ports; ValueError on a conflict."""
    pairs: list[tuple[str, int]] = args.endpoint or [("police", 8110), ("fire", 8119)]
    names = [name for name, _ in pairs]
    if len(set(names)) < len(names):
        raise ValueError(f"endpoint names must differ, got {', '.join(names)}")
    secrets = _by_name("--secret", args.secret, names)
    schedules = _by_name("--schedule", args.schedule, names)
    endpoints = []
    for name, port in pairs:
        ep = Endpoint(
            name, args.mode, args.slow_ms, record_dir=args.record,
            secret=secrets.get(name), schedule=schedules.get(name, ()),
        )  # fmt: skip
        endpoints.append((ep, port))
    return endpoints


def _by_name(option: str, given: list[tuple[str, Any]], names: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in given:
        if name not in names:
            raise ValueError(f"{option} names {name!r}, not an endpoint ({', '.join(names)})")
        if name in values:
            raise ValueError(f"{option} given twice for {name!r}")
        values[name] = value
    return values


class Listener:
    """An endpoint's listening socket: open, except while the endpoint's mode is refuse."""

    def __init__(self, endpoint: Endpoint, runner: web.AppRunner, host: str, port: int) -> None:
        self.endpoint, self.runner, self.host, self.port = endpoint, runner, host, port
        self.site: web.TCPSite | None = None

    async def open(self) -> None:
        """Listen on the port (again); OSError when it cannot."""
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        self.site, self.endpoint.listening = site, True

    async def close(self) -> None:
        """Stop listening, so connecting is refused, and close the open connections.

        Idle ones close at once, busy ones once answered (so a /_control that asked for refuse
        gets its answer) or after CLOSE_S (a request held by timeout mode).
        """
        if self.site is not None:
            await self.site.stop()
            self.site = None
        self.endpoint.listening = False
        connections = self.runner.server.connections if self.runner.server else []
        for connection in connections:
            connection.close()  # wakes idle keep-alive connections so that they end
        await asyncio.gather(*(connection.shutdown(CLOSE_S) for connection in connections))

    async def follow(self) -> None:
        """Open or close the port to match the endpoint's mode now."""
        refusing = self.endpoint.mode_now() == "refuse"
        if refusing and self.site is not None:
            await self.close()
            log.info("%s refuses connections on port %d", self.endpoint.name, self.port)
        elif not refusing and self.site is None:
            await self.open()
            log.info("%s listens on port %d again", self.endpoint.name, self.port)

    async def supervise(self) -> None:
        """Follow the mode forever: after every /_control and at every schedule edge."""
        while True:
            self.endpoint.changed.clear()
            try:
                await self.follow()
                delay = self.endpoint.next_change_in()
            except OSError as exc:
                log.warning("%s cannot listen on port %d: %s", self.endpoint.name, self.port, exc)
                delay = RETRY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.endpoint.changed.wait(), delay)


@contextlib.asynccontextmanager
async def _running(app: web.Application) -> AsyncIterator[web.AppRunner]:
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    try:
        yield runner
    finally:
        await runner.cleanup()


async def serve(
    endpoints: list[tuple[Endpoint, int]],
    host: str,
    stop: asyncio.Event,
    control_port: int | None = None,
) -> None:
    """Serve each endpoint on its port, and the control app on control_port, until stop is set.

    Raises OSError at startup when a port cannot be listened on.
    """
    async with contextlib.AsyncExitStack() as stack:
        listeners = [await _serve_endpoint(stack, ep, host, port) for ep, port in endpoints]
        if control_port is not None:
            await _serve_control(stack, [ep for ep, _ in endpoints], host, control_port)
        async with asyncio.TaskGroup() as supervisors:  # a supervisor's crash stops us
            tasks = [supervisors.create_task(listener.supervise()) for listener in listeners]
            await stop.wait()
            for task in tasks:
                task.cancel()


async def _serve_endpoint(
    stack: contextlib.AsyncExitStack, ep: Endpoint, host: str, port: int
) -> Listener:
    listener = Listener(ep, await stack.enter_async_context(_running(make_app(ep))), host, port)
    await listener.open()  # even in refuse mode, so that a port in use fails at startup
    print(f"{ep.name}: http://{host}:{port}/alarms mode={ep.mode_now()}", flush=True)
    return listener


async def _serve_control(
    stack: contextlib.AsyncExitStack, endpoints: list[Endpoint], host: str, port: int
) -> None:
    runner = await stack.enter_async_context(_running(make_control_app(endpoints)))
    await web.TCPSite(runner, host, port).start()
    print(f"control: http://{host}:{port}/_control/NAME", flush=True)


async def _main(args: argparse.Namespace) -> int:
    try:
        endpoints = endpoints_from_args(args)
    except ValueError as exc:
        print(f"campusgw linkage-sim: error: {exc}", file=sys.stderr, flush=True)
        return 2
    if args.record is not None:
        args.record.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve(endpoints, args.host, stop, args.control_port)
    except OSError as exc:
        print(f"linkage-sim: cannot listen: {exc}", flush=True)
        return 2
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the endpoints until SIGINT or SIGTERM; exit code 2 on bad options or a port in use."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    return asyncio.run(_main(args))
