"""Benchmark of video quality diagnosis (drivers/camera/quality.py): how right, how fast.

Frames come from simulators/camera_scenes.py (four kinds of school scene with people and cars
moving, sensor noise, an on-screen clock, day light and infrared nights), are JPEG-encoded and
go through `CameraQuality.observe` exactly as the gateway hands it snapshots (default settings:
decode at 1/4, baseline of 10 frames, N = 3, M = 3). Prints figures; never run as a test.

labelled    Per-check precision and recall on single frames. Each camera (kind x light; lights:
            day 1.0 and 0.7, dusk 0.3 and 0.15, infrared night 0.05) first sees 30 healthy
            frames with the light going from full daylight to its own (an afternoon: it knows
            its colours before an infrared night), then alternates a healthy frame and a faulty
            one, cycling through the faults. A fault frame is labelled with the check it must
            hit. "dark", "bright" and "low_contrast" are made as strong as DOMAIN.md's
            definitions need (mean < 30, mean > 220, std < 25, on a 320x180 thumbnail),
            from the simulator's strength 1 up; "dark" is weakened instead where strength 1
            gives a black frame by ffmpeg blackdetect's definition (98 % of pixels below 24).
            Black implies too_dark and low_contrast (it is reported alone), so a black hit
            counts as detecting those two. --per-fault frames per fault (default 200).
sensitivity The same cameras, every fault at strengths 0.25, 0.5, 0.75 and 1 (the simulator's
            scale; freeze below 1 re-encodes the still with faint noise): the share of fault
            frames hitting the expected check, and the share hitting any other check.
days        False troubles on healthy streams after the N-hit filter: --cameras cameras for
            --days days each, one snapshot every --cadence s, light following the clock
            (dawn, dusk, the infrared switch; indoor lights on 06:00-22:00). Frames are drawn
            at 960x540 and decoded at 1/2, which gives the checks the same 480x270 picture as
            a 1080p snapshot decoded at 1/4, at a quarter of the cost.
episodes    The labelled set's cameras at 960x540 (decoded at 1/2): each fault in turn held for
            6 consecutive snapshots, then 6 healthy ones. Is a trouble of the right check
            raised, after how many fault frames, and cleared once the fault has ended?
throughput  Snapshots/s with every check on 1080p JPEGs (quality 70 and 85, ~180 and ~300 KB),
            one thread with cv2.setNumThreads(1) (CPU time: the per-core figure), then with
            --threads threads (cv2 releases the GIL): wall rate and how many CPUs the process
            kept busy (on a machine other jobs share, the wall figures drop, the CPU ones less).

    .venv/bin/python bench/vqd.py                          # everything (~10 min)
    .venv/bin/python bench/vqd.py --phases throughput
    .venv/bin/python bench/vqd.py --phases days --days 20 --cadence 10
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from drivers.camera.quality import CHECKS, CameraQuality, decode
from gateway.config_devices import VideoQualitySettings
from simulators.camera_scenes import KINDS, Scene, Stream, encode_jpeg, light_at

EXPECTED = {"black": "black", "freeze": "frozen", "blur": "blur", "cover": "occlusion",
            "snow": "noise", "colour_cast": "colour_cast", "pan": "scene_change",
            "dark": "too_dark", "bright": "too_bright", "low_contrast": "low_contrast"}  # fmt: skip
IMPLIED = {"black": {"too_dark", "low_contrast"}}  # a hit on the key also detects these
LIGHTS = {"day": (1.0, 0.7), "dusk": (0.3, 0.15), "night": (0.05,)}
NOON = 12 * 3600.0
WARM_UP = 30  # labelled: healthy frames each camera sees first


def _jpeg(frame: np.ndarray, quality: int = 80) -> bytes:
    return encode_jpeg(frame, quality)


def _is_black(grey: np.ndarray) -> bool:
    """ffmpeg blackdetect's definition: 98 % of the pixels below 10 % (24 of 255)."""
    return bool((grey < 24).mean() >= 0.98)


DEFINED = {"dark": lambda f: f.mean() < 30 and not _is_black(f), "bright": lambda f: f.mean() > 220,
           "low_contrast": lambda f: f.std() < 25}  # fmt: skip
STRENGTHS = {"dark": (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)}


def _defined(stream: Stream, t: float, fault: str, light: float, variant: int) -> np.ndarray:
    """A fault frame as strong as its DOMAIN.md definition needs (see the module docstring)."""
    test = DEFINED.get(fault)
    for strength in STRENGTHS.get(fault, (1.0, 1.25, 1.5, 2.0, 3.0)):
        frame = stream.next(t, fault, strength, light, variant)
        assert frame is not None
        small = cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA)
        if test is None or test(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)):
            return frame
    return frame


