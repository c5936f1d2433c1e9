"""Telemetry writer over the spool: whole records in batches, failed writes kept (also across a
restart), refusals dead-lettered, gateway points bounded, backpressure while behind."""

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from gateway.ports import PointsRejectedError
from gateway.spool import Spool
from gateway.stats import Stats
from gateway.telemetry import TelemetryWriter


class Sink:
    def __init__(self) -> None:
        self.batches: list[bytes] = []
        self.fail: Exception | None = None

    async def prepare(self) -> None: ...

    async def ping(self) -> bool:
        return True

    async def write(self, lines: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.batches.append(lines)


def writer(
    tmp_path: Path, sink: Sink, stats: Stats, rejected: list[str], max_buffer: int = 100,
    high_water: int = 1 << 20, hold_s: float = 1.0,
) -> TelemetryWriter:  # fmt: skip
    return TelemetryWriter(
        sink, stats, Spool(tmp_path / "spool", 1 << 20), batch_size=3, flush_interval_s=0.01,
        max_loose=max_buffer, on_rejected=lambda lines, reason: rejected.append(reason),
        high_water_bytes=high_water, max_hold_s=hold_s,
    )  # fmt: skip


async def test_batches_are_whole_records_of_about_batch_size(tmp_path: Path) -> None:
    sink, stats, rejected = Sink(), Stats(), []
    w = writer(tmp_path, sink, stats, rejected)
    for n in range(0, 6, 2):
        await w.add_batch([b"p%d" % n, b"p%d" % (n + 1)])
    assert await w.flush()
    assert sink.batches == [b"p0\np1\np2\np3", b"p4\np5"]
    assert (stats.points_written, stats.points_queued, w.pending) == (6, 6, 0)


async def test_failed_write_keeps_the_points_even_across_a_restart(tmp_path: Path) -> None:
    sink, stats, rejected = Sink(), Stats(), []
    w = writer(tmp_path, sink, stats, rejected)
    await w.add_batch([b"a", b"b"])
    sink.fail = ConnectionError("down")
    assert not await w.flush()
    assert (w.pending, w.healthy, stats.write_errors) == (2, False, 1)
    again = writer(tmp_path, Sink(), Stats(), rejected)  # a new process on the same spool
    assert again.pending == 2
    assert await again.flush()
    assert (again._sink.batches, again.pending) == ([b"a\nb"], 0)  # type: ignore[attr-defined]


async def test_refused_points_become_dead_letters_not_retries(tmp_path: Path) -> None:
    sink, stats, rejected = Sink(), Stats(), []
    w = writer(tmp_path, sink, stats, rejected)
    await w.add_batch([b"bad"])
    sink.fail = PointsRejectedError("HTTP 400: field type conflict")
    assert await w.flush()
    assert (w.pending, stats.points_rejected, rejected) == (0, 1, ["HTTP 400: field type conflict"])


async def test_gateway_points_are_bounded_and_spooled_by_flush(tmp_path: Path) -> None:
    sink, stats, rejected = Sink(), Stats(), []
    w = writer(tmp_path, sink, stats, rejected, max_buffer=4)
    for n in range(6):
        w.add(b"p%d" % n)
    assert (w.pending, stats.points_evicted) == (4, 2)
    await w.flush()
    assert sink.batches == [b"p2\np3\np4\np5"]


async def test_batches_are_held_back_while_the_writer_is_behind(tmp_path: Path) -> None:
    sink, stats, rejected = Sink(), Stats(), []
    w = writer(tmp_path, sink, stats, rejected, high_water=20, hold_s=0.2)
    await w.add_batch([b"a", b"b", b"c", b"d"])  # 12 + 7 bytes: under the mark
    assert not w.backlogged
    await w.add_batch([b"x"])  # 12 + 1 more: past it
    assert w.backlogged
    started = time.monotonic()
    await w.add_batch([b"e"])  # held, nothing drains it: spooled after max_hold_s
    assert time.monotonic() - started >= 0.19
    assert (stats.telemetry_holds, w.pending) == (1, 6)
    await w.flush()
    assert not w.backlogged and w.pending == 0
    started = time.monotonic()
    await w.add_batch([b"f"])
    assert time.monotonic() - started < 0.1 and stats.telemetry_holds == 1


async def test_while_the_database_fails_new_batches_do_not_cut_the_backoff(tmp_path: Path) -> None:
    sink, stats, rejected = Sink(), Stats(), []
    w = writer(tmp_path, sink, stats, rejected)
    await w.add_batch([b"a", b"b", b"c"])
    assert w._wake.is_set()  # a full batch wakes a healthy writer
    w._wake.clear()
    sink.fail = ConnectionError("down")
    assert not await w.flush()
    await w.add_batch([b"d", b"e", b"f"])
    assert not w._wake.is_set() and stats.write_errors == 1  # the writer keeps to its backoff


# --- adaptive batching: write as soon as the last write is done ------------------------------


class GatedSink(Sink):
    """Each write waits until the test opens the gate: a slow database."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

        self.writing = 0

    async def write(self, lines: bytes) -> None:
        self.writing += 1
        await self.gate.wait()
        await super().write(lines)


async def until(condition: Callable[[], bool]) -> None:
    """Poll (the writer signals nothing a test could wait on) for at most 5 s."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


def slow_to_flush(tmp_path: Path, sink: Sink, batch_size: int = 3) -> TelemetryWriter:
    """A writer whose flush interval alone would never write (60 s): only the linger does."""
    return TelemetryWriter(
        sink, Stats(), Spool(tmp_path / "spool", 1 << 20), batch_size=batch_size,
        flush_interval_s=60, max_loose=100, on_rejected=lambda lines, reason: None,
        linger_s=0.001,
    )  # fmt: skip


async def test_a_lone_point_is_written_without_waiting_for_a_full_batch(tmp_path: Path) -> None:
    sink = Sink()
    w = slow_to_flush(tmp_path, sink)
    task = asyncio.create_task(w.run())
    try:
        await w.add_batch([b"a"])
        await until(lambda: sink.batches == [b"a"])
        w.add(b"g")  # a point the gateway made: also written without a full batch
        await until(lambda: sink.batches == [b"a", b"g"])
    finally:
        task.cancel()


async def test_what_arrives_during_two_writes_is_the_next_batch(tmp_path: Path) -> None:
    sink = GatedSink()
    w = slow_to_flush(tmp_path, sink, batch_size=100)
    task = asyncio.create_task(w.run())
    try:
        await w.add_batch([b"a"])
        await until(lambda: sink.writing == 1)  # the database is busy with [a]
        await w.add_batch([b"b"])
        await until(lambda: sink.writing == 2)  # and with [b]: no third write
        for name in (b"c", b"d"):
            await w.add_batch([name])
        sink.gate.set()
        await until(lambda: w.pending == 0)
        assert sink.batches == [b"a", b"b", b"c\nd"]  # one request for what waited
    finally:
        task.cancel()


class OneByOneSink(Sink):
    """Each write waits until the test lets that very write finish (by its lines)."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[bytes, asyncio.Event] = {}

    async def write(self, lines: bytes) -> None:
        await self.gates.setdefault(lines, asyncio.Event()).wait()
        await super().write(lines)

    def finish(self, lines: bytes) -> None:
        self.gates.setdefault(lines, asyncio.Event()).set()


async def b_written_before_a(w: TelemetryWriter, sink: OneByOneSink) -> None:
    """Batches [a] then [b] in flight at once; [b]'s write finishes first, [a]'s waits."""
    await w.add_batch([b"a"])
    await until(lambda: b"a" in sink.gates)
    await w.add_batch([b"b"])
    await until(lambda: b"b" in sink.gates)
    sink.finish(b"b")
    await until(lambda: sink.batches == [b"b"])


async def test_a_write_finished_first_is_acknowledged_after_the_one_before(tmp_path: Path) -> None:
    sink = OneByOneSink()
    w = slow_to_flush(tmp_path, sink)
    task = asyncio.create_task(w.run())
    try:
        await b_written_before_a(w, sink)
        await asyncio.sleep(0.01)
        assert w.pending == 2  # [b] is in, but the spool keeps both until [a] is
        sink.finish(b"a")
        await until(lambda: w.pending == 0)
    finally:
        task.cancel()


async def test_a_failed_write_keeps_the_one_after_it_spooled_too(tmp_path: Path) -> None:
    sink = OneByOneSink()
    w = slow_to_flush(tmp_path, sink)
    w._interval = 0.001  # retry at once
    task = asyncio.create_task(w.run())
    try:
        await b_written_before_a(w, sink)
        sink.fail = ConnectionError("down")
        sink.finish(b"a")
        await until(lambda: not w.healthy)
        assert w.pending == 2
        sink.fail = None
        sink.finish(b"a\nb")
        await until(lambda: w.pending == 0)
        assert sink.batches == [b"b", b"a\nb"]  # [b] twice: written at least once, in order
    finally:
        task.cancel()


async def test_points_from_before_a_restart_are_written_also_after_a_failure(
    tmp_path: Path,
) -> None:
    sink = Sink()
    first = slow_to_flush(tmp_path, sink)
    await first.add_batch([b"old"])
    w = slow_to_flush(tmp_path, sink)  # a restart: nothing new arrives
    w._interval = 0.001  # retry at once after the failure below
    sink.fail = ConnectionError("down")
    task = asyncio.create_task(w.run())
    try:
        await until(lambda: not w.healthy)
        await w.add_batch([b"new"])  # while writes fail: no wake-up
        sink.fail = None
        await until(lambda: w.pending == 0)
        assert b"".join(sink.batches).split(b"\n") == [b"old", b"new"]
    finally:
        task.cancel()
