"""The sample registry generator writes registries the gateway imports; the fleet plays them."""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

import pytest

from gateway import registry_io
from gateway.models import ID_PATTERN
from gateway.registry import Device, School
from simulators import fleet, registry_gen


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    registry_gen.build_parser(parser)
    return parser.parse_args(list(argv))


Generated = tuple[list[registry_gen.Record], list[registry_gen.Record], list[str]]


def generate(schools: int = 300, share: float = 0.05, seed: int = 1) -> Generated:
    return registry_gen.generate("p-01", 6, schools, share, 1, random.Random(seed))


def test_field_lists_mirror_the_registry_models() -> None:
    assert tuple(School.model_fields) == registry_gen.SCHOOL_FIELDS
    assert tuple(Device.model_fields) == registry_gen.DEVICE_FIELDS


@pytest.mark.parametrize("output", ["--out", "--csv"])
def test_output_imports_cleanly(tmp_path: Path, output: str) -> None:
    target = tmp_path / ("r.yaml" if output == "--out" else "csv")
    assert registry_gen.run(args("--seed", "5", output, str(target))) == 0
    schools, devices = registry_io.load([target])
    expected_schools, expected_devices, _ = generate(seed=5)
    assert [s.id for s in schools] == [s["id"] for s in expected_schools]
    assert [d.key for d in devices] == [f"{d['school']}/{d['kind']}/{d['id']}"
                                        for d in expected_devices]  # fmt: skip


def test_yaml_to_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert registry_gen.run(args("--seed", "2", "--schools", "3")) == 0
    out, err = capsys.readouterr()
    assert out.startswith("schools:\n- {id: s0001, name: ") and "devices:\n" in out
    assert err.startswith("registry p-01: 6 counties, 3 schools")


def test_same_seed_same_registry() -> None:
    assert generate(seed=9) == generate(seed=9)
    assert generate(seed=9) != generate(seed=10)


def test_ids_counties_and_type_mix() -> None:
    schools, devices, _ = generate(schools=3000)
    assert [s["id"] for s in schools[:2]] == ["s0001", "s0002"]
    assert {s["county"] for s in schools} == {f"c-{n:02d}" for n in range(1, 7)}
    assert all(ID_PATTERN.match(d["id"]) for d in devices)
    types = Counter(s["type"] for s in schools)
    assert 0.36 < types["kindergarten"] / 3000 < 0.44
    assert 0.31 < types["primary"] / 3000 < 0.39
    assert 0.21 < (types["secondary"] + types["high_school"]) / 3000 < 0.29
    assert 5 < types["university"] < 60
    upper = [s for s in schools if s["type"] in ("secondary", "high_school")]
    assert sum(s["has_dormitory"] for s in upper) > 0.6 * len(upper)
    assert sum(s["has_canteen"] for s in schools) > 0.8 * len(schools)


def test_every_school_has_its_required_devices_except_the_missing_share() -> None:
    schools, devices, short = generate(schools=400, share=0.05)
    assert len(short) == 20
    where = {(d["school"], d["kind"], d["location"]) for d in devices}
    for s in schools:
        required = {("button", "gatehouse"), ("camera", "gatehouse")}
        required |= {("button", "dormitory_duty_room")} if s["has_dormitory"] else set()
        required |= {("camera", "canteen")} if s["has_canteen"] else set()
        missing = {r for r in required if (s["id"], *r) not in where}
        assert len(missing) == (1 if s["id"] in short else 0), s


def test_school_devices() -> None:
    schools, devices, _ = generate(schools=200, share=0)
    by_school = {s["id"]: [d for d in devices if d["school"] == s["id"]] for s in schools}
    for s in schools:
        kinds = Counter(d["kind"] for d in by_school[s["id"]])
        perimeter = [d for d in by_school[s["id"]] if d["location"] == "perimeter"]
        assert 1 <= kinds["gate"] <= 3 and 2 <= len(perimeter) <= 6
    assert any(d["power"] == "battery" for d in devices if d["kind"] == "gate")
    assert all(d["linkage"] == "police" for d in devices if d["kind"] == "button")
    last = by_school[schools[-1]["id"]]  # the vendor school
    assert {d["id"][:4] for d in last if d["kind"] != "button"} == {"hik-", "kv-g"}


def test_chinese_numbers() -> None:
    assert [registry_gen.chinese_number(n) for n in (1, 10, 12, 20, 47, 100)] == [
        "一", "十", "十二", "二十", "四十七", "100"]  # fmt: skip


# --- the fleet plays a registry ------------------------------------------------------------------


@pytest.mark.parametrize("form", ["yaml", "csv", "folder"])
def test_the_fleet_reads_the_devices_of_a_registry_file(tmp_path: Path, form: str) -> None:
    schools, devices, _ = generate(schools=20)
    if form == "yaml":
        path = tmp_path / "r.yaml"
        path.write_text(registry_gen.dump_yaml(schools, devices), encoding="utf-8")
    else:
        registry_gen.write_csv(tmp_path, schools, devices)
        path = tmp_path / "devices.csv" if form == "csv" else tmp_path
    rows = registry_gen.read_devices(path)
    assert rows == [(d["school"], d["kind"], d["id"]) for d in devices]
    played = registry_gen.registry_fleet(rows, random.Random(1))
    assert [(d.school, d.kind, d.name) for d in played] == rows
    vendor = {d.name for d in played if d.vendor}
    assert vendor and all(n.startswith(("kv-g", "hik-c")) for n in vendor)


def test_registry_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "devices.csv"
    bad.write_text("school,kind,id\ns1,drone,d1\n")
    with pytest.raises(registry_gen.RegistryFileError, match="s1/drone/d1: unknown kind"):
        registry_gen.read_devices(bad)
    with pytest.raises(registry_gen.RegistryFileError, match=r"missing\.yaml"):
        registry_gen.read_devices(tmp_path / "missing.yaml")
    parser = argparse.ArgumentParser()
    fleet.build_parser(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--registry", str(bad)])
    assert "argument --registry: " in capsys.readouterr().err


async def test_fleet_with_registry_has_one_link_per_school(tmp_path: Path) -> None:
    schools, devices, _ = generate(schools=4)
    path = tmp_path / "r.yaml"
    path.write_text(registry_gen.dump_yaml(schools, devices), encoding="utf-8")
    parser = argparse.ArgumentParser()
    fleet.build_parser(parser)
    simulated = fleet.Fleet(parser.parse_args(["--registry", str(path), "--schools", "9"]))
    assert list(simulated.links) == [s["id"] for s in schools]
    assert [(d.school, d.kind, d.name) for d in simulated.devices] == [
        (d["school"], d["kind"], d["id"]) for d in devices]  # fmt: skip
    plain = fleet.Fleet(parser.parse_args(["--schools", "2"]))  # without: as before
    assert list(plain.links) == ["s1", "s2"] and len(plain.devices) == 16