@dataclass
class Tally:
    """Frame-level counts for precision and recall, with what each fault hit."""

    tp: Counter[str] = field(default_factory=Counter)
    fp: Counter[str] = field(default_factory=Counter)
    fn: Counter[str] = field(default_factory=Counter)
    hit_sets: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    missed_by_light: Counter[tuple[str, str]] = field(default_factory=Counter)
    frames: Counter[str] = field(default_factory=Counter)

    def add(self, label: str, hits: frozenset[str], light: str) -> None:
        expected = EXPECTED.get(label)
        found = set(hits) | set().union(*(IMPLIED.get(h, set()) for h in hits))
        self.frames[label] += 1
        self.hit_sets[label][",".join(sorted(hits)) or "-"] += 1
        for check in CHECKS:
            if check == expected:
                self.tp[check] += check in found
                self.fn[check] += check not in found
                if check not in found:
                    self.missed_by_light[label, light] += 1
            elif check in hits and not (expected and check in IMPLIED.get(expected, ())):
                self.fp[check] += 1


@dataclass
class Camera:
    """One simulated camera of the labelled set, warmed up, with its clock."""

    quality: CameraQuality
    stream: Stream
    light_name: str
    light: float
    t: float

    def observe(self, fault: str | None, i: int, strength: float | None = None) -> frozenset[str]:
        """The hits of the next snapshot; strength None: as strong as the definition needs."""
        self.t += 10
        if fault is None or strength is not None:
            frame = self.stream.next(self.t, fault, strength or 1.0, self.light, i)
            assert frame is not None
        else:
            frame = _defined(self.stream, self.t, fault, self.light, i)
        return self.quality.observe(_jpeg(frame), self.t).hits


