"""Keep the garbage collector's full passes short, so they do not show up as alarm latency.

CPython's oldest-generation collection walks every tracked object. The gateway holds many that
live for the whole run (imported modules, FastAPI/pydantic schemas, the device registry), and a
full pass over them paused the event loop for 35 ms several times a minute under 10,000
telemetry messages/s (measured with gc.callbacks during bench/pipeline.py). Freezing the heap
once it is built moves those objects to the permanent generation, which collections skip; they
are still freed by reference counting when replaced (a registry reload), only cycles among them
would stay, and the registry and settings hold none.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import time

log = logging.getLogger(__name__)


def freeze_long_lived() -> None:
    """Call after start-up and after each registry load: everything alive now is long-lived."""
    gc.freeze()


class Trimmer:
    """Hands freed heap memory back to the system (glibc malloc_trim), at most every `every_s`.

    After a burst (100,000 retained `online` publications queued in paho, a registry reload)
    glibc keeps the freed memory mapped, so the resident size stays at the burst's peak; trimming
    releases it (bench/registry_scale.py: see docs/registry.md). The call releases the GIL and is
    meant for a worker thread. Without glibc (musl, macOS) it does nothing.
    """

    def __init__(self, every_s: float = 60.0) -> None:
        self._every_s = every_s
        self._last = float("-inf")
        self._trim = _malloc_trim()

    def maybe_trim(self) -> None:
        """Trim if the last trim is more than every_s ago."""
        now = time.monotonic()
        if self._trim is None or now - self._last < self._every_s:
            return
        self._last = now
        self._trim(0)


def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        log.debug("no malloc_trim in %s: memory is not trimmed", name)
        return None
