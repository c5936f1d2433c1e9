"""The camera family: the canonical driver here; snapshot quality checks will sit beside it."""

from __future__ import annotations

from drivers.camera.driver import DRIVER

__all__ = ["DRIVER"]
