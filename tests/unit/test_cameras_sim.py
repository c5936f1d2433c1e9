"""The camera simulator: schedules, the fault board, the HTTP API and what a camera sends."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway import cli
from simulators.camera_control import Control, FaultBoard, Window, make_app, parse_schedule
from simulators.camera_scenes import decode_jpeg
from simulators.cameras import (
    MAX_UNACKED,
    Camera,
    CameraSim,
    build_parser,
    make_cameras,
    registry_cameras,
)

CAMERAS = {"s1/c1", "s1/c2", "s2/c1"}


def options(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    build_parser(parser)
    small = ["--port", "0", "--width", "160", "--height", "90", "--light", "1"]
    return parser.parse_args([*small, *argv])


# --- schedule -----------------------------------------------------------------------------------


def test_schedule_parses_windows_sorted_with_strength() -> None:
    got = parse_schedule("s1/c2:60-120=cover@0.5, s1/c1:30-90=blur,s1/c1:0-10.5=stop")
    assert got == (
        Window("s1/c1", 0.0, 10.5, "stop"),
        Window("s1/c1", 30.0, 90.0, "blur"),
        Window("s1/c2", 60.0, 120.0, "cover", 0.5),
    )
    assert parse_schedule("") == ()


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("s1c1:30-90=blur", r"'s1c1:30-90=blur' is not SCHOOL/CAMERA:START-END=FAULT\[@STRENGTH\]"),
        ("s1/c1:30=blur", "is not SCHOOL/CAMERA:START-END=FAULT"),
        ("s1/c1:30-90=fog", "fault 'fog' is not one of black, freeze, blur"),
        ("s1/c1:90-30=blur", "'s1/c1:90-30=blur': the window ends before it starts"),
        ("s1/c1:0-60=blur,s1/c1:30-90=black", "s1/c1: windows at 0 and 30 s overlap"),
    ],
)
def test_schedule_errors_say_what_is_wrong(spec: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_schedule(spec)


def test_a_bad_schedule_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["simulate", "cameras", "--schedule", "s1/c1:9-1=blur"])
    assert exc.value.code == 2
    assert "the window ends before it starts" in capsys.readouterr().err


# --- the fault board ----------------------------------------------------------------------------


def test_injected_faults_last_for_s_and_replace_each_other() -> None:
    board = FaultBoard(CAMERAS)
    assert board.active("s1/c1", 0) is None
    board.inject("s1/c1", "blur", 60, 1.0, now=10)
    assert board.active("s1/c1", 69.9).fault == "blur"  # type: ignore[union-attr]
    assert board.active("s1/c1", 70) is None
    board.inject("s1/c1", "black", None, 0.5, now=80)
    board.inject("s1/c1", "snow", None, 1.0, now=81)
    assert board.listing(1e6) == [{"camera": "s1/c1", "fault": "snow", "strength": 1.0,
                                   "since_s": 81, "until_s": None, "source": "api"}]  # fmt: skip
    assert board.clear("s1/c1", 90) == 1 and board.active("s1/c1", 91) is None


def test_injected_faults_are_checked() -> None:
    board = FaultBoard(CAMERAS)
    with pytest.raises(KeyError):
        board.inject("s9/c1", "blur", None, 1.0, 0)
    with pytest.raises(ValueError, match="fault 'fog' is not one of"):
        board.inject("s1/c1", "fog", None, 1.0, 0)
    with pytest.raises(ValueError, match="for_s must be a number of seconds > 0"):
        board.inject("s1/c1", "blur", 0, 1.0, 0)
    with pytest.raises(ValueError, match="strength must be between 0 and 10"):
        board.inject("s1/c1", "blur", None, -1, 0)
    with pytest.raises(KeyError):
        board.clear("s9/c1", 0)


def test_scheduled_faults_and_clearing_the_current_one() -> None:
    board = FaultBoard(CAMERAS, parse_schedule("s1/c1:10-20=pan,s1/c1:30-40=stop"))
    assert [board.active("s1/c1", t) for t in (9.9, 20, 29)] == [None, None, None]
    assert board.active("s1/c1", 10).fault == "pan"  # type: ignore[union-attr]
    board.inject("s1/c1", "black", 5, 1.0, now=12)  # the API wins while it lasts
    assert board.active("s1/c1", 13).fault == "black"  # type: ignore[union-attr]
    assert board.active("s1/c1", 17).source == "schedule"  # type: ignore[union-attr]
    assert board.clear("s1/c1", 18) == 1
    assert board.active("s1/c1", 19) is None
    assert board.active("s1/c1", 35).fault == "stop"  # type: ignore[union-attr]  # still planned


def test_a_schedule_for_unknown_cameras_is_refused() -> None:
    with pytest.raises(ValueError, match=r"cameras that are not simulated: \['s9/c9'\]"):
        FaultBoard(CAMERAS, parse_schedule("s9/c9:0-1=blur"))


# --- the HTTP API -------------------------------------------------------------------------------


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(clock: Clock) -> AsyncIterator[TestClient[Any, Any]]:
    snapshots = {"s1/c1": (b"\xff\xd8jpeg", 1_800_000_000.0), "s1/c2": (b"", 0.0)}
    control = Control(FaultBoard(CAMERAS), clock, lambda c: snapshots.get(c, (b"", 0.0)))
    async with TestClient(TestServer(make_app(control))) as test_client:
        yield test_client


async def answer(resp: Any) -> tuple[int, Any]:
    return resp.status, orjson.loads(await resp.read())


async def test_inject_list_clear(client: TestClient[Any, Any], clock: Clock) -> None:
    body = {"camera": "s1/c1", "fault": "blur", "for_s": 60}
    status, got = await answer(await client.post("/faults", json=body))
    assert status == 200 and got["fault"]["until_s"] == 160.0 and got["fault"]["strength"] == 1.0
    await client.post("/faults", json={"camera": "s2/c1", "fault": "cover", "strength": 0.5})
    status, got = await answer(await client.get("/faults"))
    faults = [(f["camera"], f["fault"]) for f in got["faults"]]
    assert faults == [("s1/c1", "blur"), ("s2/c1", "cover")]
    clock.now = 161
    _, got = await answer(await client.get("/faults"))
    assert [f["camera"] for f in got["faults"]] == ["s2/c1"]
    assert await answer(await client.delete("/faults/s2/c1")) == (200, {"ok": True, "cleared": 1})
    assert (await answer(await client.get("/faults")))[1]["faults"] == []


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"not json", 400, "the body is not JSON"),
        ({"camera": "s1/c1"}, 400, 'the body must be {"camera"'),
        ({"camera": "s1/c1", "fault": "blur", "colour": 1}, 400, 'the body must be {"camera"'),
        ({"camera": "s9/c1", "fault": "blur"}, 404, "no camera 's9/c1'"),
        ({"camera": "s1/c1", "fault": "fog"}, 400, "fault 'fog' is not one of"),
        ({"camera": "s1/c1", "fault": "blur", "for_s": "1m"}, 400, "for_s must be a number"),
        ({"camera": "s1/c1", "fault": "blur", "for_s": -5}, 400, "for_s must be a number of"),
        ({"camera": "s1/c1", "fault": "blur", "strength": 99}, 400, "strength must be between"),
    ],
)
async def test_inject_errors(
    client: TestClient[Any, Any], body: Any, status: int, error: str
) -> None:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    got_status, got = await answer(await client.post("/faults", data=data))
    assert got_status == status and got["ok"] is False and got["error"].startswith(error)


async def test_clear_an_unknown_camera(client: TestClient[Any, Any]) -> None:
    assert (await client.delete("/faults/s9/c1")).status == 404


async def test_snapshots_over_http(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/cameras/s1/c1.jpg")
    assert resp.status == 200 and resp.content_type == "image/jpeg"
    assert await resp.read() == b"\xff\xd8jpeg"
    assert resp.headers["Last-Modified"] == "Fri, 15 Jan 2027 08:00:00 GMT"
    status, got = await answer(await client.get("/cameras/s1/c2.jpg"))
    assert (status, got["error"]) == (503, "s1/c2 has no snapshot yet")
    assert (await client.get("/cameras/s9/c1.jpg")).status == 404
    assert (await client.get("/cameras/s1/c1.png")).status == 404
    for fault in ("stop", "drop"):
        await client.post("/faults", json={"camera": "s1/c1", "fault": fault})
        status, got = await answer(await client.get("/cameras/s1/c1.jpg"))
        assert (status, got["error"]) == (503, f"s1/c1 sends no frame (fault {fault})")


# --- cameras ------------------------------------------------------------------------------------


def test_cameras_of_schools_get_scenes_by_number() -> None:
    rows = [(s, f"c{n}", "") for s in ("s1", "s2", "s3") for n in range(1, 9)]
    cameras = make_cameras(rows, 160, 90, 1)
    kinds = [c.scene.kind for c in cameras[:5]]
    assert kinds == ["gate", "perimeter", "corridor", "canteen", "gate"]
    assert len({id(c.scene) for c in cameras}) <= 4 * 4  # shared backgrounds
    assert len({c.offset for c in cameras}) == len(cameras)  # each its own timeline
    assert {c.key for c in cameras} >= {"s1/c1", "s3/c8"}


def test_registry_cameras_take_their_scene_from_the_location(tmp_path: Path) -> None:
    (tmp_path / "devices.csv").write_text(
        "school,kind,id,zone,location\ns1,button,b1,main,gatehouse\ns1,camera,c1,main,canteen\n"
        "s1,camera,c2,main,gatehouse\ns2,camera,x,main,roof\n"
    )
    rows = registry_cameras(str(tmp_path))
    assert rows == [("s1", "c1", "canteen"), ("s1", "c2", "gatehouse"), ("s2", "x", "roof")]
    kinds = [c.scene.kind for c in make_cameras(rows, 160, 90, 1)]
    assert kinds == ["canteen", "gate", "gate"]
    (tmp_path / "r.yaml").write_text("devices:\n- {school: s1, kind: gate, id: g1}\n")
    with pytest.raises(argparse.ArgumentTypeError, match="no cameras in the registry"):
        registry_cameras(str(tmp_path / "r.yaml"))
    with pytest.raises(argparse.ArgumentTypeError, match="cannot read the devices"):
        registry_cameras(str(tmp_path / "missing.yaml"))


def sim(*argv: str) -> tuple[CameraSim, Camera]:
    args = options("--schools", "1", "--cameras", "1", *argv)
    cameras = make_cameras([("s1", "c1", "")], args.width, args.height, args.seed)
    return CameraSim(args, cameras, FaultBoard({"s1/c1"})), cameras[0]


async def test_snapshots_follow_the_fault() -> None:
    s, camera = sim()
    await s.snapshot(camera)
    first = camera.jpeg
    assert decode_jpeg(first).shape == (90, 160, 3) and s.stats["snapshots"] == 1
    s.board.inject("s1/c1", "freeze", None, 1.0, s.elapsed())
    await s.snapshot(camera)
    assert camera.jpeg == first and s.stats["frozen"] == 1  # byte for byte
    s.board.inject("s1/c1", "black", None, 1.0, s.elapsed())
    await s.snapshot(camera)
    assert decode_jpeg(camera.jpeg).mean() < 10
    s.board.inject("s1/c1", "drop", None, 1.0, s.elapsed())
    await s.snapshot(camera)
    await s.status(camera)
    assert (s.stats["dropped"], s.stats["snapshots"], s.stats["status"]) == (1, 3, 1)
    s.board.inject("s1/c1", "stop", None, 1.0, s.elapsed())
    await s.snapshot(camera)
    await s.status(camera)
    assert (s.stats["stopped"], s.stats["snapshots"], s.stats["status"]) == (1, 3, 1)


class FakeLink:
    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.published = self.acked = 0
        self.sent: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.published += 1
        self.sent.append((topic, payload))


async def test_snapshots_are_skipped_not_queued_while_the_broker_is_away() -> None:
    s, camera = sim()
    link = FakeLink()
    s.links = {"s1": link}  # type: ignore[dict-item]
    await s.snapshot(camera)
    await s.status(camera)  # status is queued, as the fleet's
    assert [t for t, _ in link.sent] == ["campus/s1/camera/c1/status"]
    link.connected.set()
    await s.snapshot(camera)
    topic, payload = link.sent[-1]
    assert topic == "campus/s1/camera/c1/snapshot" and payload[:2] == b"\xff\xd8"
    link.published = MAX_UNACKED + link.acked
    await s.snapshot(camera)
    assert s.stats["skipped"] == 2 and s.stats["snapshots"] == 1
    status = orjson.loads(link.sent[0][1])
    assert status["seq"] == 1 and status["recording"] is True and 0 < status["fps"] < 100


def test_campusgw_simulate_cameras_runs_over_http_only(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["simulate", "cameras", "--port", "0", "--schools", "1", "--cameras", "2",
                     "--width", "160", "--height", "90", "--interval", "0.1", "--duration", "0.5",
                     "--progress", "0", "--status-interval", "0"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "cameras: 2 in 1 schools" in out and "snapshots: 0 " not in out
    assert np.isfinite(float(out.split("snapshots: ")[1].split()[0]))
