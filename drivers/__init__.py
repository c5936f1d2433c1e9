"""The driver registry: built-in drivers by name, each family's default, and plugin drivers.

Config routes a device to a driver by name (`[[drivers.routes]]`); a device no route matches uses
its family's canonical driver. Third-party packages add drivers through the entry-point group
`campusgw.drivers`, each entry point naming a Driver instance (docs/devices.md, "How to add a
driver").
"""

from __future__ import annotations

from importlib.metadata import entry_points

from drivers import alarm_button, camera, gate_kv, gate_sensor, hik_camera
from drivers.base import DecodeError, Driver
from gateway.models import Kind

__all__ = [
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "DecodeError",
    "Driver",
    "PluginError",
    "default_for",
    "get",
    "load_plugins",
]

ENTRY_POINT_GROUP = "campusgw.drivers"

REGISTRY: dict[str, Driver] = {
    driver.name: driver
    for driver in (
        alarm_button.DRIVER,
        gate_sensor.DRIVER,
        camera.DRIVER,
        gate_kv.DRIVER,
        hik_camera.DRIVER,
    )
}

_DEFAULTS: dict[Kind, Driver] = {
    Kind.BUTTON: alarm_button.DRIVER,
    Kind.GATE: gate_sensor.DRIVER,
    Kind.CAMERA: camera.DRIVER,
}


class PluginError(RuntimeError):
    """A driver plugin could not be loaded; the message names the entry point."""


def get(name: str) -> Driver:
    """The driver called `name`; KeyError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"unknown driver {name!r}; known drivers: {known}") from None


def default_for(kind: Kind) -> Driver:
    """The family's canonical-JSON driver, used when no route names another."""
    return _DEFAULTS[Kind(kind)]


def load_plugins() -> list[str]:
    """Add the drivers of the `campusgw.drivers` entry points to REGISTRY; return the new names.

    Loading twice is harmless. A plugin that fails to import, is not a Driver, or takes a name
    another driver already has raises PluginError naming the entry point, so start-up stops
    instead of devices silently falling back to the wrong decoder.
    """
    added: list[str] = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {point.name!r} ({point.value}) in group {ENTRY_POINT_GROUP}"
        try:
            driver = point.load()
        except Exception as exc:
            raise PluginError(f"{where} failed to load: {type(exc).__name__}: {exc}") from exc
        if not isinstance(driver, Driver):
            raise PluginError(f"{where} is of type {type(driver).__qualname__}, not drivers.Driver")
        known = REGISTRY.get(driver.name)
        if known is driver:
            continue
        if known is not None:
            raise PluginError(f"{where}: driver name {driver.name!r} is already taken")
        REGISTRY[driver.name] = driver
        added.append(driver.name)
    return added
