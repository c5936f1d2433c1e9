"""JSON Schemas of the device payloads, generated from gateway.models into docs/schemas/.

`campusgw schemas` calls write(); a unit test calls stale(), so a change to the models that is not
regenerated fails the build instead of leaving integrators with an outdated contract.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gateway.models import (
    EVENT_MODELS,
    SCHEMA_VERSION,
    STATUS_MODELS,
    Availability,
    ButtonEvent,
    ButtonStatus,
    CameraEvent,
    CameraStatus,
    Channel,
    GateEvent,
    GateStatus,
    Kind,
)

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_TS = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
# One realistic payload per schema; built from the models, so an example cannot drift from them.
_EXAMPLES: dict[type[BaseModel], BaseModel] = {
    ButtonEvent: ButtonEvent(seq=1, ts=_TS, event="press"),
    GateEvent: GateEvent(seq=12, ts=_TS, event="forced"),
    CameraEvent: CameraEvent(seq=3, ts=_TS, event="video_loss"),
    ButtonStatus: ButtonStatus(seq=2, ts=_TS, battery=87, rssi=-61, power="battery"),
    GateStatus: GateStatus(seq=13, ts=_TS, door="closed", locked=True, battery=90, rssi=-70),
    CameraStatus: CameraStatus(
        seq=4, ts=_TS, fps=25, bitrate_kbps=4096, recording=True, storage_free_gb=812.5
    ),
    Availability: Availability(state="online"),
}


def generate() -> dict[str, dict[str, Any]]:
    """File name (`button.event.json`, ..., `availability.json`) -> JSON Schema."""
    schemas: dict[str, dict[str, Any]] = {}
    for kind in Kind:
        for channel, models in ((Channel.EVENT, EVENT_MODELS), (Channel.STATUS, STATUS_MODELS)):
            topic = f"campus/{{school}}/{kind}/{{device}}/{channel}"
            schemas[f"{kind}.{channel}.json"] = _schema(models[kind], f"{kind}.{channel}", topic)
    topic = "campus/{school}/{kind}/{device}/availability"
    schemas["availability.json"] = _schema(Availability, "availability", topic)
    return schemas


def render(schema: dict[str, Any]) -> str:
    """The committed text of a schema: indent 2, sorted keys, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(directory: Path) -> list[Path]:
    """Write every schema into `directory` (created if missing); return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in generate().items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        paths.append(path)
    return paths


def stale(directory: Path) -> list[str]:
    """Names of the schema files in `directory` that are missing or differ from the models."""
    names = []
    for name, schema in generate().items():
        path = directory / name
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != render(schema):
            names.append(name)
    return names


def _schema(model: type[BaseModel], stem: str, topic: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    example = _EXAMPLES[model].model_dump(mode="json", exclude_defaults=True)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:campusgw:schema:v{SCHEMA_VERSION}:{stem}",
        **schema,
        "title": f"{model.__name__} ({topic})",
        "examples": [example],
    }
