"""The gate and door sensor family: canonical JSON on event, status and availability."""

from __future__ import annotations

from drivers import canonical
from drivers.base import Driver
from gateway.models import Kind

DRIVER = Driver(
    name="gate",
    kind=Kind.GATE,
    description="Gate or door sensor, canonical JSON (docs/devices.md).",
    decode=canonical.decoder(Kind.GATE),
)
