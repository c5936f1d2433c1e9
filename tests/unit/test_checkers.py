"""The video quality workers: threads or processes at a lower OS priority, measuring frames as
the camera's own `observe` would, and a worker process that dies is replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import cv2
import numpy as np
import pytest

from drivers.camera.quality import CameraQuality, FrameError, Measured, Thumbnail
from gateway import checkers
from gateway.checkers import Checkers, WorkerDied
from gateway.config_devices import VideoQualitySettings
from tests.unit import test_quality_scenes as scenes


def niceness() -> int:
    """The calling thread's own niceness (Linux keeps one per thread)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def jpeg(i: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", scenes.Scene(3).frame(i))
    assert ok
    return bytes(buffer)


@asynccontextmanager
async def pool(
    kind: Any, nice: int = 0, workers: int = 1, idle: bool = False
) -> AsyncIterator[Checkers]:
    workers_ = Checkers(kind, workers, nice, idle)
    try:
        yield workers_
    finally:
        workers_.shutdown()


def _niceness(_: bytes) -> int:
    return niceness()


def _policy(_: bytes) -> int:
    return os.sched_getscheduler(0)


async def in_worker(pool: Checkers) -> int:
    """The niceness a worker runs at (a worker thread's own, or a worker process's)."""
    if pool._threads is not None:
        return await asyncio.get_running_loop().run_in_executor(pool._threads, niceness)
    return await pool.run(_niceness, b"")


@pytest.mark.skipif(niceness() > 19 - 7, reason="already too nice to be made 7 nicer")
@pytest.mark.parametrize("kind", ["thread", "process"])
async def test_a_worker_runs_worker_nice_nicer_than_the_gateway(kind: str) -> None:
    base = niceness()
    async with pool(kind, nice=7) as workers:
        assert await in_worker(workers) == base + 7
    assert niceness() == base  # the event loop's thread keeps its priority


@pytest.mark.parametrize("kind", ["thread", "process"])
async def test_niceness_is_capped_at_19(kind: str) -> None:
    async with pool(kind, nice=19) as workers:
        assert await in_worker(workers) == 19


async def test_worker_nice_0_leaves_the_workers_alone() -> None:
    base = niceness()
    async with pool("thread", nice=0) as workers:
        assert await in_worker(workers) == base


def test_the_defaults_are_processes_at_the_lowest_priority() -> None:
    assert VideoQualitySettings().worker_nice == 19
    assert VideoQualitySettings().worker_kind == "process"
    assert VideoQualitySettings().worker_sched_idle is True


@pytest.mark.parametrize("idle", [True, False])
async def test_worker_processes_run_sched_idle_when_asked(idle: bool) -> None:
    async with pool("process", idle=idle) as workers:
        assert await workers.run(_policy, b"") == (os.SCHED_IDLE if idle else os.SCHED_OTHER)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the gateway itself keeps its policy


@pytest.mark.parametrize("kind", ["thread", "process"])
async def test_measured_in_a_worker_the_verdicts_are_those_of_observe(kind: str) -> None:
    settings = VideoQualitySettings(baseline_frames=4, hits_to_raise=2, decode_reduction=2)
    here, there = CameraQuality(settings), CameraQuality(settings)
    frames = [jpeg(i) for i in range(8)]
    black = bytes(cv2.imencode(".jpg", np.zeros((360, 640, 3), np.uint8))[1])
    frames += [black] * 3 + frames[:3]
    raised: set[str] = set()
    async with pool(kind) as workers:
        for t, frame in enumerate(frames):
            expected = here.observe(frame, float(t))
            measured = await workers.measure(frame, *there.inputs())
            got = there.conclude(measured, float(t))
            assert got.scores == expected.scores
            assert (got.hits, got.raised, got.cleared) == (
                expected.hits, expected.raised, expected.cleared)  # fmt: skip
            raised |= got.raised
    assert raised == {"black"}  # the comparison covered a trouble, not only quiet frames
    assert there.active == here.active


async def test_a_bad_jpeg_is_a_frame_error_from_a_worker_process() -> None:
    async with pool("process") as workers:
        with pytest.raises(FrameError, match=r"truncated|corrupt"):
            await workers.measure(jpeg(0)[:600], 4, None, None)
        measured = await workers.measure(jpeg(1), 4, None, None)  # the pool is still fine
    assert isinstance(measured, Measured) and measured.image is None
    assert workers.restarts == 0


async def test_a_killed_worker_process_is_replaced_and_the_frame_measured() -> None:
    told: list[int] = []
    async with pool("process") as workers:
        workers._on_restart = lambda: told.append(1)
        await workers.measure(jpeg(0), 4, None, None)
        (victim,) = workers.pids()
        os.kill(victim, signal.SIGKILL)
        measured = await workers.measure(jpeg(1), 4, None, None)
        assert measured.scores.brightness > 0
        assert workers.restarts == 1 and told == [1]  # counted in /api/stats and /metrics
        assert len(workers.pids()) == 1 and workers.pids() != [victim]


def _die(jpeg: bytes, reduction: int, prev: Thumbnail | None, ref: Thumbnail | None) -> Measured:
    os._exit(3)  # a decoder crashing on this frame


async def test_a_frame_that_kills_fresh_workers_too_is_a_worker_died_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(checkers, "measure_remote", _die)
    async with pool("process") as workers:
        with pytest.raises(WorkerDied, match="died measuring it, twice"):
            await workers.measure(jpeg(0), 4, None, None)
        assert workers.restarts == 2
        monkeypatch.setattr(checkers, "measure_remote", checkers.measure_frame)
        measured = await workers.measure(jpeg(1), 4, None, None)  # new workers serve again
        assert measured.scores.brightness > 0


def _explode() -> None:
    raise ValueError("cannot be rebuilt here")


class _Bomb:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_explode, ())


def _bomb(_: bytes) -> _Bomb:
    return _Bomb()


async def test_an_unreadable_reply_retires_the_worker_and_the_pool_goes_on() -> None:
    async with pool("process") as workers:
        with pytest.raises(WorkerDied):
            await workers.run(_bomb, b"")
        assert workers.restarts == 2
        assert await in_worker(workers) >= 0  # fresh workers serve
