"""The one-click alarm button family: canonical JSON on event, status and availability."""

from __future__ import annotations

from drivers import canonical
from drivers.base import Driver
from gateway.models import Kind

DRIVER = Driver(
    name="button",
    kind=Kind.BUTTON,
    description="One-click alarm button, canonical JSON (docs/devices.md).",
    decode=canonical.decoder(Kind.BUTTON),
)
