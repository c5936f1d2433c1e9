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

import gc


def freeze_long_lived() -> None:
    """Call after start-up and after each registry load: everything alive now is long-lived."""
    gc.freeze()
