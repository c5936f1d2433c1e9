"""Camera drivers: canonical JSON decoding (driver.py) and video quality checks (quality.py)."""

from __future__ import annotations

from drivers.camera.driver import DRIVER

__all__ = ["DRIVER"]
