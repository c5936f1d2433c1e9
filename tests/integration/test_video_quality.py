"""Video quality on real parts: the camera simulator injects a fault into one camera of several
over MQTT snapshots; exactly that camera gets exactly that trouble, with evidence, then clears."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulators.servers import Mosquitto, children_of, free_port, spawn, stop_process
from tests.integration.conftest import Gateway, wait_for

pytestmark = pytest.mark.integration
CAMERAS = [f"s1/camera/c{n}" for n in range(1, 4)]


@pytest.fixture
def cameras(tmp_path: Path, broker: Mosquitto) -> Iterator[int]:
    control = free_port()
    proc = spawn(
        [sys.executable, "-m", "gateway", "simulate", "cameras", "--port", str(broker.port),
         "--schools", "1", "--cameras", "3", "--interval", "0.25", "--status-interval", "0",
         "--width", "640", "--height", "360", "--light", "0.8", "--http-port", str(control),
         "--seed", "7"],
        tmp_path / "cameras.log",
    )  # fmt: skip
    wait_for(lambda: _get(control, "/faults") is not None, 20, "camera simulator")
    yield control
    stop_process(proc)


def _get(port: int, path: str) -> Any:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def _inject(port: int, camera: str, fault: str) -> None:
    body = json.dumps({"camera": camera, "fault": fault}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/faults", data=body,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    urllib.request.urlopen(request, timeout=5).close()


def _clear(port: int, camera: str) -> None:
    school, device = camera.split("/")
    request = urllib.request.Request(f"http://127.0.0.1:{port}/faults/{school}/{device}",
                                     method="DELETE")  # fmt: skip
    urllib.request.urlopen(request, timeout=5).close()


def active(gw: Gateway) -> dict[str, list[str]]:
    return {f"{c['school']}/camera/{c['device']}": c["active"] for c in gw.get("/api/cameras")}


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("black", "black"),
        ("blur", "blur"),
        ("cover", "occlusion"),
        ("freeze", "frozen"),
        ("snow", "noise"),
        ("colour_cast", "colour_cast"),
        ("pan", "scene_change"),
        ("dark", "too_dark"),
        ("bright", "too_bright"),
        ("low_contrast", "low_contrast"),
        ("stop", "signal_loss"),
    ],
)
def test_a_fault_in_one_camera_gives_that_camera_that_trouble_then_clears(
    tmp_path: Path, broker: Mosquitto, gateway: Gateway, cameras: int, fault: str, check: str
) -> None:
    gateway.stop()
    gateway.configure(video_quality={
        "baseline_frames": 8, "hits_to_raise": 3, "healthy_to_clear": 3, "cooldown_s": 0,
        # 640x360 frames at full size are what a 1080p camera gives at 1/4.
        "decode_reduction": 1, "signal_loss_s": 2,
        "evidence_dir": str(tmp_path / "evidence"),
    })  # fmt: skip
    gateway.start()

    def learnt() -> bool:
        seen = gateway.get("/api/cameras")
        return len(seen) == 3 and all(c["frames"] >= 12 for c in seen)

    wait_for(learnt, 30, "three cameras past their baseline")
    assert active(gateway) == {camera: [] for camera in CAMERAS}
    _inject(cameras, "s1/c2", fault)
    wait_for(lambda: active(gateway)["s1/camera/c2"] == [check], 30, f"{check} on c2")
    assert active(gateway) == {"s1/camera/c1": [], "s1/camera/c2": [check], "s1/camera/c3": []}
    troubles = gateway.get("/api/alarms?open=true")["items"]
    assert [(a["device"], a["event"]) for a in troubles] == [("c2", f"video_{check}")]
    evidence = troubles[0]["evidence"]
    if check == "signal_loss":
        assert evidence is None  # no frame is what the trouble is about
    else:
        assert evidence and Path(evidence).read_bytes()[:2] == b"\xff\xd8"
    _clear(cameras, "s1/c2")
    wait_for(lambda: active(gateway)["s1/camera/c2"] == [], 30, "cleared")
    cleared = gateway.get(f"/api/alarms/{troubles[0]['id']}")
    assert cleared["restored_at"] is not None  # recorded; a person still resets the trouble
    assert active(gateway) == {camera: [] for camera in CAMERAS}


def test_polled_sources_http_frames_and_a_dead_url_is_signal_loss(
    tmp_path: Path, broker: Mosquitto, gateway: Gateway, cameras: int
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nothing.jpg"
    gateway.stop()
    gateway.configure(video_quality={
        "decode_reduction": 1, "signal_loss_s": 2, "hits_to_raise": 1, "cooldown_s": 0,
        "evidence_dir": str(tmp_path / "evidence"),
        "sources": [
            {"device": "s9/camera/http1", "url": f"http://127.0.0.1:{cameras}/cameras/s1/c1.jpg",
             "interval_s": 0.3},
            {"device": "s9/camera/dead", "url": dead, "interval_s": 0.3},
        ],
    })  # fmt: skip
    gateway.start()
    wait_for(lambda: active(gateway).get("s9/camera/dead") == ["signal_loss"], 20, "dead URL")
    polled = {c["device"]: c for c in gateway.get("/api/cameras?school=s9")}
    wait_for(lambda: {c["device"]: c for c in gateway.get("/api/cameras?school=s9")}["http1"][
        "frames"] >= 3, 20, "frames fetched over HTTP")  # fmt: skip
    assert polled["dead"]["frames"] == 0
    assert "signal_loss" not in active(gateway)["s9/camera/http1"]


def test_a_trouble_open_across_a_restart_is_not_raised_again_and_clears(
    tmp_path: Path, gateway: Gateway, cameras: int
) -> None:
    gateway.stop()
    gateway.configure(
        video_quality={"baseline_frames": 8, "hits_to_raise": 3, "healthy_to_clear": 3,
                       "cooldown_s": 0, "decode_reduction": 1,
                       "evidence_dir": str(tmp_path / "evidence")},
        alarms={"duplicate_window_s": 0.5},  # the store must not be what hides a repeat
    )  # fmt: skip
    gateway.start()
    wait_for(lambda: len(active(gateway)) == 3 and all(
        c["frames"] >= 12 for c in gateway.get("/api/cameras")), 30, "baselines")  # fmt: skip
    _inject(cameras, "s1/c2", "black")
    wait_for(lambda: active(gateway)["s1/camera/c2"] == ["black"], 30, "black on c2")
    gateway.stop()
    gateway.start()  # c2 is still black
    assert active(gateway).get("s1/camera/c2") == ["black"]  # known before any frame
    wait_for(lambda: gateway.get("/api/cameras?school=s1")[1]["frames"] >= 8, 30, "frames")
    troubles = gateway.get("/api/alarms?device=c2")["items"]
    assert [a["event"] for a in troubles] == ["video_black"]  # not raised a second time
    _clear(cameras, "s1/c2")
    wait_for(lambda: active(gateway)["s1/camera/c2"] == [], 30, "cleared after the restart")
    assert gateway.get(f"/api/alarms/{troubles[0]['id']}")["restored_at"] is not None


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's init may not reap the orphans it adopts)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_the_checks_run_in_worker_processes_that_end_with_a_killed_gateway(
    gateway: Gateway, cameras: int
) -> None:
    assert gateway.proc is not None
    wait_for(lambda: sum(c["frames"] for c in gateway.get("/api/cameras")) >= 12, 30,
             "frames checked")  # fmt: skip
    workers = [pid for pid, cmd in children_of(gateway.proc.pid).items() if "spawn_main" in cmd]
    assert len(workers) == 2  # video_quality.workers, as processes by default
    gateway.kill()  # SIGKILL: the pool cannot tell its workers
    wait_for(lambda: not any(_running(pid) for pid in workers), 10, "orphaned workers to end")
