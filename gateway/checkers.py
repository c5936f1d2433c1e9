"""Where video quality frames are measured: worker processes (the default) or threads.

Measuring a snapshot (decode, thumbnails, scores: `drivers.camera.quality.measure_frame`) is
all the CPU of video quality diagnosis; judging it against the camera's baseline is cheap and
stays in the gateway, with the camera's state. In worker processes the measuring neither holds
the gateway's GIL (its Python and numpy parts do, about 0.9 ms a frame, and the event loop
then waits for it up to the 5 ms switch interval) nor competes at the gateway's CPU priority:
each worker process runs `worker_nice` nicer. Threads (`worker_kind = "thread"`) avoid the
processes' memory (about 60 MB each) and copies, at the cost of alarm latency while the checks
run at full speed (docs/video-quality.md has the figures).

A worker process that dies (killed, or a decoder crash) breaks the pool: it is replaced, and
the frames it held are measured again once; a frame that breaks a fresh pool as well is not a
picture this gateway can check (`WorkerDied`, a dead letter).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Literal

from drivers.camera.quality import FrameError, Measured, Thumbnail, measure_frame, measure_remote

log = logging.getLogger(__name__)

WorkerKind = Literal["process", "thread"]


class WorkerDied(FrameError):
    """The worker process measuring a frame died, in a fresh pool too: the frame is suspect."""


class Checkers:
    """A pool measuring frames off the event loop; `measure` is awaited from it."""

    def __init__(self, kind: WorkerKind, workers: int, nice: int) -> None:
        self.kind = kind
        self._workers = workers
        self._nice = nice
        self._pool = self._new_pool()
        self.restarts = 0

    def _new_pool(self) -> Executor:
        if self.kind == "thread":
            return ThreadPoolExecutor(
                self._workers, thread_name_prefix="vqd", initializer=lower_priority,
                initargs=(self._nice,),
            )  # fmt: skip
        # spawn, not fork: the gateway has threads (a forked child could inherit held locks).
        # Processes start on demand, at the first frames: a gateway without cameras has none.
        return ProcessPoolExecutor(
            self._workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_start, initargs=(self._nice, os.getpid()),
        )  # fmt: skip

    async def measure(
        self, jpeg: bytes, reduction: int, previous: Thumbnail | None, reference: Thumbnail | None
    ) -> Measured:
        """Measure one frame in the pool. Raises FrameError for bytes that are not a picture."""
        loop = asyncio.get_running_loop()
        if self.kind == "thread":
            return await loop.run_in_executor(
                self._pool, measure_frame, jpeg, reduction, previous, reference
            )
        for attempt in (1, 2):
            pool = self._pool
            try:
                return await loop.run_in_executor(
                    pool, measure_remote, jpeg, reduction, previous, reference
                )
            except BrokenProcessPool as exc:
                self._replace(pool, exc)
                if attempt == 2:
                    raise WorkerDied(
                        f"a video quality worker process died measuring it, twice ({exc})"
                    ) from None
        raise AssertionError("unreachable")

    def _replace(self, broken: Executor, exc: BaseException) -> None:
        if self._pool is not broken:  # another frame of the same pool replaced it already
            return
        log.error("video quality worker process died (%s); starting new ones", exc)
        self.restarts += 1
        broken.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def pids(self) -> list[int]:
        """The worker processes' PIDs (none for threads, or before the first frame)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return sorted(p.pid for p in processes.values() if p.pid is not None)

    def shutdown(self) -> None:
        """Stop the workers (processes end after their current frame)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def lower_priority(increment: int) -> None:
    """Make the calling thread `increment` nicer (a pool initializer: Linux niceness is per
    thread, so the event loop keeps its priority). Where that fails, the thread runs as is."""
    if increment <= 0:
        return
    tid = threading.get_native_id()
    try:
        nice = min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment)
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError as exc:
        log.warning("video quality workers keep their priority: %s", exc)


def _worker_start(nice: int, parent: int) -> None:
    """A worker process's initializer: lower its priority, one OpenCV thread (the pool is the
    parallelism), and end when the gateway is gone (a SIGKILLed gateway's pool would not
    tell its workers)."""
    import cv2

    cv2.setNumThreads(1)
    if nice > 0:
        try:
            os.nice(nice)
        except OSError as exc:
            log.warning("video quality worker keeps its priority: %s", exc)
    threading.Thread(target=_end_with, args=(parent,), name="vqd-orphan", daemon=True).start()


def _end_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)
