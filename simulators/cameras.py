"""Cameras sending snapshots (`campusgw simulate cameras`): JPEG frames over MQTT and HTTP, faults.

Each camera renders a frame of its scene (simulators/camera_scenes.py: the gate, perimeter,
corridor or canteen kitchen, lit by the local clock) every --interval seconds and publishes the
JPEG bytes with QoS 1 on `campus/{school}/camera/{device}/snapshot`; every --status-interval it
publishes a canonical camera status (docs/devices.md, CameraStatus) on `.../status`. Frames are
only rendered at the snapshot rate, in a thread (--workers at a time). A snapshot is skipped, not
queued, while the school's broker connection is down or MAX_UNACKED messages wait for a PUBACK:
a camera does not store its snapshots (status messages are kept and sent later, as the fleet's).
Availability is left to the fleet simulator and the gateway's silence timeout.

With --http-port, GET /cameras/{school}/{device}.jpg serves each camera's latest snapshot and the
fault control API is served there (and on --control-port, if given):
    GET /faults                       the active faults
    POST /faults {"camera": "s1/c1", "fault": "blur", "for_s": 60, "strength": 1.0}
                                      inject; for_s and strength optional (until cleared, 1.0)
    DELETE /faults/{school}/{device}  clear the camera's injected and current scheduled faults
--schedule "s1/c1:30-90=blur,s1/c2:10-20=cover@0.5" injects faults by seconds since the start.
With --rtsp-port, rtsp://HOST:PORT/{school}/{device} streams each camera live as Motion-JPEG over
RTP, interleaved in the RTSP connection (simulators/rtsp.py), --rtsp-fps frames a second with
the same faults, rendered only while someone plays it.
Faults are those of camera_scenes.FAULTS ("freeze" sends the last snapshot again, byte for byte;
"drop" skips snapshots) and "stop": the camera sends nothing at all, snapshots or status.

Cameras are c1..cN of --schools schools, or the cameras of a --registry file (their `location`
picks the scene). Cameras share at most 4 backgrounds per kind (memory: 6 MB each at 1080p), each
with its own timeline, label and noise. The status payloads count `seq` per camera like the fleet's;
run this for cameras the fleet does not simulate, or with --status-interval 0.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import re
import signal
import sys
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from aiohttp import web

from simulators.camera_control import (
    SIM_FAULTS,
    Control,
    Fault,
    FaultBoard,
    make_app,
    parse_schedule,
)
from simulators.camera_scenes import Scene, apply_fault, encode_jpeg
from simulators.devices import Device
from simulators.fleet import SchoolLink
from simulators.registry_gen import RegistryFileError, read_devices
from simulators.rtsp import CameraFeed, RtspServer

MAX_UNACKED = 20  # messages waiting for a PUBACK per school, beyond which snapshots are skipped
LOCATIONS = {"gatehouse": "gate", "entrance": "gate", "perimeter": "perimeter",
             "corridor": "corridor", "canteen": "canteen"}  # fmt: skip
CYCLE = ("gate", "perimeter", "corridor", "canteen")  # scene by camera number, without a location


# --- the cameras ----------------------------------------------------------------------------------

Row = tuple[str, str, str]  # school, camera id, location ("" when unknown)


@dataclass(eq=False)
class Camera:
    """One simulated camera: its device (for status and seq), scene and latest snapshot."""

    device: Device
    scene: Scene
    offset: float  # its own timeline on a shared scene
    variant: int  # which side a cover takes, which way a pan goes ...
    rng: np.random.Generator
    jpeg: bytes = b""
    taken: float = 0.0  # time.time() of the latest snapshot

    @property
    def key(self) -> str:
        return f"{self.device.school}/{self.device.name}"


def make_cameras(rows: list[Row], width: int, height: int, seed: int) -> list[Camera]:
    """The cameras of the rows; scenes by location (else by camera number), at most 4 a kind."""
    scenes: dict[tuple[str, int], Scene] = {}
    cameras = []
    for school, name, location in rows:
        crc = zlib.crc32(f"{seed}/{school}/{name}".encode())
        number = int(re.sub(r"\D", "", name) or 1) - 1
        kind = LOCATIONS.get(location) or CYCLE[number % len(CYCLE)]
        key = (kind, crc % 4)
        if key not in scenes:
            scenes[key] = Scene(seed * 4 + key[1], width, height, kind)
        device = Device(school, "camera", name)
        rng = np.random.default_rng(crc)
        cameras.append(Camera(device, scenes[key], crc % 3600, crc % 4, rng))
    return cameras


def registry_cameras(text: str) -> list[Row]:
    """The argparse type of --registry: the cameras of a registry file, with their location."""
    path = Path(text)
    try:
        rows = read_devices(path)
    except RegistryFileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    path = path / "devices.csv" if path.is_dir() else path
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            records: Any = list(csv.DictReader(f))
    else:  # read_devices has checked the file
        loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
        records = (yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {})["devices"]
    where = {(r["school"].strip(), r["id"].strip()): (r.get("location") or "") for r in records}
    cameras = [(s, d, where.get((s, d), "").strip()) for s, kind, d in rows if kind == "camera"]
    if not cameras:
        raise argparse.ArgumentTypeError(f"{path}: no cameras in the registry")
    return cameras


class CameraSim:
    """The cameras, their MQTT links (none with --port 0), faults and what they sent."""

    def __init__(self, args: argparse.Namespace, cameras: list[Camera], board: FaultBoard) -> None:
        self.args, self.cameras, self.board = args, cameras, board
        self.by_key = {camera.key: camera for camera in cameras}
        self.links: dict[str, SchoolLink] = {}
        self.stats: Counter[str] = Counter()
        self.started = time.monotonic()
        self.workers = asyncio.Semaphore(args.workers)
        self.prng = random.Random(args.seed)  # status values and phases
        self.utc_offset = time.localtime().tm_gmtoff  # scenes are lit by local time

    def attach(self) -> None:
        """One MQTT connection per school (none with --port 0); call it in the event loop."""
        schools = dict.fromkeys(camera.device.school for camera in self.cameras)
        args = self.args
        self.links = {s: SchoolLink(s, args.host, args.port, 1) for s in schools if args.port}

    def elapsed(self) -> float:
        """Seconds since the start: the clock of schedules and faults."""
        return time.monotonic() - self.started

    def fault(self, camera: Camera) -> Fault | None:
        return self.board.active(camera.key, self.elapsed())

    def render(self, camera: Camera, fault: Fault | None, now: float) -> bytes:
        """A JPEG of the camera's view at wall time now, with its fault (runs in a thread)."""
        frame = camera.scene.frame(now + self.utc_offset, self.args.light, label=camera.key,
                                   offset=camera.offset)  # fmt: skip
        if fault is not None:
            faulty = apply_fault(frame, fault.fault, fault.strength, camera.rng,
                                 variant=camera.variant)  # fmt: skip
            frame = frame if faulty is None else faulty
        return encode_jpeg(frame, self.args.jpeg_quality)

    def _send(self, camera: Camera, channel: str, payload: bytes) -> bool:
        """Publish if the school's link has room; False when the message was skipped."""
        link = self.links.get(camera.device.school)
        if link is None:
            return True  # --port 0: HTTP only
        if channel == "snapshot" and (
            not link.connected.is_set() or link.published - link.acked >= MAX_UNACKED
        ):
            return False
        link.publish(camera.device.topic(channel, self.args.topic_root), payload)
        return True

    async def snapshot(self, camera: Camera) -> None:
        """Take, and send, the camera's next snapshot, as its fault allows."""
        fault = self.fault(camera)
        name = None if fault is None else fault.fault
        if name in ("stop", "drop"):
            self.stats["stopped" if name == "stop" else "dropped"] += 1
            return
        if name == "freeze" and camera.jpeg:
            self.stats["frozen"] += 1
        else:
            async with self.workers:
                camera.jpeg = await asyncio.to_thread(self.render, camera, fault, time.time())
        camera.taken = time.time()
        if self._send(camera, "snapshot", camera.jpeg):
            self.stats["snapshots"] += 1
            self.stats["bytes"] += len(camera.jpeg)
        else:
            self.stats["skipped"] += 1

    async def status(self, camera: Camera) -> None:
        """Send the camera's status, unless it is stopped."""
        fault = self.fault(camera)
        if fault is None or fault.fault != "stop":
            self._send(camera, "status", camera.device.status(self.prng, datetime.now(UTC)))
            self.stats["status"] += 1

    async def every(
        self, interval: float, action: Callable[[Camera], Awaitable[None]], camera: Camera
    ) -> None:
        """Run action(camera) every interval seconds from a random phase, skipping missed turns."""
        due = time.monotonic() + self.prng.uniform(0, interval)
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await action(camera)
            due = max(due + interval, time.monotonic())

    def progress(self) -> str:
        published = sum(link.published for link in self.links.values())
        acked = sum(link.acked for link in self.links.values())
        s = self.stats
        return (f"{time.strftime('%H:%M:%S')} snapshots={s['snapshots']} "
                f"({s['bytes'] / 2**20:.1f} MiB) status={s['status']} acked={acked}/{published} "
                f"faults={len(self.board.listing(self.elapsed()))}")  # fmt: skip

    def latest(self, key: str) -> tuple[bytes, float]:
        """The camera's latest snapshot and when it was taken (for the HTTP API)."""
        camera = self.by_key[key]
        return camera.jpeg, camera.taken


