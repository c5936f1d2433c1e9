"""Registry store (SQLite; alone or beside the alarm store) and `campusgw registry ...`."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from gateway import cli, registry_io
from gateway.registry import Device, Location, School
from gateway.storage.registry_store import (
    RegistryStore,
    SchoolHasDevicesError,
    UnknownSchoolError,
)
from gateway.storage.sqlite import SqliteAlarmStore


def school(n: int, county: str = "c-01", **fields: object) -> School:
    return School.model_validate({"id": f"s{n:04d}", "name": f"第{n}小学", "prefecture": "p-01",
                                  "county": county, "type": "primary", **fields})  # fmt: skip


def device(n: int, kind: str = "gate", device_id: str = "g1", **fields: object) -> Device:
    return Device.model_validate({"school": f"s{n:04d}", "kind": kind, "id": device_id, **fields})


SCHOOLS = [school(1, has_dormitory=True, retention_days=90), school(2, "c-02", has_canteen=False)]
DEVICES = [
    device(1, "button", "b1", location=Location.GATEHOUSE, install_date=date(2024, 3, 1),
           linkage="police", name="门卫室一键报警"),
    device(1, power="battery"),
    device(2, "camera", "c1", zone="canteen", location=Location.CANTEEN),
]  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RegistryStore]:
    with RegistryStore(tmp_path / "var" / "gateway.db") as s:
        yield s


def contents(store: RegistryStore) -> tuple[list[School], list[Device]]:
    registry = store.load()
    return list(registry.schools.values()), registry.device_models()


# --- the store ---------------------------------------------------------------------------------


def test_empty_store(store: RegistryStore) -> None:
    registry = store.load()
    assert (registry.schools, registry.devices, registry.version) == ({}, {}, 0)
    assert store.version() == 0 and store.school_ids() == set()


def test_replace_and_load(store: RegistryStore) -> None:
    store.replace(SCHOOLS, DEVICES)
    registry = store.load()
    assert (list(registry.schools.values()), registry.device_models()) == (SCHOOLS, DEVICES)
    assert registry.version == store.version() == 1
    assert [d.id for d in registry.by_school["s0001"]] == ["b1", "g1"]
    assert "s0002/camera/c1" in registry


def test_replace_drops_what_the_new_registry_lacks(store: RegistryStore) -> None:
    store.replace(SCHOOLS, DEVICES)
    store.replace([school(3)], [device(3)])
    assert contents(store) == ([school(3)], [device(3)])
    assert store.version() == 2


def test_merge_adds_and_updates_and_keeps_the_rest(store: RegistryStore) -> None:
    store.replace(SCHOOLS, DEVICES)
    renamed, moved = school(2, "c-02", name="新名字"), device(1, zone="north")
    store.merge([renamed, school(3)], [moved, device(3), device(2, "camera", "c2")])
    schools, devices = contents(store)
    assert schools == [SCHOOLS[0], renamed, school(3)]  # updated in place, new ones last
    assert devices == [DEVICES[0], moved, DEVICES[2], device(3), device(2, "camera", "c2")]
    assert store.version() == 2


def test_devices_of_unknown_schools_are_refused_and_nothing_changes(store: RegistryStore) -> None:
    store.replace(SCHOOLS, DEVICES)
    with pytest.raises(UnknownSchoolError, match="devices name unknown schools: s0009"):
        store.merge([school(3)], [device(3), device(9)])
    with pytest.raises(UnknownSchoolError, match="s0001"):
        store.replace([school(3)], DEVICES)
    assert contents(store) == (SCHOOLS, DEVICES) and store.version() == 1


def test_upsert_and_delete(store: RegistryStore) -> None:
    store.replace(SCHOOLS, DEVICES)
    store.upsert_school(school(3))
    store.upsert_device(device(3))
    with pytest.raises(UnknownSchoolError):
        store.upsert_device(device(4))
    assert store.version() == 3
    assert store.delete_device("s0003", "gate", "g1") is True
    assert store.delete_device("s0003", "gate", "g1") is False
    assert store.delete_school("s0003") is True
    assert store.delete_school("s0003") is False
    assert store.version() == 5  # only the changes bumped it
    assert contents(store) == (SCHOOLS, DEVICES)


def test_a_school_with_devices_is_deleted_only_with_cascade(store: RegistryStore) -> None:
    store.replace(SCHOOLS, DEVICES)
    with pytest.raises(SchoolHasDevicesError, match="s0001 has 2 device"):
        store.delete_school("s0001")
    assert store.version() == 1
    assert store.delete_school("s0001", cascade=True) is True
    assert contents(store) == (SCHOOLS[1:], DEVICES[2:])


def test_the_registry_survives_reopening(tmp_path: Path) -> None:
    with RegistryStore(tmp_path / "g.db") as first:
        first.replace(SCHOOLS, DEVICES)
    with RegistryStore(tmp_path / "g.db") as again:
        assert contents(again) == (SCHOOLS, DEVICES) and again.version() == 1


async def test_shares_the_file_with_the_alarm_store(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    async with SqliteAlarmStore(path) as alarms:
        with RegistryStore(path) as registry:
            # The gateway calls the store from worker threads.
            await asyncio.to_thread(registry.replace, SCHOOLS, DEVICES)
            assert await asyncio.to_thread(registry.version) == 1
            assert (await alarms.counts()) is not None
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"alarms", "registry_schools", "registry_devices", "registry_meta"} <= tables
    assert db.execute("PRAGMA user_version").fetchone()[0] >= 2  # alarm migrations untouched
    db.close()


def test_import_of_100k_devices_is_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """5,000 schools, 100,000 devices: the figures are printed, not asserted."""
    schools = [school(n, f"c-{n % 6 + 1:02d}") for n in range(5000)]
    kinds = ("button", "camera", "camera", "camera", "gate")
    fields = {"install_date": date(2024, 3, 1), "location": Location.PERIMETER, "name": "周界"}
    devices = [device(n // 20, kinds[n % 5], f"d{n % 20}", **fields) for n in range(100_000)]
    folder = tmp_path / "csv"
    registry_io.write_csv(folder, schools, devices)
    with RegistryStore(tmp_path / "g.db") as store:
        started = time.perf_counter()
        store.replace(schools, devices)
        replaced = time.perf_counter()
        registry = store.load()
        loaded = time.perf_counter()
        assert len(registry.devices) == 100_000 and len(registry.schools) == 5000
    cli_started = time.perf_counter()
    assert cli.main(["registry", "import", str(folder), "--store", str(tmp_path / "g.db")]) == 0
    cli_s = time.perf_counter() - cli_started
    with capsys.disabled():
        print(f"\nregistry 5000 schools / 100000 devices: store.replace {replaced - started:.2f} s,"
              f" store.load {loaded - replaced:.2f} s, `campusgw registry import` of the CSVs "
              f"{cli_s:.2f} s: {capsys.readouterr().out.splitlines()[-1]}")  # fmt: skip


# --- campusgw registry -------------------------------------------------------------------------


def run(*argv: str) -> int:
    return cli.main(["registry", *argv])


def test_cli_import_show_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "registry.yaml"
    source.write_text(registry_io.dump_yaml(SCHOOLS, DEVICES), encoding="utf-8")
    db = str(tmp_path / "var" / "g.db")
    assert run("import", str(source), "--store", db) == 0
    assert "imported 2 schools, 3 devices into" in capsys.readouterr().out
    assert run("show", "--store", db) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "prefecture   county        schools   button   camera     gate",
        "p-01         c-01                1        1        0        1",
        "p-01         c-02                1        0        1        0",
        "total                            2        1        1        1",
    ]
    assert run("export", "--store", db) == 0
    assert capsys.readouterr().out == source.read_text(encoding="utf-8")
    assert run("export", "--store", db, "--out", str(tmp_path / "out")) == 0
    assert (tmp_path / "out").read_text(encoding="utf-8") == source.read_text(encoding="utf-8")
    assert run("export", "--store", db, "--format", "csv", "--out", str(tmp_path / "csv")) == 0
    assert registry_io.load([tmp_path / "csv"]) == (SCHOOLS, DEVICES)


def test_cli_import_with_problems_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "g.db"
    with RegistryStore(db) as store:
        store.replace(SCHOOLS, DEVICES)
    bad = tmp_path / "devices.csv"
    bad.write_text("school,kind,id\ns0001,gate,g2\ns0001,camra,c1\ns0009,gate,g1\n")
    assert run("import", str(bad), "--store", str(db), "--merge") == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{bad}:3: kind: Input should be 'button', 'camera' or 'gate' (got 'camra')",
        f"{bad}:4: school: unknown school 's0009': not in the files nor in the registry",
        "2 problem(s): nothing imported",
    ]
    with RegistryStore(db) as store:
        assert contents(store) == (SCHOOLS, DEVICES) and store.version() == 1


def test_cli_merge_and_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "g.db"
    with RegistryStore(db) as store:
        store.replace(SCHOOLS, DEVICES)
    more = tmp_path / "devices.csv"
    more.write_text("school,kind,id\ns0001,gate,g2\n")
    assert run("import", str(more), "--store", str(db)) == 1  # replace: s0001 is not in the file
    assert run("import", str(more), "--store", str(db), "--merge", "--dry-run") == 0
    assert "valid: 0 schools, 1 devices" in capsys.readouterr().out
    with RegistryStore(db) as store:
        assert store.version() == 1
    assert run("import", str(more), "--store", str(db), "--merge") == 0
    with RegistryStore(db) as store:
        assert len(store.load().devices) == 4 and store.version() == 2
    assert run("import", str(more), "--store", str(tmp_path / "new.db"), "--dry-run") == 1
    assert not (tmp_path / "new.db").exists()


def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("show", "--store", str(tmp_path / "none.db")) == 2
    assert "store.registry_path: " in capsys.readouterr().err
    with RegistryStore(tmp_path / "g.db"):
        pass
    assert run("export", "--store", str(tmp_path / "g.db"), "--format", "csv") == 2
    assert "needs --out FOLDER" in capsys.readouterr().err


def test_cli_uses_the_configured_registry_path(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(f'[store]\nregistry_path = "{tmp_path / "from-config.db"}"\n')
    source = tmp_path / "r.yaml"
    source.write_text(registry_io.dump_yaml([school(1)], []), encoding="utf-8")
    assert run("import", str(source), "--config", str(config)) == 0
    assert (tmp_path / "from-config.db").exists()
