"""The driver registry: built-in names, family defaults and plugins from entry points."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

import drivers
from drivers.base import Driver
from gateway.models import Availability, Kind

PLUGIN = Driver(
    name="acme_button",
    kind=Kind.BUTTON,
    description="Test plugin.",
    decode=lambda channel, payload: Availability(state="online"),
)
CLASHING = Driver(name="button", kind=Kind.BUTTON, description="Clash.", decode=PLUGIN.decode)
NOT_A_DRIVER = object()


def test_built_in_drivers() -> None:
    assert sorted(drivers.REGISTRY) == ["button", "camera", "gate", "gate_kv", "hik_camera"]
    for name, driver in drivers.REGISTRY.items():
        assert driver.name == name and driver.description


@pytest.mark.parametrize(
    ("name", "kind"),
    [("button", Kind.BUTTON), ("gate", Kind.GATE), ("camera", Kind.CAMERA),
     ("gate_kv", Kind.GATE), ("hik_camera", Kind.CAMERA)],
)  # fmt: skip
def test_get(name: str, kind: Kind) -> None:
    assert drivers.get(name).kind == kind


def test_get_unknown_lists_known_names() -> None:
    with pytest.raises(KeyError, match="unknown driver 'gate_xml'; known drivers: button, camera"):
        drivers.get("gate_xml")


@pytest.mark.parametrize("kind", list(Kind))
def test_default_for_is_the_canonical_family_driver(kind: Kind) -> None:
    assert drivers.default_for(kind).name == kind.value
    assert drivers.default_for(kind.value) is drivers.default_for(kind)  # type: ignore[arg-type]


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> list[EntryPoint]:
    """Entry points load_plugins sees; the registry is restored afterwards."""
    points: list[EntryPoint] = []

    def fake(*, group: str) -> list[EntryPoint]:
        assert group == "campusgw.drivers"
        return points

    monkeypatch.setattr(drivers, "entry_points", fake)
    monkeypatch.setattr(drivers, "REGISTRY", dict(drivers.REGISTRY))
    return points


def point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group="campusgw.drivers")


def test_plugin_is_added(entry_points: list[EntryPoint]) -> None:
    entry_points.append(point("acme", f"{__name__}:PLUGIN"))
    assert drivers.load_plugins() == ["acme_button"]
    assert drivers.get("acme_button") is PLUGIN
    assert drivers.load_plugins() == []  # loading twice is harmless


def test_no_plugins(entry_points: list[EntryPoint]) -> None:
    assert drivers.load_plugins() == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tests.unit.no_such_module:DRIVER", "'acme' .* failed to load: ModuleNotFoundError"),
        (f"{__name__}:MISSING", "'acme' .* failed to load: AttributeError"),
        (f"{__name__}:NOT_A_DRIVER", "'acme' .* is of type object, not drivers.Driver"),
        (f"{__name__}:CLASHING", "'acme' .*: driver name 'button' is already taken"),
    ],
)
def test_broken_plugin_names_the_entry_point(
    entry_points: list[EntryPoint], value: str, expected: str
) -> None:
    entry_points.append(point("acme", value))
    with pytest.raises(drivers.PluginError, match=expected):
        drivers.load_plugins()
    assert "button" in drivers.REGISTRY and drivers.get("button") is not CLASHING


def test_installed_plugins_load() -> None:
    # Whatever is installed in this environment must load cleanly (none, in a plain checkout).
    before = dict(drivers.REGISTRY)
    try:
        assert set(drivers.load_plugins()) == set(drivers.REGISTRY) - set(before)
    finally:
        drivers.REGISTRY.clear()
        drivers.REGISTRY.update(before)
