"""FastAPI adapter: health, alarms, devices, dead letters and counters for the security room."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from gateway.alarms import school_test_alarm
from gateway.api.fleet_routes import RegistryWriter, add_fleet_routes
from gateway.config import LinkageSettings
from gateway.fleet import Fleet, test_button
from gateway.metrics import CONTENT_TYPE, MetricsView, render
from gateway.models import ID_PATTERN, Alarm, AlarmState, DeviceRecord
from gateway.ports import AlarmNotFoundError, AlarmQuery, AlarmStore, InvalidTransitionError
from gateway.stats import Stats


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What the API reads; wired by runtime.py."""

    store: AlarmStore
    fleet: Fleet
    stats: Stats
    health: Callable[[], Awaitable[dict[str, Any]]]
    extra_stats: Callable[[], dict[str, float]]
    linkage: LinkageSettings = field(default_factory=LinkageSettings)
    on_alarms: Callable[[], None] = lambda: None
    registry_writer: RegistryWriter | None = None
    cameras: Callable[[], list[dict[str, Any]]] = list
    evidence_dir: Path | None = None
    sessions: Callable[[], dict[str, bool]] = dict  # MQTT session -> connected
    endpoints: Callable[[], dict[str, str]] = dict  # linkage endpoint -> up/down
    flooding: Callable[[], dict[str, int]] = dict  # device -> messages over its rate limit


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """A page of results with the total before paging."""

    total: int
    limit: int
    offset: int
    items: list[T]


class DeadLetterOut(BaseModel):
    """A dead letter as JSON: payload as text when it is UTF-8, and always as base64."""

    id: int
    topic: str
    reason: str
    received_at: datetime
    payload_text: str | None
    payload_base64: str
    size: int


CONSOLE_DIR = Path(__file__).resolve().parents[2] / "dashboards" / "console"
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
Offset = Annotated[int, Query(ge=0, description="Items to skip.")]


def create_app(ctx: ApiContext) -> FastAPI:
    """The API; OpenAPI at /docs."""
    app = FastAPI(
        title="Campus security gateway",
        version="0.1.0",
        description="Alarms, devices and dead letters of one gateway.",
    )
    _health_routes(app, ctx)
    _alarm_routes(app, ctx)
    _test_routes(app, ctx)
    _other_routes(app, ctx)
    add_fleet_routes(app, ctx.fleet, ctx.registry_writer)
    if CONSOLE_DIR.is_dir():  # a source checkout; a wheel install serves the API only
        app.mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse("/console/")

    return app


def _health_routes(app: FastAPI, ctx: ApiContext) -> None:
    @app.get("/healthz", summary="MQTT and InfluxDB state; 503 when either is down")
    async def healthz() -> JSONResponse:
        report = await ctx.health()
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    @app.get("/api/stats", summary="Counters since start-up and totals from the store")
    async def stats() -> dict[str, Any]:
        counts = await ctx.store.counts()
        return {**ctx.stats.snapshot(), **counts, **ctx.extra_stats()}

    @app.get("/metrics", summary="Prometheus metrics, text format 0.0.4 (docs/metrics.md)")
    async def metrics() -> Response:
        try:  # a stalled store must not stop the scrape that would show it
            async with asyncio.timeout(1.0):
                store = await ctx.store.counts()
        except Exception:
            store = {}
        view = MetricsView(ctx.stats, ctx.extra_stats(), ctx.sessions(), ctx.endpoints(), store)
        return Response(render(view), media_type=CONTENT_TYPE)


class Handling(BaseModel):
    """Who acknowledges or resets an alarm, and why."""

    operator: str = Field(min_length=1, max_length=100, description="Person handling the alarm.")
    note: str = Field("", max_length=2000, description="What was done or found.")