# --- command line ---------------------------------------------------------------------------------


def _schedule(text: str) -> Any:
    try:
        return parse_schedule(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


_OPTIONS: list[tuple[str, Callable[[str], Any], Any, str]] = [
    ("--host", str, "127.0.0.1", "MQTT broker host"),
    ("--port", int, 1883, "MQTT broker port; 0 = no MQTT (HTTP only)"),
    ("--topic-root", str, "campus", "first topic level"),
    ("--schools", int, 3, "number of schools"),
    ("--school-prefix", str, "s", "school ids are PREFIX1..PREFIXn"),
    ("--cameras", int, 4, "cameras per school (c1 at the gate, then perimeter, corridor, canteen)"),
    ("--registry", registry_cameras, None, "the cameras of a registry file, not --schools.."),
    ("--interval", _positive, 10.0, "seconds between two snapshots of one camera"),
    ("--status-interval", float, 10.0, "seconds between two status messages; 0 = none"),
    ("--width", int, 1920, "frame width"),
    ("--height", int, 1080, "frame height"),
    ("--jpeg-quality", int, 85, "JPEG quality 1-100"),
    ("--light", float, None, "0 (night, infrared) .. 1 (day) instead of the local clock's light"),
    ("--http-host", str, "127.0.0.1", "address of the HTTP and RTSP servers"),
    ("--http-port", int, 0, "serve snapshots and the fault API on this port; 0 = off"),
    ("--control-port", int, 0, "also serve the fault API (and snapshots) on this port; 0 = off"),
    ("--rtsp-port", int, 0, "stream rtsp://HOST:PORT/SCHOOL/DEVICE (Motion-JPEG, TCP); 0 = off"),
    ("--rtsp-fps", _positive, 5.0, "frames per second of each RTSP stream being played"),
    ("--schedule", _schedule, None, "faults by time, e.g. s1/c1:30-90=blur,s1/c2:60-120=cover@0.5"),
    ("--workers", int, 2, "frames rendered at the same time (threads)"),
    ("--seed", int, 1, "random seed: scenes, phases and values"),
    ("--duration", float, 0.0, "stop after this many seconds; 0 = until Ctrl-C or SIGTERM"),
    ("--drain-timeout", float, 10.0, "seconds to wait on exit for outstanding PUBACKs"),
    ("--progress", float, 10.0, "seconds between progress lines; 0 = none"),
]


def build_parser(p: argparse.ArgumentParser) -> None:
    """Add the camera simulator's options to p."""
    p.description = ("Simulate cameras sending JPEG snapshots (MQTT, HTTP) and RTSP streams with "
                     "injectable video faults: " + ", ".join(SIM_FAULTS) + ".")  # fmt: skip
    p.epilog = ("With --rtsp-port, rtsp://HOST:PORT/SCHOOL/DEVICE streams each camera as "
                "Motion-JPEG over RTP (RFC 2435) interleaved in the RTSP connection: a SETUP for "
                "UDP is answered 461 and FFmpeg (cv2.VideoCapture) asks again for TCP. Streams "
                "carry the same faults (freeze repeats the last streamed frame, drop sends "
                "nothing, stop closes them) and are rendered only while played. Faults: POST "
                "/faults on --http-port or --control-port. See docs/video-quality.md.")  # fmt: skip
    for flag, kind, default, text in _OPTIONS:
        p.add_argument(flag, type=kind, default=default, help=f"{text} (default: %(default)s)")


def _rows(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    if args.registry is not None:
        return list(args.registry)
    return [(f"{args.school_prefix}{i}", f"c{n}", "")
            for i in range(1, args.schools + 1) for n in range(1, args.cameras + 1)]  # fmt: skip


async def _serve(sim: CameraSim) -> web.AppRunner | None:
    ports = dict.fromkeys(p for p in (sim.args.http_port, sim.args.control_port) if p)
    if not ports:
        return None
    control = Control(sim.board, sim.elapsed, sim.latest)
    runner = web.AppRunner(make_app(control), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    for port in ports:
        try:
            await web.TCPSite(runner, sim.args.http_host, port).start()
        except OSError as exc:
            await runner.cleanup()
            where = f"{sim.args.http_host}:{port}"
            raise SystemExit(f"cameras: cannot serve HTTP on {where}: {exc}") from None
        print(f"http://{sim.args.http_host}:{port}/cameras/{{school}}/{{device}}.jpg "
              f"and /faults", flush=True)  # fmt: skip
    return runner


async def _serve_rtsp(sim: CameraSim) -> RtspServer | None:
    host, port = sim.args.http_host, sim.args.rtsp_port
    if not port:
        return None
    try:
        server = await RtspServer(CameraFeed(sim), sim.args.rtsp_fps).start(host, port)
    except OSError as exc:
        raise SystemExit(f"cameras: cannot serve RTSP on {host}:{port}: {exc}") from None
    print(f"rtsp://{host}:{port}/{{school}}/{{device}}", flush=True)
    return server


async def _connected(sim: CameraSim, stop: asyncio.Event) -> bool:
    """Wait until every school is connected (True) or stop is set first (False)."""

    async def everyone() -> None:
        for link in sim.links.values():
            await link.connected.wait()

    waits = [asyncio.create_task(everyone()), asyncio.create_task(stop.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()
    return not stop.is_set()


async def _report(sim: CameraSim, every: float) -> None:
    while every > 0:
        await asyncio.sleep(every)
        print(sim.progress(), flush=True)


def _loops(sim: CameraSim) -> list[asyncio.Task[None]]:
    tasks = []
    for camera in sim.cameras:
        tasks.append(asyncio.create_task(sim.every(sim.args.interval, sim.snapshot, camera)))
        if sim.args.status_interval > 0:
            every = sim.every(sim.args.status_interval, sim.status, camera)
            tasks.append(asyncio.create_task(every))
    return tasks


async def _main(sim: CameraSim) -> int:
    loop, stop = asyncio.get_running_loop(), asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if sim.args.duration > 0:
        loop.call_later(sim.args.duration, stop.set)
    sim.attach()
    links = sim.links.values()
    tasks = [asyncio.create_task(c()) for k in links for c in (k.keep_connected, k.housekeeping)]
    tasks.append(asyncio.create_task(_report(sim, sim.args.progress)))
    runner = rtsp = None
    try:
        runner = await _serve(sim)
        rtsp = await _serve_rtsp(sim)
        if not await _connected(sim, stop):
            print("cameras: stopped before every school reached the broker", flush=True)
            return 1
        loops = _loops(sim)
        tasks += loops
        await stop.wait()
        for task in loops:
            task.cancel()
        await asyncio.gather(*(link.close(sim.args.drain_timeout) for link in links))
    finally:
        for task in tasks:
            task.cancel()
        if runner is not None:
            await runner.cleanup()
        if rtsp is not None:
            await rtsp.close()
            sim.stats.update({f"rtsp_{k}": v for k, v in rtsp.stats.items()})
    return _summary(sim)


def _summary(sim: CameraSim) -> int:
    s, published = sim.stats, sum(link.published for link in sim.links.values())
    unacked = published - sum(link.acked for link in sim.links.values())
    schools = len({camera.device.school for camera in sim.cameras})
    print(f"cameras: {len(sim.cameras)} in {schools} schools, {sim.elapsed():.1f} s\n"
          f"snapshots: {s['snapshots']} ({s['bytes'] / 2**20:.1f} MiB) frozen={s['frozen']} "
          f"dropped={s['dropped']} stopped={s['stopped']} skipped={s['skipped']}; "
          f"status: {s['status']}", flush=True)  # fmt: skip
    if sim.args.rtsp_port:
        print(f"rtsp: {s['rtsp_sessions']} sessions, {s['rtsp_frames']} frames sent, "
              f"{s['rtsp_skipped']} skipped (slow clients)", flush=True)  # fmt: skip
    print(f"unacknowledged: {unacked}" if unacked else "every message acknowledged", flush=True)
    return int(unacked > 0)


def run(args: argparse.Namespace) -> int:
    """Run the cameras until --duration, Ctrl-C or SIGTERM; exit 2 on a bad --schedule."""
    cv2.setNumThreads(1)  # modest CPU: one core per render worker at most
    try:
        cameras = make_cameras(_rows(args), args.width, args.height, args.seed)
        board = FaultBoard({camera.key for camera in cameras}, args.schedule or ())
    except ValueError as exc:
        print(f"campusgw simulate cameras: {exc}", file=sys.stderr)
        return 2
    print(f"cameras: {len(cameras)}, a {args.width}x{args.height} snapshot each every "
          f"{args.interval:g} s" + (f" to mqtt {args.host}:{args.port}" if args.port else ""),
          flush=True)  # fmt: skip
    return asyncio.run(_main(CameraSim(args, cameras, board)))
