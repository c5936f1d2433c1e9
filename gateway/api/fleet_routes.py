"""API routes for the registry (CRUD) and the coverage rates bureaus report."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Protocol

import orjson
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import PlainTextResponse, Response

from gateway.fleet import Fleet
from gateway.registry import Device, School
from gateway.storage.registry_store import RegistryStoreError


class RegistryWriter(Protocol):
    """The registry store's write side (blocking; called in a thread)."""

    def upsert_school(self, school: School) -> None: ...

    def upsert_device(self, device: Device) -> None: ...

    def delete_school(self, school_id: str, cascade: bool = False) -> bool: ...

    def delete_device(self, school: str, kind: str, device_id: str) -> bool: ...


Level = Annotated[
    str, Query(pattern="^(school|county|prefecture|all)$", description="Aggregation level.")
]


def add_fleet_routes(app: FastAPI, fleet: Fleet, writer: RegistryWriter | None) -> None:
    """Coverage (read) and registry (CRUD) routes."""
    _coverage_routes(app, fleet)
    _registry_reads(app, fleet)
    if writer is not None:
        _registry_writes(app, fleet, writer)


def _coverage(fleet: Fleet) -> Any:
    if fleet.coverage is None:
        raise HTTPException(503, "coverage not computed yet; try again in a few seconds")
    return fleet.coverage


def _coverage_routes(app: FastAPI, fleet: Fleet) -> None:
    @app.get("/api/coverage", summary="Coverage rates with numerators, denominators, shortfalls")
    async def coverage(
        level: Level = "county",
        id: Annotated[str | None, Query(description="One unit; all units when absent.")] = None,
        shortfalls: Annotated[bool, Query(description="List what is behind each rate.")] = True,
    ) -> Response:
        try:
            result = _coverage(fleet).level(level, id, shortfalls=shortfalls)
        except KeyError:
            raise HTTPException(404, f"no {level} {id!r} in the registry") from None
        # Precomputed dicts straight to orjson: FastAPI's encoder takes 100x longer here.
        return Response(orjson.dumps(result), media_type="application/json")

    @app.get("/api/coverage.csv", summary="Coverage rates as CSV, one row per unit")
    async def coverage_csv(level: Level = "school") -> PlainTextResponse:
        text = _coverage(fleet).to_csv(level)
        headers = {"Content-Disposition": f'attachment; filename="coverage-{level}.csv"'}
        return PlainTextResponse(text, media_type="text/csv", headers=headers)

    @app.get("/api/coverage.txt", summary="Coverage rates as a terminal table")
    async def coverage_table(level: Level = "county") -> PlainTextResponse:
        return PlainTextResponse(_coverage(fleet).table(level))


def _registry_reads(app: FastAPI, fleet: Fleet) -> None:
    @app.get("/api/registry/schools", summary="Registered schools")
    async def schools(county: str | None = None, prefecture: str | None = None) -> list[School]:
        return [
            s for s in fleet.registry.schools.values()
            if (county is None or s.county == county)
            and (prefecture is None or s.prefecture == prefecture)
        ]  # fmt: skip

    @app.get("/api/registry/schools/{school_id}", summary="One school and its devices")
    async def school(school_id: str) -> dict[str, Any]:
        found = fleet.registry.schools.get(school_id)
        if found is None:
            raise HTTPException(404, f"no school {school_id} in the registry")
        devices = [entry.model() for entry in fleet.registry.by_school.get(school_id, [])]
        return {"school": found, "devices": devices}


def _registry_writes(app: FastAPI, fleet: Fleet, writer: RegistryWriter) -> None:
    async def write(call: Callable[[], Any]) -> Any:
        try:
            result = await asyncio.to_thread(call)
        except (RegistryStoreError, KeyError, ValueError) as exc:
            raise HTTPException(409, str(exc)) from None
        fleet.registry_changed.set()
        return result

    @app.put("/api/registry/schools/{school_id}", summary="Add or replace a school")
    async def put_school(school_id: str, body: School) -> School:
        if body.id != school_id:
            raise HTTPException(422, f"body id {body.id!r} differs from the path {school_id!r}")
        await write(lambda: writer.upsert_school(body))
        return body

    @app.delete("/api/registry/schools/{school_id}", summary="Delete a school")
    async def delete_school(school_id: str, cascade: bool = False) -> dict[str, bool]:
        if not await write(lambda: writer.delete_school(school_id, cascade)):
            raise HTTPException(404, f"no school {school_id} in the registry")
        return {"deleted": True}

    @app.put("/api/registry/devices/{school}/{kind}/{device_id}", summary="Add/replace a device")
    async def put_device(school: str, kind: str, device_id: str, body: Device) -> Device:
        if body.key != f"{school}/{kind}/{device_id}":
            raise HTTPException(422, f"body {body.key!r} differs from the path")
        await write(lambda: writer.upsert_device(body))
        return body

    @app.delete("/api/registry/devices/{school}/{kind}/{device_id}", summary="Delete a device")
    async def delete_device(school: str, kind: str, device_id: str) -> dict[str, bool]:
        if not await write(lambda: writer.delete_device(school, kind, device_id)):
            raise HTTPException(404, f"no device {school}/{kind}/{device_id} in the registry")
        return {"deleted": True}