def _cameras(seed: int, size: tuple[int, int] = (1920, 1080)) -> Iterator[Camera]:
    """Every kind under every light, after an afternoon of healthy frames. Frames smaller
    than 1080p are decoded less reduced, so the checks see the same 480x270 picture."""
    lights = [(name, v) for name, values in LIGHTS.items() for v in values]
    settings = VideoQualitySettings(decode_reduction=4 * size[0] // 1920)  # type: ignore[arg-type]
    for n, (kind, (light_name, light)) in enumerate(itertools.product(KINDS, lights)):
        stream = Stream(Scene(seed + n, *size, kind=kind), label=f"cam {n}", seed=seed + n)
        camera = Camera(CameraQuality(settings), stream, light_name, 1.0, NOON)
        for i in range(WARM_UP):  # from full daylight to this camera's light
            camera.light = 1.0 + (light - 1.0) * i / (WARM_UP - 1)
            camera.observe(None, i)
        camera.light = light
        yield camera


CAMERAS = len(KINDS) * sum(map(len, LIGHTS.values()))


def labelled(per_fault: int, seed: int) -> None:
    """Precision and recall per check on single frames (see the module docstring)."""
    rounds = -(-per_fault // CAMERAS)  # each camera shows each fault this many times
    tally, started = Tally(), time.perf_counter()
    for camera in _cameras(seed):
        for i, fault in enumerate(list(EXPECTED) * rounds):
            tally.add("healthy", camera.observe(None, i), camera.light_name)
            tally.add(fault, camera.observe(fault, i // len(EXPECTED)), camera.light_name)
    _print_labelled(tally, CAMERAS, time.perf_counter() - started)


STRENGTHS_SWEPT = (0.25, 0.5, 0.75, 1.0)


def sensitivity(per_cell: int, seed: int) -> None:
    """Recall against fault strength (see the module docstring)."""
    found: Counter[tuple[str, float]] = Counter()
    other: Counter[tuple[str, float]] = Counter()
    rounds = -(-per_cell // CAMERAS)
    for camera in _cameras(seed + 100):
        for r, fault, strength in itertools.product(range(rounds), EXPECTED, STRENGTHS_SWEPT):
            camera.observe(None, r)
            hits = camera.observe(fault, r, strength)
            implied = set(hits) | set().union(*(IMPLIED.get(h, set()) for h in hits))
            found[fault, strength] += EXPECTED[fault] in implied
            other[fault, strength] += bool(set(hits) - {EXPECTED[fault]})
    n = rounds * CAMERAS
    print(
        f"\n== sensitivity: {n} frames per fault and strength; expected check hit % "
        "(any other check hit %)"
    )
    print(f"{'fault':13s}" + "".join(f"{s:>14g}" for s in STRENGTHS_SWEPT))
    for fault in EXPECTED:
        cells = [
            f"{found[fault, s] / n:7.0%} ({other[fault, s] / n:3.0%})" for s in STRENGTHS_SWEPT
        ]
        print(f"{fault:13s}" + "".join(f"{c:>14s}" for c in cells))


def _print_labelled(tally: Tally, cameras: int, seconds: float) -> None:
    print(f"\n== labelled frames: {sum(tally.frames.values())} frames from {cameras} cameras "
          f"({seconds:.0f} s)")  # fmt: skip
    print(f"{'check':14s} {'frames':>6s} {'TP':>5s} {'FP':>4s} {'FN':>4s} {'precision':>9s} "
          f"{'recall':>7s}")  # fmt: skip
    for check in CHECKS[1:]:
        tp, fp, fn = tally.tp[check], tally.fp[check], tally.fn[check]
        precision = tp / (tp + fp) if tp + fp else float("nan")
        recall = tp / (tp + fn) if tp + fn else float("nan")
        print(f"{check:14s} {tp + fn:6d} {tp:5d} {fp:4d} {fn:4d} {precision:9.3f} {recall:7.3f}")
    print("what each kind of frame hit (hit set: frames):")
    for label, sets in tally.hit_sets.items():
        print(f"  {label:13s} n={tally.frames[label]:4d}  " + "  ".join(
            f"{k}: {v}" for k, v in sets.most_common(6)))  # fmt: skip
    if tally.missed_by_light:
        print("misses by light:", dict(tally.missed_by_light))


def days(cameras: int, days_: int, cadence: float, seed: int) -> None:
    """False troubles on healthy streams (see the module docstring)."""
    started, frames = time.perf_counter(), 0
    troubles: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    where: list[str] = []
    for n in range(cameras):
        kind = KINDS[n % len(KINDS)]
        quality = CameraQuality(VideoQualitySettings(decode_reduction=2))
        stream = Stream(Scene(seed + n, 960, 540, kind=kind), label=f"cam {n}", seed=seed + n)
        for t in np.arange(0.0, days_ * 86400.0, cadence).tolist():
            frame = stream.next(t)
            assert frame is not None
            verdict = quality.observe(_jpeg(frame), t)
            frames += 1
            hits.update(verdict.hits)
            troubles.update(verdict.raised)
            where += [f"{kind} {n} day {t // 86400:.0f} {t % 86400 / 3600:05.2f}h "
                      f"light {light_at(t, kind):.2f}: {c}" for c in verdict.raised]  # fmt: skip
    seconds, raised = time.perf_counter() - started, sum(troubles.values())
    print(f"\n== healthy streams: {cameras} cameras x {days_} days = {cameras * days_} "
          f"camera-days, a snapshot every {cadence:g} s: {frames} snapshots "
          f"({seconds:.0f} s)")  # fmt: skip
    print(f"troubles raised: {raised} = {raised / (cameras * days_):.3f} per camera-day "
          f"{dict(troubles)}")  # fmt: skip
    print(f"single-frame hits (before the N-hit filter): {sum(hits.values())} = "
          f"{sum(hits.values()) / frames:.5f} per frame {dict(hits)}")  # fmt: skip
    for line in where[:20]:
        print("  ", line)


def episodes(rounds: int, seed: int, length: int = 6) -> None:
    """Faults held for `length` snapshots: raised? after how many frames? cleared after?"""
    after: dict[str, Counter[int]] = defaultdict(Counter)
    cleared: Counter[str] = Counter()
    for r in range(rounds):
        for camera in _cameras(seed + 1000 + 100 * r, (960, 540)):
            for fault, check in EXPECTED.items():
                raised_at, was_cleared = _episode(camera, fault, check, length, r)
                after[fault][raised_at or 0] += 1
                cleared[fault] += was_cleared
    n = rounds * CAMERAS
    print(f"\n== fault episodes: {n} per fault ({CAMERAS} cameras, every light), each fault "
          f"held for {length} snapshots then 6 healthy ones; N=3, M=3")  # fmt: skip
    for fault, check in EXPECTED.items():
        raised = n - after[fault][0]
        at = {k: v for k, v in sorted(after[fault].items()) if k}
        print(f"  {fault:12s} -> {check:13s} raised {raised / n:6.1%}, at fault frame {at}; "
              f"cleared after it {cleared[fault]}/{raised}")  # fmt: skip


def _episode(
    camera: Camera, fault: str, check: str, length: int, variant: int
) -> tuple[int | None, bool]:
    """The fault (the same variant throughout) for `length` frames, then 6 healthy ones. Returns
    the fault frame (1-based) at which the trouble was raised, and whether it was cleared."""
    raised_at, cleared = None, False
    for i, step in enumerate([fault] * length + [None] * 6):
        camera.t += 10
        frame = _defined(camera.stream, camera.t, step, camera.light, variant) if step else None
        frame = camera.stream.next(camera.t, None, 1.0, camera.light) if frame is None else frame
        assert frame is not None
        verdict = camera.quality.observe(_jpeg(frame), camera.t)
        if check in verdict.raised and raised_at is None:
            raised_at = i + 1
        cleared |= i >= length and check in verdict.cleared
    return raised_at, cleared


def throughput(threads: int, seconds: float) -> None:
    """Snapshots/s per core and with threads (see the module docstring)."""
    cv2.setNumThreads(1)
    for quality in (70, 85):
        jpegs = list(_sample_jpegs(quality))
        size = sum(map(len, jpegs)) / len(jpegs) / 1024
        decode_rate = _rate(lambda j, _q: decode(j, 4), jpegs, seconds)
        check_rate = _rate(lambda j, q: q.observe(j, time.time()), jpegs, seconds)
        print(f"\n== throughput, 1080p JPEG quality {quality} ({size:.0f} KB average), 1 thread")
        extra = 1000 / check_rate[0] - 1000 / decode_rate[0]
        print(f"decode at 1/4 only: {decode_rate[0]:6.0f}/s per core ({decode_rate[1]:.0f}/s wall)")
        print(f"all checks:         {check_rate[0]:6.0f}/s per core ({check_rate[1]:.0f}/s wall), "
              f"the checks add {extra:.2f} ms a snapshot")  # fmt: skip
        wall, cores = _threaded(jpegs, threads, seconds)
        print(f"all checks, {threads} threads: {wall:6.0f}/s wall, using {cores:.2f} of "
              f"{os.cpu_count()} CPUs ({wall / cores:.0f}/s per CPU-second)")  # fmt: skip


def _sample_jpegs(quality: int) -> Iterator[bytes]:
    for n, kind in enumerate(KINDS):
        stream = Stream(Scene(n, kind=kind), label="gate 1")
        for i in range(6):
            frame = stream.next(NOON + 10 * i, light=(1.0, 0.3, 0.05)[i % 3])
            assert frame is not None
            yield encode_jpeg(frame, quality)


def _rate(work: object, jpegs: list[bytes], seconds: float) -> tuple[float, float]:
    """(per CPU-second, per wall-second) of work(jpeg, CameraQuality) over the JPEGs."""
    assert callable(work)
    cams = [CameraQuality(VideoQualitySettings()) for _ in jpegs]
    n, cpu, wall = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - wall < seconds:
        for jpeg, cam in zip(jpegs, cams, strict=True):
            work(jpeg, cam)
        n += len(jpegs)
    return n / (time.process_time() - cpu), n / (time.perf_counter() - wall)


def _threaded(jpegs: list[bytes], threads: int, seconds: float) -> tuple[float, float]:
    """(snapshots per wall-second, CPUs busy) with `threads` threads, each its own cameras."""

    def run(_: int) -> int:
        cams = [CameraQuality(VideoQualitySettings()) for _ in jpegs]
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            for jpeg, cam in zip(jpegs, cams, strict=True):
                cam.observe(jpeg, time.time())
            n += len(jpegs)
        return n

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(run, range(threads)))
    wall = time.perf_counter() - started
    return total / wall, (time.process_time() - cpu) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phases", default="labelled,sensitivity,days,episodes,throughput")
    parser.add_argument("--per-fault", type=int, default=200, help="labelled frames per fault")
    parser.add_argument("--per-strength", type=int, default=40, help="sensitivity frames")
    parser.add_argument("--cameras", type=int, default=20, help="days: cameras")
    parser.add_argument("--days", type=int, default=1, help="days: days per camera")
    parser.add_argument("--cadence", type=float, default=60.0, help="days: seconds between")
    parser.add_argument("--episodes", type=int, default=2, help="episode rounds (x20 cameras)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput: per figure")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.2f}, cv2 {cv2.__version__}")
    phases = args.phases.split(",")
    if "labelled" in phases:
        labelled(args.per_fault, args.seed)
    if "sensitivity" in phases:
        sensitivity(args.per_strength, args.seed)
    if "days" in phases:
        days(args.cameras, args.days, args.cadence, args.seed)
    if "episodes" in phases:
        episodes(args.episodes, args.seed)
    if "throughput" in phases:
        throughput(args.threads, args.seconds)


if __name__ == "__main__":
    main()
