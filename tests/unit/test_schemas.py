"""docs/schemas/ and the field tables of docs/devices.md must match gateway.models."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import drivers
from gateway import schemas
from gateway.models import EVENT_MODELS, STATUS_MODELS, Availability, Channel, Kind

ROOT = Path(__file__).parents[2]
MODELS: list[type[BaseModel]] = [*EVENT_MODELS.values(), *STATUS_MODELS.values(), Availability]


def test_committed_schemas_are_current() -> None:
    stale = schemas.stale(ROOT / "docs" / "schemas")
    assert not stale, f"docs/schemas is stale ({', '.join(stale)}): run `campusgw schemas`"


def test_one_schema_per_message_type() -> None:
    names = {f"{kind}.{channel}.json" for kind in Kind for channel in ("event", "status")}
    assert set(schemas.generate()) == names | {"availability.json"}


def test_stale_names_missing_and_changed_files(tmp_path: Path) -> None:
    written = schemas.write(tmp_path / "out")
    assert len(written) == 7 and schemas.stale(tmp_path / "out") == []
    (tmp_path / "out" / "gate.event.json").write_text("{}\n")
    (tmp_path / "out" / "availability.json").unlink()
    assert schemas.stale(tmp_path / "out") == ["gate.event.json", "availability.json"]


def test_files_are_pretty_sorted_and_end_with_a_newline(tmp_path: Path) -> None:
    (path, *_) = schemas.write(tmp_path)
    text = path.read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "$id": ')
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize(("name", "schema"), sorted(schemas.generate().items()))
def test_schema_has_id_title_and_an_example_drivers_accept(
    name: str, schema: dict[str, Any]
) -> None:
    assert schema["$id"] == f"urn:campusgw:schema:v1:{name.removesuffix('.json')}"
    assert schema["title"].endswith(")") and "campus/{school}/" in schema["title"]
    (example,) = schema["examples"]
    kind, _, channel = name.removesuffix(".json").rpartition(".")
    for driver in [drivers.default_for(k) for k in Kind if kind in ("", k)]:
        driver.decode(Channel(channel), json.dumps(example).encode())


# --- docs/devices.md field tables --------------------------------------------------------------


def _values(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return ", ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if prop.get("format") == "date-time":
        return "RFC 3339, zone required"
    if prop.get("type") == "boolean":
        return "`true`, `false`"
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is not None and high is not None:
        return f"{low} to {high}"
    return f"≥ {low}" if low is not None else ""


def fact_rows(model: type[BaseModel]) -> dict[str, str]:
    """The generated part of each table row: field, type, required, values."""
    schema = model.model_json_schema()
    rows = {}
    for name, prop in schema["properties"].items():
        (branch,) = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
        default = (
            "yes" if name in schema.get("required", []) else f"no, `{json.dumps(prop['default'])}`"
        )
        rows[name] = f"| `{name}` | {branch['type']} | {default} | {_values(branch)} |"
    return rows


def doc_rows(model: type[BaseModel]) -> dict[str, str]:
    text = (ROOT / "docs" / "devices.md").read_text(encoding="utf-8")
    section = re.search(rf"^### {model.__name__}\b.*?\n(.*?)(?=^#)", text, re.M | re.S)
    assert section, f"docs/devices.md has no '### {model.__name__}' section"
    rows = re.findall(r"^\| `(\w+)` \|.*$", section.group(1), re.M)
    lines = re.findall(r"^\| `\w+` \|.*$", section.group(1), re.M)
    return dict(zip(rows, lines, strict=True))


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_devices_md_tables_match_the_models(model: type[BaseModel]) -> None:
    expected, documented = fact_rows(model), doc_rows(model)
    assert list(documented) == list(expected), "fields differ from the model"
    for name, facts in expected.items():
        assert documented[name].startswith(facts), f"row for {name} should start {facts}"
