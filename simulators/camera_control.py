"""Faults of the camera simulator: the --schedule, the board of active faults and the HTTP API.

Part of `campusgw simulate cameras` (simulators/cameras.py, which documents the API). Clocks
are seconds since the simulator started; the board and the app take them as arguments, so tests
need no sleeping.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import orjson
from aiohttp import web

from simulators.camera_scenes import FAULTS

SIM_FAULTS = (*FAULTS, "stop")  # stop: the camera sends nothing, snapshots or status
_ITEM = re.compile(r"([\w.-]{1,64}/[\w.-]{1,64}):(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)=([a-z_]+)"
                   r"(?:@(\d+(?:\.\d+)?))?", re.ASCII)  # fmt: skip


@dataclass(frozen=True)
class Window:
    """`fault` on `camera` from `start` (included) to `end` (excluded) seconds after the start."""

    camera: str
    start: float
    end: float
    fault: str
    strength: float = 1.0


def parse_schedule(spec: str) -> tuple[Window, ...]:
    """Windows from `s1/c1:30-90=blur,s1/c2:0-10=cover@0.5`; ValueError saying what is wrong."""
    windows = []
    for item in (i.strip() for i in spec.split(",") if i.strip()):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"{item!r} is not SCHOOL/CAMERA:START-END=FAULT[@STRENGTH], "
                             "such as s1/c1:30-90=blur")  # fmt: skip
        camera, start, end, fault, strength = match.groups()
        window = Window(camera, float(start), float(end), fault, float(strength or 1.0))
        if fault not in SIM_FAULTS:
            raise ValueError(f"{item!r}: fault {fault!r} is not one of {', '.join(SIM_FAULTS)}")
        if window.end <= window.start:
            raise ValueError(f"{item!r}: the window ends before it starts")
        windows.append(window)
    ordered = sorted(windows, key=lambda w: (w.camera, w.start))
    for before, after in itertools.pairwise(ordered):
        if before.camera == after.camera and after.start < before.end:
            raise ValueError(f"{before.camera}: windows at {before.start:g} and "
                             f"{after.start:g} s overlap")  # fmt: skip
    return tuple(ordered)


@dataclass(frozen=True)
class Fault:
    """A fault on a camera from `since` until `until` (None: until cleared), seconds from start."""

    camera: str
    fault: str
    strength: float
    since: float
    until: float | None
    source: str  # "api" or "schedule"

    def as_json(self) -> dict[str, Any]:
        return {"camera": self.camera, "fault": self.fault, "strength": self.strength,
                "since_s": self.since, "until_s": self.until, "source": self.source}  # fmt: skip


class FaultBoard:
    """Which fault each camera has now: one injected over the API, else a scheduled window."""

    def __init__(self, cameras: set[str], schedule: tuple[Window, ...] = ()) -> None:
        unknown = sorted({w.camera for w in schedule} - cameras)
        if unknown:
            raise ValueError(f"--schedule names cameras that are not simulated: {unknown}")
        self.cameras, self.schedule = cameras, schedule
        self.injected: dict[str, Fault] = {}
        self.cleared: set[Window] = set()

    def inject(
        self, camera: str, fault: str, for_s: float | None, strength: float, now: float
    ) -> Fault:
        """Put a fault on a camera, replacing an injected one; KeyError, ValueError if invalid."""
        if camera not in self.cameras:
            raise KeyError(camera)
        if fault not in SIM_FAULTS:
            raise ValueError(f"fault {fault!r} is not one of {', '.join(SIM_FAULTS)}")
        if for_s is not None and not 0 < for_s < 1e9:
            raise ValueError(f"for_s must be a number of seconds > 0, not {for_s!r}")
        if not 0 <= strength <= 10:
            raise ValueError(f"strength must be between 0 and 10, not {strength!r}")
        until = None if for_s is None else now + for_s
        self.injected[camera] = Fault(camera, fault, strength, now, until, "api")
        return self.injected[camera]

    def clear(self, camera: str, now: float) -> int:
        """Remove the camera's injected fault and end its current scheduled one; how many."""
        if camera not in self.cameras:
            raise KeyError(camera)
        injected = self.injected.pop(camera, None)
        gone = int(injected is not None and (injected.until is None or now < injected.until))
        for window in self._windows(camera, now):
            self.cleared.add(window)
            gone += 1
        return gone

    def _windows(self, camera: str, now: float) -> list[Window]:
        return [
            w
            for w in self.schedule
            if w.camera == camera and w.start <= now < w.end and w not in self.cleared
        ]

    def active(self, camera: str, now: float) -> Fault | None:
        """The camera's fault at `now` seconds after the start, or None."""
        fault = self.injected.get(camera)
        if fault is not None and (fault.until is None or now < fault.until):
            return fault
        for w in self._windows(camera, now):
            return Fault(camera, w.fault, w.strength, w.start, w.end, "schedule")
        return None

    def listing(self, now: float) -> list[dict[str, Any]]:
        """The active faults, camera by camera."""
        found = (self.active(camera, now) for camera in sorted(self.cameras))
        return [fault.as_json() for fault in found if fault is not None]


