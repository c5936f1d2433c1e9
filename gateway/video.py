"""Video quality diagnosis in the gateway: snapshots in, camera troubles and scores out.

Frames arrive as MQTT snapshots (`submit`) or are fetched from configured sources (HTTP snapshot
URLs, RTSP streams, files). Decoding and scoring run in a pool of `video_quality.workers`
worker processes (or threads, `worker_kind`) at a lower OS priority (`worker_nice`), never on
the event loop, so alarms are not delayed (gateway/checkers.py); each camera's state and the
verdict stay here. While a camera's frame is being checked, only its newest waiting frame
is kept (older ones are counted as skipped). A check that hits `hits_to_raise` frames in a row
raises a trouble for the security room with the evidence frame kept on disk;
`healthy_to_clear` good frames record it as restored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from drivers.camera.quality import CHECKS, CameraQuality, FrameError, Verdict
from gateway.alarms import PRIORITY, new_alarm_id
from gateway.checkers import Checkers, WorkerDied, lower_priority
from gateway.config import CameraSource, VideoQualitySettings
from gateway.lineproto import quality_line
from gateway.models import Channel, Kind, Topic
from gateway.ports import NewAlarm, NewDeadLetter, Restore
from gateway.stats import Stats

log = logging.getLogger(__name__)
Commit = Callable[[Sequence[NewAlarm], Sequence[NewDeadLetter], Sequence[Restore]], Awaitable[Any]]


@dataclass(slots=True)
class _Camera:
    school: str
    device: str
    quality: CameraQuality
    busy: bool = False
    pending: tuple[bytes, datetime] | None = None
    last_frame_at: datetime | None = None
    watch_from: datetime | None = None  # a polled source: silence counts from its first poll
    scores: dict[str, float] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)
    evidence: dict[str, str] = field(default_factory=dict)
    frames: int = 0

    @property
    def key(self) -> str:
        return f"{self.school}/camera/{self.device}"


class VideoQuality:
    """Per-camera diagnosis state, the worker pool and the frame sources."""

    def __init__(
        self, settings: VideoQualitySettings, stats: Stats, add_point: Callable[[bytes], None],
        commit: Commit,
    ) -> None:  # fmt: skip
        self._settings = settings
        self._stats = stats
        self._add_point = add_point
        self._commit = commit
        self._checkers = Checkers(
            settings.worker_kind, settings.workers, settings.worker_nice,
            idle=settings.worker_sched_idle and settings.worker_kind == "process",
            on_restart=self._restarted,
        )  # fmt: skip
        # Streams are read on threads of their own, one a source: a stream that stalls must not
        # hold a check worker (the checks serve every camera, MQTT snapshots too).
        self._grabbers = ThreadPoolExecutor(
            max(1, len(settings.sources)), thread_name_prefix="vqd-grab",
            initializer=lower_priority, initargs=(settings.worker_nice,),
        )  # fmt: skip
        self._cameras: dict[str, _Camera] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def resume(self, troubles: Sequence[tuple[str, str, str, datetime]]) -> None:
        """Start-up: the video troubles still open in the alarm store, (school, device,
        `video_<check>`, raised at), so a restart neither raises them again nor forgets to
        record them restored."""
        for school, device, event, at in troubles:
            check = event.removeprefix("video_")
            if check not in CHECKS:
                continue
            camera = self._camera(school, device)
            camera.quality.resume(check, at.timestamp())
            camera.active.add(check)

    def _restarted(self) -> None:
        self._stats.vqd_worker_restarts += 1

    def submit(self, topic: Topic, jpeg: bytes, at: datetime) -> None:
        """A snapshot arrived; check it now, or after the camera's current one."""
        camera = self._camera(topic.school, topic.device)
        if camera.busy:
            if camera.pending is not None:
                self._stats.snapshots_skipped += 1
            camera.pending = (jpeg, at)
            return
        self._start(camera, jpeg, at)

    def _camera(self, school: str, device: str) -> _Camera:
        key = f"{school}/camera/{device}"
        camera = self._cameras.get(key)
        if camera is None:
            camera = self._cameras[key] = _Camera(school, device, CameraQuality(self._settings))
        return camera

    def _start(self, camera: _Camera, jpeg: bytes, at: datetime) -> None:
        camera.busy = True
        task = asyncio.create_task(self._check(camera, jpeg, at), name=f"vqd {camera.key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check(self, camera: _Camera, jpeg: bytes, at: datetime) -> None:
        try:
            measured = await self._checkers.measure(jpeg, *camera.quality.inputs())
            verdict = camera.quality.conclude(measured, at.timestamp())
            camera.last_frame_at, camera.frames = at, camera.frames + 1
            self._stats.snapshots_checked += 1
            await self._apply(camera, verdict, at, jpeg)
        except FrameError as exc:
            reason = str(exc) if isinstance(exc, WorkerDied) else f"bad JPEG: {exc}"
            topic = f"campus/{camera.key}/snapshot"
            await self._commit([], [NewDeadLetter(topic, jpeg[:65536], reason, at)], [])
        except Exception:
            log.exception("video quality check of %s failed", camera.key)
        finally:
            camera.busy = False
            if camera.pending is not None:
                next_jpeg, next_at = camera.pending
                camera.pending = None
                self._start(camera, next_jpeg, next_at)

    async def _apply(
        self, camera: _Camera, verdict: Verdict, at: datetime, jpeg: bytes | None
    ) -> None:
        camera.scores, camera.active = dict(verdict.scores), set(verdict.active)
        if verdict.scores:
            self._add_point(quality_line(camera.school, camera.device, verdict.scores,
                                         sorted(verdict.active), at))  # fmt: skip
        alarms = [self._trouble(camera, check, at, jpeg) for check in sorted(verdict.raised)]
        restores = [Restore(camera.school, Kind.CAMERA, camera.device, at, f"video_{check}")
                    for check in sorted(verdict.cleared)]  # fmt: skip
        for check in verdict.cleared:
            log.info("camera %s: %s cleared", camera.key, check)
        if alarms or restores:
            self._stats.video_troubles += len(alarms)
            await self._commit(alarms, [], restores)

    def _trouble(self, camera: _Camera, check: str, at: datetime, jpeg: bytes | None) -> NewAlarm:
        evidence = self._keep_evidence(camera, check, at, jpeg)
        log.warning("camera %s: %s (evidence %s)", camera.key, check, evidence)
        return NewAlarm(
            id=new_alarm_id(), school=camera.school, kind=Kind.CAMERA, device=camera.device,
            event=f"video_{check}", category="trouble", seq=0, device_ts=at, received_at=at,
            endpoints=(), priority=PRIORITY["trouble"], evidence=evidence,
        )  # fmt: skip

    def _keep_evidence(
        self, camera: _Camera, check: str, at: datetime, jpeg: bytes | None
    ) -> str | None:
        if jpeg is None:  # signal loss: there is no frame to keep
            return None
        folder = self._settings.evidence_dir / camera.school / camera.device
        path = folder / f"{at.strftime('%Y%m%dT%H%M%S.%fZ')}-{check}.jpg"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg)
        except OSError as exc:
            log.error("cannot keep evidence %s: %s", path, exc)
            return None
        camera.evidence[check] = str(path)
        return str(path)

    async def run(self) -> None:
        """Judge silence (signal loss) and poll the configured sources, until cancelled."""
        pollers = [asyncio.create_task(self._poll(s), name=f"source {s.device}")
                   for s in self._settings.sources]  # fmt: skip
        try:
            while True:
                await asyncio.sleep(1.0)
                await self._judge_silence(datetime.now(UTC))
        finally:
            for task in (*pollers, *self._tasks):
                task.cancel()
            self._checkers.shutdown()
            self._grabbers.shutdown(wait=False, cancel_futures=True)

    async def _judge_silence(self, now: datetime) -> None:
        for camera in list(self._cameras.values()):
            last = camera.last_frame_at or camera.watch_from
            if last is None or camera.busy:
                continue
            verdict = camera.quality.silence(now.timestamp(), last.timestamp())
            if verdict.raised or verdict.cleared:
                await self._apply(camera, verdict, now, None)

    async def _poll(self, source: CameraSource) -> None:
        school, _, device = source.device.split("/")
        topic = Topic(school, Kind.CAMERA, device, Channel.SNAPSHOT)
        # A dead URL is a signal loss too, even if it never gave a frame.
        self._camera(school, device).watch_from = datetime.now(UTC)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while True:
                started = time.monotonic()
                jpeg = await self._fetch(session, source)
                if jpeg is not None:
                    self.submit(topic, jpeg, datetime.now(UTC))
                await asyncio.sleep(max(0.0, source.interval_s - (time.monotonic() - started)))

    async def _fetch(self, session: aiohttp.ClientSession, source: CameraSource) -> bytes | None:
        try:
            if source.url.startswith(("http://", "https://")):
                async with session.get(source.url) as resp:
                    if resp.status == 200:
                        return await resp.read()
                    log.debug("%s answered %d", source.url, resp.status)
                    return None
            loop = asyncio.get_running_loop()
            timeout_ms = int(self._settings.stream_timeout_s * 1000)
            return await loop.run_in_executor(self._grabbers, _grab, source.url, timeout_ms)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.debug("no frame from %s: %s", source.url, exc)
            return None

    def cameras(self) -> list[dict[str, Any]]:
        """Camera health for the API: active troubles, last scores, evidence, last frame."""
        return [
            {"school": c.school, "device": c.device, "active": sorted(c.active),
             "scores": c.scores, "evidence": c.evidence, "frames": c.frames,
             "last_frame_at": c.last_frame_at.isoformat() if c.last_frame_at else None}
            for _, c in sorted(self._cameras.items())
        ]  # fmt: skip


# FFmpeg (OpenCV's backend for streams): RTSP over TCP straight away (no UDP SETUP refused
# first), and no probing of ~20 frames for a frame rate before the first one is returned
# (4 s at 5 fps). Read by OpenCV when a capture opens; an operator's own setting wins.
FFMPEG_OPTIONS = "rtsp_transport;tcp|fpsprobesize;0"


def _grab(url: str, timeout_ms: int = 5000) -> bytes | None:
    """One frame from an RTSP stream or a file, as JPEG bytes (blocking; runs in a thread)."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", FFMPEG_OPTIONS)
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        timeout_ms,
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        timeout_ms,
    ]
    capture = cv2.VideoCapture(url, cv2.CAP_ANY, params)
    try:
        ok, frame = capture.read()
        if not ok:
            return None
        encoded, buffer = cv2.imencode(".jpg", frame)
        return bytes(buffer) if encoded else None
    finally:
        capture.release()
