"""Where video quality frames are measured: worker processes (the default) or threads.

Measuring a snapshot (decode, thumbnails, scores: `drivers.camera.quality.measure_frame`) is
all the CPU of video quality diagnosis; judging it against the camera's baseline is cheap and
stays in the gateway, with the camera's state. In worker processes the measuring neither holds
the gateway's GIL (its Python and numpy parts do, about 0.9 ms a frame, and the event loop
then waits for it up to the 5 ms switch interval) nor competes for the CPUs: each worker runs
`worker_nice` nicer and, by default, under SCHED_IDLE. Threads (`worker_kind = "thread"`) avoid
the processes' memory (about 77 MB resident each) and copies, at the cost of alarm latency while the
checks run at full speed (docs/video-quality.md has the figures).

The pool is our own, not `ProcessPoolExecutor`: its feeder, manager and result threads cost the
gateway 0.7-0.9 ms of CPU a frame, as much as the checks' GIL time it was meant to save. Here
each worker has a socket pair; the event loop writes a job (a pickled header, then the JPEG)
without blocking and reads the pickled result back as an asyncio stream: no thread, no copy
beyond the socket's. A worker takes one job at a time.

A worker that dies (killed, or a decoder crash) is replaced, and the frame it held is measured
again once by a fresh worker; a frame that kills that one too is not a picture this gateway
can check (`WorkerDied`, a dead letter).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal, TypeVar

from drivers.camera.quality import FrameError, Measured, Thumbnail, measure_frame, measure_remote

log = logging.getLogger(__name__)

WorkerKind = Literal["process", "thread"]
T = TypeVar("T")
_LENGTH = struct.Struct("!i")  # multiprocessing.Connection's framing: a 4-byte length


class WorkerDied(FrameError):
    """The worker process measuring a frame died, and a fresh one too: the frame is suspect."""


class _Lost(Exception):
    """The worker's socket closed mid-job: the process is gone."""


@dataclass(slots=True)
class _Worker:
    process: BaseProcess
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


class Checkers:
    """A pool measuring frames off the event loop; `measure` is awaited from it."""

    def __init__(
        self, kind: WorkerKind, workers: int, nice: int, idle: bool = False,
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:  # fmt: skip
        self.kind = kind
        self._on_restart = on_restart
        self._size = workers
        self._nice = nice
        self._idle = idle
        self.restarts = 0
        self._threads: ThreadPoolExecutor | None = None
        if kind == "thread":
            self._threads = ThreadPoolExecutor(
                workers, thread_name_prefix="vqd", initializer=lower_priority, initargs=(nice,)
            )
        # Processes start on demand, at the first frames: a gateway without cameras has none.
        self._workers: list[_Worker] = []
        self._free: asyncio.Queue[_Worker] | None = None
        self._starting = 0

    async def measure(
        self, jpeg: bytes, reduction: int, previous: Thumbnail | None, reference: Thumbnail | None
    ) -> Measured:
        """Measure one frame in the pool. Raises FrameError for bytes that are not a picture."""
        if self._threads is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._threads, measure_frame, jpeg, reduction, previous, reference
            )
        measured: Measured = await self.run(measure_remote, jpeg, reduction, previous, reference)
        return measured

    async def run(self, func: Callable[..., T], body: bytes, *args: Any) -> T:
        """`func(body, *args)` in a worker process (func importable, args picklable)."""
        header = pickle.dumps((func, args), protocol=pickle.HIGHEST_PROTOCOL)
        for attempt in (1, 2):
            worker = await self._take()
            try:
                outcome, value = await self._job(worker, header, body)
            except _Lost as exc:
                self._bury(worker, exc)
                if attempt == 2:
                    raise WorkerDied(
                        f"a video quality worker process died measuring it, twice ({exc})"
                    ) from None
                continue
            self._give_back(worker)
            if outcome == "ok":
                return value  # type: ignore[no-any-return]
            if outcome == "frame":
                raise FrameError(value)
            raise RuntimeError(f"video quality worker failed: {value}")
        raise AssertionError("unreachable")

    async def _job(self, worker: _Worker, header: bytes, body: bytes) -> tuple[str, Any]:
        try:
            worker.writer.writelines(
                (_LENGTH.pack(len(header)), header, _LENGTH.pack(len(body)), body)
            )
            await worker.writer.drain()
            (size,) = _LENGTH.unpack(await worker.reader.readexactly(_LENGTH.size))
            reply = await worker.reader.readexactly(size)
            outcome, value = pickle.loads(reply)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            code = worker.process.exitcode
            raise _Lost(f"exit code {code}" if code is not None else str(exc) or "EOF") from None
        except Exception as exc:  # a reply that is not one: the worker is not to be trusted
            raise _Lost(f"unreadable reply: {type(exc).__name__}: {exc}") from None
        return str(outcome), value

    async def _take(self) -> _Worker:
        if self._free is None:
            self._free = asyncio.Queue()
        if self._free.empty() and len(self._workers) + self._starting < self._size:
            self._starting += 1
            try:
                worker = await self._spawn()
            finally:
                self._starting -= 1
            self._workers.append(worker)
            return worker
        return await self._free.get()

    def _give_back(self, worker: _Worker) -> None:
        assert self._free is not None
        self._free.put_nowait(worker)

    async def _spawn(self) -> _Worker:
        # spawn, not fork: the gateway has threads (a forked child could inherit held locks).
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)  # a Unix socket pair
        process = context.Process(
            target=_serve, args=(theirs, self._nice, self._idle, os.getpid()),
            name="vqd-worker", daemon=True,
        )  # fmt: skip
        process.start()
        theirs.close()
        sock = socket.socket(fileno=os.dup(ours.fileno()))
        ours.close()
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**24)
        return _Worker(process, reader, writer)

    def _bury(self, worker: _Worker, exc: BaseException) -> None:
        log.error("video quality worker process %s died (%s); starting a new one",
                  worker.process.pid, exc)  # fmt: skip
        self.restarts += 1
        self._on_restart()
        self._workers.remove(worker)
        worker.writer.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(1.0)

    def pids(self) -> list[int]:
        """The worker processes' PIDs (none for threads, or before the first frame)."""
        return sorted(w.process.pid for w in self._workers if w.process.pid is not None)

    def shutdown(self) -> None:
        """Stop the workers: each ends at the end of its socket, after its current frame."""
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        for worker in self._workers:
            worker.writer.close()
        self._workers.clear()


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


def _serve(conn: Connection, nice: int, idle: bool, parent: int) -> None:
    """A worker process: jobs in (a pickled (func, args) header, then the body bytes), one
    pickled ("ok" | "frame" | "error", value) out each, until the socket closes."""
    _worker_start(nice, idle, parent)
    while True:
        try:
            header = conn.recv_bytes()
            body = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            func, args = pickle.loads(header)
            reply: tuple[str, Any] = ("ok", func(body, *args))
        except FrameError as exc:
            reply = ("frame", str(exc))
        except Exception as exc:  # reported to the gateway, which logs it; the worker goes on
            reply = ("error", f"{type(exc).__name__}: {exc}")
        conn.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))


def _worker_start(nice: int, idle: bool, parent: int) -> None:
    """Lower the worker's priority (and SCHED_IDLE if `idle`), one OpenCV thread (the pool is
    the parallelism), and end when the gateway is gone."""
    import cv2

    cv2.setNumThreads(1)
    try:
        if nice > 0:
            os.nice(nice)
        if idle:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:
        log.warning("video quality worker keeps its priority: %s", exc)
    threading.Thread(target=_end_with, args=(parent,), name="vqd-orphan", daemon=True).start()


def _end_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)