# --- the HTTP API ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Control:
    """What the HTTP API serves: the fault board, the clock, and each camera's latest snapshot."""

    board: FaultBoard
    clock: Callable[[], float]  # seconds since the start
    latest: Callable[[str], tuple[bytes, float]]  # camera: JPEG (b"" if none yet), time.time()


CONTROL = web.AppKey("control", Control)
_BODY = {"camera", "fault", "for_s", "strength"}


def make_app(control: Control) -> web.Application:
    """The snapshot and fault API (see simulators/cameras.py)."""
    app = web.Application()
    app[CONTROL] = control
    app.router.add_get("/cameras/{school}/{file}", _snapshot)
    app.router.add_get("/faults", _list)
    app.router.add_post("/faults", _inject)
    app.router.add_delete("/faults/{school}/{device}", _clear)
    return app


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _error(status: int, text: str) -> web.Response:
    return _json({"ok": False, "error": text}, status)


async def _snapshot(request: web.Request) -> web.Response:
    control, file = request.app[CONTROL], request.match_info["file"]
    camera = f"{request.match_info['school']}/{file.removesuffix('.jpg')}"
    if not file.endswith(".jpg") or camera not in control.board.cameras:
        return _error(404, f"no camera {camera!r}")
    fault = control.board.active(camera, control.clock())
    if fault is not None and fault.fault in ("stop", "drop"):
        return _error(503, f"{camera} sends no frame (fault {fault.fault})")
    jpeg, taken = control.latest(camera)
    if not jpeg:
        return _error(503, f"{camera} has no snapshot yet")
    headers = {"Last-Modified": formatdate(taken, usegmt=True), "Cache-Control": "no-store"}
    return web.Response(body=jpeg, content_type="image/jpeg", headers=headers)


async def _list(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    now = control.clock()
    return _json({"elapsed_s": round(now, 3), "faults": control.board.listing(now)})


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float):
        raise ValueError(f"{name} must be a number, not {value!r}")
    return float(value)


async def _inject(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _error(400, "the body is not JSON")
    if not isinstance(body, dict) or not {"camera", "fault"} <= body.keys() <= _BODY:
        return _error(400, 'the body must be {"camera": "s1/c1", "fault": "blur"} with '
                      'optional "for_s" and "strength"')  # fmt: skip
    try:
        for_s, strength = (
            _number(body.get("for_s"), "for_s"),
            _number(body.get("strength"), "strength"),
        )
        camera, name = str(body["camera"]), str(body["fault"])
        strength = 1.0 if strength is None else strength
        fault = control.board.inject(camera, name, for_s, strength, control.clock())
    except KeyError:
        return _error(404, f"no camera {body['camera']!r}")
    except ValueError as exc:
        return _error(400, str(exc))
    return _json({"ok": True, "fault": fault.as_json()})


async def _clear(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    camera = f"{request.match_info['school']}/{request.match_info['device']}"
    try:
        cleared = control.board.clear(camera, control.clock())
    except KeyError:
        return _error(404, f"no camera {camera!r}")
    return _json({"ok": True, "cleared": cleared})
