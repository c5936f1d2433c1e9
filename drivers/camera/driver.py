"""The camera family: canonical JSON on event, status and availability."""

from __future__ import annotations

from drivers import canonical
from drivers.base import Driver
from gateway.models import Kind

DRIVER = Driver(
    name="camera",
    kind=Kind.CAMERA,
    description="Camera or NVR channel, canonical JSON (docs/devices.md).",
    decode=canonical.decoder(Kind.CAMERA),
)