def _alarm_routes(app: FastAPI, ctx: ApiContext) -> None:
    @app.get("/api/alarms", summary="Alarms, oldest first, with per-endpoint delivery")
    async def list_alarms(
        school: str | None = None,
        device: str | None = None,
        state: AlarmState | None = None,
        open: Annotated[bool, Query(description="Only alarms not yet reset.")] = False,
        test: Annotated[bool | None, Query(description="Only tests, or only real.")] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> Page[Alarm]:
        query = AlarmQuery(
            school, device, state.value if state else None, open, test, limit, offset
        )
        items, total = await ctx.store.list_alarms(query)
        return Page[Alarm](total=total, limit=limit, offset=offset, items=items)

    @app.get("/api/alarms/{alarm_id}", summary="One alarm")
    async def get_alarm(alarm_id: str) -> Alarm:
        alarm = await ctx.store.get_alarm(alarm_id)
        if alarm is None:
            raise HTTPException(404, f"no alarm {alarm_id}")
        return alarm

    @app.post("/api/alarms/{alarm_id}/ack", summary="Acknowledge: a person has seen the alarm")
    async def acknowledge(alarm_id: str, body: Handling) -> Alarm:
        return await _transition(ctx, alarm_id, "acknowledge", body)

    @app.post("/api/alarms/{alarm_id}/reset", summary="Reset (close) an acknowledged alarm")
    async def reset(alarm_id: str, body: Handling) -> Alarm:
        return await _transition(ctx, alarm_id, "reset", body)


class TestRequest(BaseModel):
    """Which schools to test end to end (all registered schools when empty)."""

    schools: list[str] = Field(default_factory=list)
    operator: str = Field(min_length=1, max_length=100)


class TestResult(BaseModel):
    """Test alarms raised, per school, and schools that could not be tested."""

    raised: dict[str, str] = Field(description="school -> test alarm id")
    skipped: dict[str, str] = Field(description="school -> why")


def _test_routes(app: FastAPI, ctx: ApiContext) -> None:
    @app.post("/api/test-alarms", summary="End-to-end test alarms from schools' gatehouse buttons")
    async def test_alarms(body: TestRequest) -> TestResult:
        registry = ctx.fleet.registry
        raised, skipped, alarms = {}, {}, []
        for school in body.schools or sorted(registry.schools):
            button = test_button(registry, school)
            if button is None:
                skipped[school] = (
                    "no registered alarm button"
                    if school in registry.schools
                    else "not in the registry"
                )
                continue
            alarm = school_test_alarm(button, ctx.linkage)
            if not alarm.endpoints:
                skipped[school] = "no linkage endpoint with a test channel on the police route"
                continue
            alarms.append(alarm)
            raised[school] = alarm.id
        if alarms:
            await ctx.store.commit(alarms, [])
            await ctx.store.audit("test_alarms_requested", body.operator, {"schools": list(raised)})
            ctx.on_alarms()
        return TestResult(raised=raised, skipped=skipped)


async def _transition(ctx: ApiContext, alarm_id: str, action: str, body: Handling) -> Alarm:
    try:
        return await ctx.store.transition(alarm_id, action, body.operator, body.note)
    except AlarmNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except InvalidTransitionError as exc:
        raise HTTPException(409, str(exc)) from None


def _other_routes(app: FastAPI, ctx: ApiContext) -> None:
    @app.get("/api/flooding", summary="Devices over their rate limit: messages dropped, most first")
    async def flooding() -> dict[str, int]:
        return ctx.flooding()

    @app.get(
        "/api/devices", summary="Devices heard and/or registered, with availability",
        response_model=Page[DeviceRecord],
    )  # fmt: skip
    async def devices(
        school: str | None = None,
        kind: str | None = None,
        registered: Annotated[
            bool | None, Query(description="false: publishing but not in the registry.")
        ] = None,
        state: Annotated[
            str | None, Query(pattern="^(online|offline|unknown)$", description="Availability.")
        ] = None,
        never_seen: Annotated[bool, Query(description="Registered, never heard.")] = False,
        limit: Limit = 1000,
        offset: Offset = 0,
    ) -> Response:
        total, page = ctx.fleet.records(
            school, kind, registered, state, never_seen, page=(offset, limit)
        )
        # Serialized once by pydantic (FastAPI would validate the 1,000 records again first).
        body = Page[DeviceRecord](total=total, limit=limit, offset=offset, items=page)
        return Response(body.model_dump_json(), media_type="application/json")

    @app.get("/api/cameras", summary="Camera health: video quality troubles, scores, evidence")
    async def cameras(school: str | None = None) -> list[dict[str, Any]]:
        return [c for c in ctx.cameras() if school is None or c["school"] == school]

    @app.get("/api/evidence/{school}/{device}/{name}", summary="A camera trouble's frame")
    async def evidence(school: str, device: str, name: str) -> FileResponse:
        if ctx.evidence_dir is None or not all(
            ID_PATTERN.fullmatch(part) for part in (school, device, name)
        ):
            raise HTTPException(404, "no such evidence")
        path = (ctx.evidence_dir / school / device / name).resolve()
        if not path.is_relative_to(ctx.evidence_dir.resolve()) or not path.is_file():
            raise HTTPException(404, "no such evidence")
        return FileResponse(path, media_type="image/jpeg")

    @app.get("/api/dead-letters", summary="Messages that could not be used, newest first")
    async def dead_letters(limit: Limit = 100, offset: Offset = 0) -> Page[DeadLetterOut]:
        letters, total = await ctx.store.list_dead_letters(limit, offset)
        items = [
            DeadLetterOut(
                id=d.id, topic=d.topic, reason=d.reason, received_at=d.received_at,
                payload_text=_text(d.payload), size=len(d.payload),
                payload_base64=base64.b64encode(d.payload).decode(),
            )
            for d in letters
        ]  # fmt: skip
        return Page[DeadLetterOut](total=total, limit=limit, offset=offset, items=items)


def _text(payload: bytes) -> str | None:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
