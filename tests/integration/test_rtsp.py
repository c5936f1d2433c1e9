"""RTSP on real parts: cv2.VideoCapture (OpenCV's FFmpeg) reads the camera simulator's streams,
and the gateway, polling RTSP sources, reports a fault injected into one camera's stream on
exactly that camera, then clears it."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from simulators.servers import Mosquitto, free_port, log_tail, spawn, stop_process
from tests.integration.conftest import Gateway, wait_for

pytestmark = pytest.mark.integration
# FFmpeg reads 20 frames before cv2.VideoCapture returns (it measures the frame rate, which
# RTP does not carry): 4 s at the simulator's default 5 fps, 0.8 s at 25.
FPS = 25


@dataclass
class Cameras:
    http: int
    rtsp: int
    log: Path

    def url(self, camera: str) -> str:
        return f"rtsp://127.0.0.1:{self.rtsp}/{camera}"

    def snapshot(self, camera: str) -> np.ndarray:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/cameras/{camera}.jpg") as r:
            frame = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
        assert frame is not None
        return frame

    def inject(self, camera: str, fault: str) -> None:
        body = json.dumps({"camera": camera, "fault": fault}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.http}/faults", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        urllib.request.urlopen(request, timeout=5).close()

    def clear(self, camera: str) -> None:
        url = f"http://127.0.0.1:{self.http}/faults/{camera}"
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=5).close()


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/faults", timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def cameras(tmp_path: Path) -> Iterator[Cameras]:
    """Two cameras (s1/c1 at a gate, s1/c2 on the perimeter) over HTTP and RTSP, no MQTT."""
    sim = Cameras(free_port(), free_port(), tmp_path / "cameras.log")
    proc = spawn(
        [sys.executable, "-m", "gateway", "simulate", "cameras", "--port", "0", "--schools", "1",
         "--cameras", "2", "--interval", "0.25", "--status-interval", "0", "--width", "640",
         "--height", "360", "--light", "0.8", "--http-port", str(sim.http), "--rtsp-port",
         str(sim.rtsp), "--rtsp-fps", str(FPS), "--seed", "7", "--progress", "0"],
        sim.log,
    )  # fmt: skip
    wait_for(lambda: _answers(sim.http) or proc.poll() is not None, 20, "camera simulator")
    assert proc.poll() is None, log_tail(sim.log)
    yield sim
    assert stop_process(proc) == 0, log_tail(sim.log)
    log = sim.log.read_text()
    assert "rtsp: " in log and "Traceback" not in log, log_tail(sim.log)


def grey(frame: np.ndarray, size: tuple[int, int] = (64, 36)) -> np.ndarray:
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(float)


def read_until(
    capture: cv2.VideoCapture, predicate: Callable[[np.ndarray], bool], timeout: float, what: str
) -> np.ndarray:
    """Read frames until one satisfies predicate (frames arrive at FPS; never a fixed sleep)."""
    deadline, frame = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        ok, frame = capture.read()
        assert ok, "the stream ended"
        if predicate(frame):
            return np.asarray(frame)
    pytest.fail(f"no frame {what} within {timeout} s (last mean {np.mean(frame):.1f})")


def test_cv2_reads_the_camera_streams_with_their_scenes_and_faults(cameras: Cameras) -> None:
    started = time.monotonic()
    capture = cv2.VideoCapture(cameras.url("s1/c1"))
    try:
        assert capture.isOpened(), log_tail(cameras.log)
        opened = time.monotonic() - started
        ok, frame = capture.read()
        assert ok and frame.shape == (360, 640, 3)
        assert opened < 20 / FPS + 2  # FFmpeg's 20 frames of analysis, and some slack
        # The same view as the camera's HTTP snapshot (people move, the clock ticks), not c2's.
        same, other = grey(cameras.snapshot("s1/c1")), grey(cameras.snapshot("s1/c2"))
        here = grey(frame)
        assert abs(here.mean() - same.mean()) < 4
        assert np.abs(here - same).mean() < 6 < np.abs(here - other).mean()
        cameras.inject("s1/c1", "black")
        read_until(capture, lambda f: f.mean() < 10, 10, "black")
        cameras.clear("s1/c1")
        read_until(capture, lambda f: abs(grey(f).mean() - same.mean()) < 4, 10, "back")
        cameras.inject("s1/c1", "stop")
        wait_for(lambda: not capture.read()[0], 10, "the stream to end on stop")
    finally:
        capture.release()
    stopped = cv2.VideoCapture(cameras.url("s1/c1"))  # answered 503 Service Unavailable
    assert not stopped.isOpened()
    missing = cv2.VideoCapture(cameras.url("s1/c9"))  # 404
    assert not missing.isOpened()
    cameras.clear("s1/c1")
    again = cv2.VideoCapture(cameras.url("s1/c1"))
    assert again.isOpened() and again.read()[0]
    again.release()


def active(gw: Gateway) -> dict[str, list[str]]:
    return {f"{c['school']}/camera/{c['device']}": c["active"] for c in gw.get("/api/cameras")}


def wait_for_c1(gateway: Gateway, checks: list[str], what: str) -> None:
    expected = {"s1/camera/c1": checks, "s1/camera/c2": []}
    wait_for(lambda: active(gateway) == expected, 30, what)


def test_the_gateway_reads_rtsp_sources_and_reports_a_fault_on_that_camera(
    tmp_path: Path, broker: Mosquitto, gateway: Gateway, cameras: Cameras
) -> None:
    gateway.stop()
    gateway.configure(video_quality={
        "decode_reduction": 1, "hits_to_raise": 2, "healthy_to_clear": 2, "cooldown_s": 0,
        "signal_loss_s": 3, "evidence_dir": str(tmp_path / "evidence"),
        "sources": [{"device": f"s1/camera/{c}", "url": cameras.url(f"s1/{c}"),
                     "interval_s": 0.2} for c in ("c1", "c2")],
    })  # fmt: skip
    gateway.start()

    def frames() -> list[int]:
        return [camera["frames"] for camera in gateway.get("/api/cameras")]

    wait_for(lambda: len(frames()) == 2 and min(frames()) >= 2, 30, "frames over RTSP")
    assert active(gateway) == {"s1/camera/c1": [], "s1/camera/c2": []}
    for fault, check in (("black", "black"), ("freeze", "frozen"), ("stop", "signal_loss")):
        cameras.inject("s1/c1", fault)
        wait_for_c1(gateway, [check], f"{check} on c1 only")
        cameras.clear("s1/c1")
        wait_for_c1(gateway, [], f"{check} cleared")
    troubles = gateway.get("/api/alarms")["items"]
    assert sorted((a["device"], a["event"]) for a in troubles) == [
        ("c1", "video_black"), ("c1", "video_frozen"), ("c1", "video_signal_loss")]  # fmt: skip
    assert all(a["restored_at"] for a in troubles)


def test_the_gateway_grab_gives_up_on_a_stalled_stream_within_its_timeout(
    cameras: Cameras,
) -> None:
    from gateway.video import _grab

    started = time.monotonic()
    assert _grab(cameras.url("s1/c1"), 2000) is not None  # opens at once: no frame-rate probe
    opened = time.monotonic() - started
    cameras.inject("s1/c1", "drop")  # connected, RTSP answers, no frames
    started = time.monotonic()
    assert _grab(cameras.url("s1/c1"), 2000) is None
    stalled = time.monotonic() - started
    print(
        f"\nrtsp grab: a frame in {opened:.2f} s; a stalled stream given up after {stalled:.1f} s"
    )
    assert opened < 2.0 and stalled < 6.0  # OpenCV's defaults: 30 s to open + 30 s to read
