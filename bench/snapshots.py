"""Paced camera snapshots: 1080p JPEGs from several cameras at a fixed total rate, QoS 0.

Run by bench/pipeline.py as a child process (like bench/load.py), so that its publishing shares
neither a GIL nor a clock with the bench's press publisher. The JPEGs are read from --frames,
where `render` (called by the bench before it starts this) left `c<camera>-<i>.jpg`: a few
distinct frames per camera, which each camera cycles through. Every 10 ms tick it publishes
what is due by then (rate x elapsed time), round-robin over the cameras and its clients, on
`campus/<school>/camera/c<camera>/snapshot`. It writes one JSON result to --out.

    python bench/snapshots.py --port 1883 --frames DIR --rate 400 --duration 20 --out s.json
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
from harness import Publisher
from load import TICK_S, service

NOON = 12 * 3600.0
LIGHTS = (1.0, 0.3, 0.05)  # day, dusk, infrared night: a camera keeps its light
FRAME_GAP_S = 2.0  # scene time between a camera's frames: people and cars visibly move
DRAIN_S = 5.0  # after the last publish, how long paho may take to write what it queued


@dataclass
class SnapshotResult:
    """What the generator did; rates are snapshots per second over `elapsed_s`."""

    rate_target: float
    duration_s: float
    cameras: int
    frames_per_camera: int
    jpeg_kb_mean: float
    published: int = 0
    errors: int = 0
    started_at: float = 0.0  # time.time() of the first tick
    ended_at: float = 0.0  # time.time() after the last publish
    elapsed_s: float = 0.0
    achieved_s: float = 0.0
    late_ticks: int = 0  # ticks that began more than one tick late
    max_behind_ms: float = 0.0  # the most the schedule was behind at a tick's start
    cpu_s: float = 0.0  # this process's CPU time while publishing
    unsent: int = 0  # clients still holding unwritten snapshots DRAIN_S after the last publish


def render(folder: Path, cameras: int, frames: int, quality: int = 70) -> float:
    """Write `frames` 1080p JPEGs per camera to folder (once: kept ones are reused);
    their mean size in KB. Camera c shows scene kind c mod 4 under light c mod 3."""
    from simulators.camera_scenes import KINDS, Scene, encode_jpeg

    folder.mkdir(parents=True, exist_ok=True)
    scenes: dict[str, Scene] = {}
    for c in range(cameras):
        kind = KINDS[c % len(KINDS)]
        for i in range(frames):
            path = folder / f"c{c + 1}-{i}.jpg"
            if path.exists():
                continue
            scene = scenes.get(kind) or scenes.setdefault(kind, Scene(c, kind=kind))
            t = NOON + i * FRAME_GAP_S
            image = scene.frame(t, LIGHTS[c % len(LIGHTS)], label=f"c{c + 1}", offset=c * 37.0)
            path.write_bytes(encode_jpeg(image, quality))
    sizes = [p.stat().st_size for p in folder.glob("c*-*.jpg")]
    return sum(sizes) / len(sizes) / 1024


def load_frames(folder: Path) -> list[tuple[str, list[bytes]]]:
    """(device, its JPEGs in order) per camera found in folder."""
    by_camera: dict[str, list[tuple[int, bytes]]] = {}
    for path in folder.glob("c*-*.jpg"):
        device, index = path.stem.split("-")
        by_camera.setdefault(device, []).append((int(index), path.read_bytes()))
    return [(d, [b for _, b in sorted(f)]) for d, f in sorted(by_camera.items())]


def schedule(school: str, cameras: list[tuple[str, list[bytes]]]) -> Iterator[tuple[str, bytes]]:
    """(topic, jpeg) forever: one snapshot per camera in turn, each cycling its own frames."""
    rounds = max(len(frames) for _, frames in cameras)
    order = [
        (f"campus/{school}/camera/{device}/snapshot", frames[i % len(frames)])
        for i in range(rounds)
        for device, frames in cameras
    ]
    return itertools.cycle(order)


def run(pubs: list[Publisher], plan: Iterator[tuple[str, bytes]], result: SnapshotResult) -> None:
    """Publish on schedule for the duration, then until paho has written everything out
    (QoS 0 has no acknowledgement: written to the socket is as far as it can be followed)."""
    start, cpu0 = time.perf_counter(), time.process_time()
    result.started_at = time.time()
    tick, sent, total = 0, 0, int(result.rate_target * result.duration_s)
    clients = itertools.cycle(pubs)
    while sent < total:
        elapsed = time.perf_counter() - start
        behind = elapsed - tick * TICK_S
        result.late_ticks += behind > TICK_S
        result.max_behind_ms = max(result.max_behind_ms, behind * 1000)
        due = min(int(result.rate_target * elapsed), total)
        for _ in range(due - sent):
            topic, jpeg = next(plan)
            next(clients).publish(topic, jpeg, 0)
        sent = due
        tick = max(tick + 1, int(elapsed / TICK_S) + 1)
        service(pubs, start + tick * TICK_S)
    deadline = time.perf_counter() + DRAIN_S
    while any(p.client.want_write() for p in pubs) and time.perf_counter() < deadline:
        service(pubs, time.perf_counter() + TICK_S)
    result.unsent = sum(p.client.want_write() for p in pubs)
    result.ended_at, result.elapsed_s = time.time(), time.perf_counter() - start
    result.cpu_s = time.process_time() - cpu0
    result.published = sent


def main() -> None:
    """Load the frames, connect, wait for --start-at, publish, write the result."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True, help="broker port on 127.0.0.1")
    p.add_argument("--frames", type=Path, required=True, help="folder of c<n>-<i>.jpg")
    p.add_argument("--rate", type=float, required=True, help="snapshots per second, all cameras")
    p.add_argument("--duration", type=float, required=True, help="seconds of publishing")
    p.add_argument("--publishers", type=int, default=2, help="MQTT clients (default: 2)")
    p.add_argument("--school", default="cams", help="the cameras' school (default: cams)")
    p.add_argument("--start-at", type=float, default=0.0, help="time.time() to start at")
    p.add_argument("--out", type=Path, required=True, help="where the JSON result goes")
    a = p.parse_args()
    cameras = load_frames(a.frames)
    jpegs = [j for _, frames in cameras for j in frames]
    kb = sum(map(len, jpegs)) / len(jpegs) / 1024
    frames = max(len(f) for _, f in cameras)
    result = SnapshotResult(a.rate, a.duration, len(cameras), frames, kb)
    tag = f"{a.school}-{os.getpid()}"
    pubs = [Publisher(a.port, f"bench-{tag}-{i}", threaded=False) for i in range(a.publishers)]
    try:
        time.sleep(max(0.0, a.start_at - time.time()))
        run(pubs, schedule(a.school, cameras), result)
    finally:
        for pub in pubs:
            pub.close()
    result.errors = sum(pub.errors for pub in pubs)
    result.achieved_s = result.published / result.elapsed_s if result.elapsed_s else 0.0
    a.out.write_bytes(orjson.dumps(asdict(result)))


if __name__ == "__main__":
    main()
